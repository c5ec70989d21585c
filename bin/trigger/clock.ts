import { ExitCode, OrchardError } from '../../runtime/errors';

/** Time as the trigger sees it: injected so that tests wait for nothing. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` (early when the run is interrupted). */
  sleep(ms: number): Promise<void>;
  /** Aborted on Ctrl-C / SIGTERM: polling stops at the next tick. */
  readonly signal?: AbortSignal;
}

export interface PollOptions {
  /** Give up after this long. */
  readonly timeoutMs: number;
  readonly intervalMs: number;
  /** What is awaited, for the timeout message: "instance i-0abc to be running". */
  readonly what: string;
  /** Appended to the timeout message: what to check. */
  readonly hint?: string;
}

/**
 * Calls `check` until it returns a value (not undefined), sleeping `intervalMs` between calls. Throws an
 * OrchardError naming `what` after `timeoutMs`, and an interrupted error when the clock's signal aborts.
 */
export async function pollUntil<T>(clock: Clock, options: PollOptions, check: () => Promise<T | undefined>): Promise<T> {
  const started = clock.now();
  for (;;) {
    throwIfInterrupted(clock);
    const value = await check();
    if (value !== undefined) return value;
    if (clock.now() - started >= options.timeoutMs) {
      throw new OrchardError(
        `Timed out after ${formatDuration(options.timeoutMs)} waiting for ${options.what}${options.hint ? `: ${options.hint}` : ''}`,
        'ERR_TIMEOUT',
        ExitCode.Fatal,
      );
    }
    await clock.sleep(options.intervalMs);
  }
}

/** Without a status change, a "still …" line this often. */
export const HEARTBEAT_MS = 5 * 60_000;

/** What one look at a run found: a status for the user, and the end result once there is one. */
export interface Observation<T> {
  readonly label: string;
  readonly done?: T;
}

export type FollowOutcome<T> = { readonly kind: 'finished'; readonly value: T } | { readonly kind: 'timeout'; readonly status: string };

/**
 * Looks at a run every `intervalMs` until `observe` reports it done or `timeoutMs` passes: the lines `lines()`
 * returns (the run's own log lines) as they come, a line whenever the status label changes, and a heartbeat
 * (`still …`) while it does not. Both trigger paths (SSM command, Step Functions execution) wait this way.
 */
export async function followRun<T>(
  clock: Clock,
  options: { readonly timeoutMs: number; readonly intervalMs: number; readonly log: (line: string) => void; readonly lines?: () => Promise<string[]> },
  observe: (elapsedMs: number) => Promise<Observation<T>>,
): Promise<FollowOutcome<T>> {
  const started = clock.now();
  let last: string | undefined;
  let lastLine = started;
  for (;;) {
    throwIfInterrupted(clock);
    const { label, done } = await observe(clock.now() - started);
    for (const line of (await options.lines?.()) ?? []) options.log(`  | ${line}`);
    const elapsed = formatDuration(clock.now() - started);
    if (label !== last) {
      options.log(`${label} (${elapsed})`);
      last = label;
      lastLine = clock.now();
    } else if (clock.now() - lastLine >= HEARTBEAT_MS) {
      options.log(`still ${label} (${elapsed})`);
      lastLine = clock.now();
    }
    if (done !== undefined) return { kind: 'finished', value: done };
    if (clock.now() - started >= options.timeoutMs) return { kind: 'timeout', status: label };
    await clock.sleep(options.intervalMs);
  }
}

export function throwIfInterrupted(clock: Clock): void {
  if (clock.signal?.aborted) throw new OrchardError('Interrupted', 'ERR_INTERRUPTED', ExitCode.Interrupted);
}

/** 45 s, 3 min 20 s, 2 h 05 min. */
export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return seconds % 60 === 0 ? `${minutes} min` : `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}
