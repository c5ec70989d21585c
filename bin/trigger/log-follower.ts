import { CloudWatchLogsClient, FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { describeError } from '../../runtime/errors';

/** CloudWatch Logs makes an event searchable up to a few seconds after its timestamp: each poll looks back this far. */
const LATE_EVENTS_MS = 30_000;

export interface LogQuery {
  readonly logGroupName: string;
  /** The SSM path: the command id (its output streams are `<command id>/<instance id>/<plugin>/stderr`). */
  readonly logStreamNamePrefix?: string;
  /** The scale path: `{ $.runId = "…" }`, the run's lines in the function's shared log group. */
  readonly filterPattern?: string;
}

/**
 * Follows a run's log lines while the trigger waits: each poll returns the lines that appeared since the last
 * one, each once. orchard's JSON lines (`{"time","level","message",…}`) are shown as the CLI shows them on a
 * terminal; other lines as they are. A failure to read the logs (no logs:FilterLogEvents permission, say) is
 * reported once and ends the following, never the wait.
 */
export class LogFollower {
  private readonly seen = new Map<string, number>();
  private since: number;
  private failed = false;

  constructor(
    private readonly logs: CloudWatchLogsClient,
    private readonly query: LogQuery,
    startTime: number,
    private readonly warn: (line: string) => void,
  ) {
    this.since = startTime;
  }

  async poll(): Promise<string[]> {
    if (this.failed) return [];
    const lines: { timestamp: number; text: string }[] = [];
    let newest = this.since;
    try {
      let nextToken: string | undefined;
      do {
        const page = await this.logs.send(new FilterLogEventsCommand({ ...this.query, startTime: Math.max(0, this.since - LATE_EVENTS_MS), nextToken }));
        for (const event of page.events ?? []) {
          const id = event.eventId ?? `${event.logStreamName}/${event.timestamp}/${event.message}`;
          if (this.seen.has(id)) continue;
          const timestamp = event.timestamp ?? this.since;
          this.seen.set(id, timestamp);
          newest = Math.max(newest, timestamp);
          for (const text of (event.message ?? '').split('\n')) if (text.trim() !== '') lines.push({ timestamp, text: formatLine(text) });
        }
        nextToken = page.nextToken;
      } while (nextToken);
    } catch (error) {
      this.failed = true;
      this.warn(`warning: cannot follow the run's log lines (${describeError(error)}); waiting without them`);
      return [];
    }
    this.since = newest;
    // Ids older than the look-back can no longer come back: forget them.
    for (const [id, timestamp] of this.seen) if (timestamp < this.since - 2 * LATE_EVENTS_MS) this.seen.delete(id);
    return lines.sort((a, b) => a.timestamp - b.timestamp).map((line) => line.text);
  }
}

/** An orchard JSON log line as the plain reporter prints it (`warning: ` before warnings, fields as key=value). */
export function formatLine(text: string): string {
  let line: unknown;
  try {
    line = JSON.parse(text);
  } catch {
    return text;
  }
  if (typeof line !== 'object' || line === null || typeof (line as { message?: unknown }).message !== 'string') return text;
  const { time: _time, level, message, runId: _runId, stage: _stage, ...fields } = line as Record<string, unknown>;
  const extra = Object.entries(fields).map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return `${level === 'warn' ? 'warning: ' : ''}${[message, ...extra].join(' ')}`;
}
