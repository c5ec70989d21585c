import { ExitCode, OrchardError } from '../errors';
import type { SessionOptions } from './runtime';
import { PredictWorker, type PredictResult } from './worker-session';

/**
 * Threads for each of `sessions` sessions sharing `threads`: as even as it goes, the first ones taking the
 * remainder (5 threads in 2 sessions: 3 and 2). Never more sessions than threads.
 */
export function splitThreads(threads: number, sessions: number): number[] {
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`Expected a positive number of threads but got ${threads}`);
  if (!Number.isInteger(sessions) || sessions < 1) throw new RangeError(`Expected a positive number of sessions but got ${sessions}`);
  const count = Math.min(threads, sessions);
  return Array.from({ length: count }, (_, i) => Math.floor(threads / count) + (i < threads % count ? 1 : 0));
}

/**
 * The sessions a run's model uses: two when there are two threads or more. Measured on 2 cores (4,000 images
 * from a folder): two one-thread sessions 213-215 images/s, one two-thread session 201-206.
 *
 * ORCHARD_SESSIONS=N sets it (at most `threads`; 1 is one session with every thread, the layout before): internal,
 * for the tests and benchmarks that compare layouts, and a way back should two sessions misbehave somewhere.
 */
export function runSessions(threads: number, env: NodeJS.ProcessEnv = process.env): number {
  const given = env.ORCHARD_SESSIONS;
  if (given === undefined || given === '') return Math.min(threads, 2);
  const sessions = Number(given);
  if (!Number.isInteger(sessions) || sessions < 1) {
    throw new OrchardError(`Expected a positive integer for ORCHARD_SESSIONS but got ${JSON.stringify(given)}`, 'ERR_INVALID_PARAMETER', ExitCode.Usage);
  }
  return Math.min(threads, sessions);
}

/**
 * Batches to keep in flight for a model computing `parallel` at once: one session is fed one batch while the
 * next is filled (as before the pool); several get one more than their number, so that none waits for the next
 * to be filled (measured: two sessions with two in flight 201-206 images/s, with three 213-215).
 */
export function batchesInFlight(parallel: number): number {
  return parallel > 1 ? parallel + 1 : 1;
}

/**
 * Several ONNX Runtime sessions of one graph, each in its own worker thread with its share of the threads, each
 * batch sent to the one with the fewest batches waiting. Two one-thread sessions computing two batches side by
 * side keep both cores busy where one two-thread session leaves one idle whenever decoding on the main thread
 * delays either of its threads (its threads meet at the end of every operator).
 */
export class PredictPool {
  private turn = 0;

  private constructor(private readonly workers: readonly PredictWorker[]) {}

  /** Starts one worker per entry of `threads` (in parallel) and creates the session in each. */
  static async start(model: Uint8Array, threads: readonly number[], input: string, output: string, options: Omit<SessionOptions, 'threads'> = {}): Promise<PredictPool> {
    const started = await Promise.allSettled(threads.map((count) => PredictWorker.start(model, { ...options, threads: count }, input, output)));
    const workers = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) {
      await Promise.all(workers.map((worker) => worker.close()));
      throw failed.reason;
    }
    return new PredictPool(workers);
  }

  /** How many batches the pool computes at once. */
  get size(): number {
    return this.workers.length;
  }

  /** Runs a batch on every worker (a warm-up: each session's first run allocates its buffers). */
  async each(pixels: Uint8Array, dims: readonly number[]): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.run(pixels, dims)));
  }

  run(pixels: Uint8Array, dims: readonly number[]): Promise<Float32Array> {
    return this.next().run(pixels, dims);
  }

  runEnlarged(...args: Parameters<PredictWorker['runEnlarged']>): Promise<PredictResult> {
    return this.next().runEnlarged(...args);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
  }

  /** The worker with the fewest batches waiting; among equals, the next in turn. */
  private next(): PredictWorker {
    let best = this.workers[this.turn % this.workers.length]!;
    for (let i = 1; i < this.workers.length; i++) {
      const candidate = this.workers[(this.turn + i) % this.workers.length]!;
      if (candidate.pending < best.pending) best = candidate;
    }
    this.turn = (this.workers.indexOf(best) + 1) % this.workers.length;
    return best;
  }
}
