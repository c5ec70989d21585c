import { hostDescription, newAttempt, type SessionRecord, type StageSpan } from './run-folder';

export type { SessionRecord, StageSpan };

/** One process's session on a run: its stages are timed through it, and its record is stored when it ends. */
export class Session {
  readonly id = newAttempt();
  private readonly stages: StageSpan[] = [];
  private counts = { images: 0, predictSeconds: 0, momentsSeconds: 0, enlargeSeconds: 0 };

  constructor(readonly command: string) {}

  async time<T>(stage: string, work: () => Promise<T>): Promise<T> {
    const startedAt = new Date();
    const t0 = performance.now();
    try {
      return await work();
    } finally {
      this.span(stage, startedAt, (performance.now() - t0) / 1000);
    }
  }

  span(stage: string, startedAt: Date, seconds: number): void {
    this.stages.push({ stage, startedAt: startedAt.toISOString(), seconds });
  }

  /** Whether any stage started in this process (a process refused before its first stage leaves no record). */
  get started(): boolean {
    return this.stages.length > 0;
  }

  /** A shard this process extracted (its images, failed ones included, and the model's and statistics' time). */
  readonly extracted = (shard: { readonly rows: readonly unknown[]; readonly errors: readonly unknown[]; readonly predictSeconds: number; readonly momentsSeconds: number; readonly enlargeSeconds?: number }): void => {
    this.counts = {
      images: this.counts.images + shard.rows.length + shard.errors.length,
      predictSeconds: this.counts.predictSeconds + shard.predictSeconds,
      momentsSeconds: this.counts.momentsSeconds + shard.momentsSeconds,
      enlargeSeconds: this.counts.enlargeSeconds + (shard.enlargeSeconds ?? 0),
    };
  };

  record(interrupted = false): SessionRecord {
    return { id: this.id, command: this.command, host: hostDescription(), stages: [...this.stages], ...this.counts, ...(interrupted ? { interrupted } : {}) };
  }
}

export interface RunTimings {
  /**
   * Wall-clock seconds per stage (the union of its spans in every process: stages run by tasks at once count
   * once), `total` the union of every span (the time between commands is not counted), and `predict` and
   * `moments` summed over the processes (within extract; more than extract's wall clock when tasks ran at once).
   */
  readonly timings: Record<string, number>;
  /** Images extracted, over `total`. */
  readonly imagesPerSecond: number;
  /** Which stages ran in which process, and for how long. */
  readonly processes: readonly { readonly id: string; readonly command: string; readonly host: string; readonly images: number; readonly interrupted?: boolean; readonly stages: Record<string, number> }[];
}

/** The manifest's figures from every session's record. */
export function runTimings(sessions: readonly SessionRecord[]): RunTimings {
  const spans = sessions.flatMap((session) => session.stages);
  const stageNames = [...new Set(spans.map((span) => span.stage))];
  const timings: Record<string, number> = {};
  for (const stage of stageNames) timings[stage] = round(unionSeconds(spans.filter((span) => span.stage === stage)));
  const total = unionSeconds(spans);
  timings.total = round(total);
  timings.predict = round(sessions.reduce((sum, session) => sum + session.predictSeconds, 0));
  timings.moments = round(sessions.reduce((sum, session) => sum + session.momentsSeconds, 0));
  // CPU seconds (not wall) of the engine's in-graph enlargement: the bench counts them as preprocessing.
  const enlarge = sessions.reduce((sum, session) => sum + (session.enlargeSeconds ?? 0), 0);
  if (enlarge > 0) timings.enlarge = round(enlarge);
  const images = sessions.reduce((sum, session) => sum + session.images, 0);
  return {
    timings,
    imagesPerSecond: total > 0 ? round(images / total) : 0,
    processes: [...sessions].sort((a, b) => firstStart(a) - firstStart(b)).map((session) => ({
      id: session.id,
      command: session.command,
      host: session.host,
      images: session.images,
      ...(session.interrupted ? { interrupted: true } : {}),
      stages: secondsPerStage(session.stages),
    })),
  };
}

function firstStart(session: SessionRecord): number {
  return Math.min(...session.stages.map((span) => Date.parse(span.startedAt)));
}

function secondsPerStage(spans: readonly StageSpan[]): Record<string, number> {
  const seconds: Record<string, number> = {};
  for (const span of spans) seconds[span.stage] = round((seconds[span.stage] ?? 0) + span.seconds);
  return seconds;
}

/** Seconds covered by a set of spans, overlaps counted once. */
function unionSeconds(spans: readonly StageSpan[]): number {
  const intervals = spans.map((span) => [Date.parse(span.startedAt), Date.parse(span.startedAt) + span.seconds * 1000] as const).sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let end = -Infinity;
  for (const [from, to] of intervals) {
    if (to <= end) continue;
    covered += to - Math.max(from, end);
    end = to;
  }
  return covered / 1000;
}

const round = (value: number) => Math.round(value * 1000) / 1000;
