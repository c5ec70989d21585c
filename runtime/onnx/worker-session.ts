import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { OrchardError } from '../errors';
import { sessionOptions, type SessionOptions } from './runtime';

/** How long close() waits for the session's release before it stops the thread regardless. */
const RELEASE_TIMEOUT_MS = 10_000;

/**
 * Enlargement sessions the worker keeps, one per input size (a dataset has few sizes; each session holds a few
 * hundred kilobytes of tap matrices): past this, the least recently used one is released.
 */
const MAX_ENLARGERS = 8;

/** The worker's file: beside this module in the repository, beside orchard.cjs in the bundle (copied there). */
const WORKER_FILE = 'predict-worker.cjs';

type Reply =
  | { readonly type: 'loaded' | 'released' }
  | { readonly type: 'result'; readonly id: number; readonly features: ArrayBuffer; readonly enlarge?: EnlargeTime }
  | { readonly type: 'error'; readonly id?: number; readonly message: string };

/** What enlarging a batch in the worker took: its thread's CPU seconds (wall seconds where Linux's /proc does not say), and wall seconds. */
export interface EnlargeTime {
  readonly cpuS: number;
  readonly wallS: number;
}

export interface PredictResult {
  readonly features: Float32Array;
  readonly enlarge?: EnlargeTime;
}

/**
 * An ONNX Runtime session in a worker thread. `run` copies the batch before it returns, so the caller can fill
 * the same buffer with the next batch while this one is computed; results come back in the order asked.
 */
export class PredictWorker {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (result: PredictResult) => void; reject: (error: Error) => void }>();
  /** Input sizes whose enlargement session the worker holds, least recently used first. */
  private readonly enlargers: string[] = [];
  private nextId = 0;
  private loaded?: { resolve: () => void; reject: (error: Error) => void };
  private released?: () => void;
  private failure?: Error;
  /** Batches sent and not yet answered: closing waits for them. */
  private readonly inFlight = new Set<Promise<unknown>>();

  private constructor(input: string, output: string) {
    this.worker = new Worker(workerFile(), { workerData: { ortPath: require.resolve('onnxruntime-node'), input, output } });
    this.worker.on('message', (reply: Reply) => this.receive(reply));
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => {
      if (code !== 0) this.fail(new Error(`the ONNX Runtime worker stopped with exit code ${code}`));
    });
  }

  /** Starts a worker and creates the session in it. */
  static async start(model: Uint8Array, options: SessionOptions, input: string, output: string): Promise<PredictWorker> {
    const worker = new PredictWorker(input, output);
    try {
      await new Promise<void>((resolve, reject) => {
        worker.loaded = { resolve, reject };
        worker.worker.postMessage({ type: 'load', model, options: sessionOptions(options) });
      });
    } catch (error) {
      await worker.worker.terminate();
      throw error;
    }
    return worker;
  }

  /** Batches sent to this worker and not answered yet. */
  get pending(): number {
    return this.inFlight.size;
  }

  run(pixels: Uint8Array, dims: readonly number[]): Promise<Float32Array> {
    return this.send(pixels, dims).then((result) => result.features);
  }

  /**
   * The same for images not enlarged yet: `pixels` holds dims[0] images of height × width × 3 bytes, which the
   * worker enlarges with `graph()` (built only when the worker does not hold this size's session) before running
   * the session on them as `dims`.
   */
  runEnlarged(pixels: Uint8Array, dims: readonly number[], height: number, width: number, graph: () => { bytes: Uint8Array; options: SessionOptions }): Promise<PredictResult> {
    const key = `${height}x${width}`;
    const known = this.enlargers.indexOf(key);
    if (known >= 0) this.enlargers.splice(known, 1);
    this.enlargers.push(key);
    const drop = this.enlargers.length > MAX_ENLARGERS ? this.enlargers.shift() : undefined;
    const made = known >= 0 ? undefined : graph();
    const enlarge = { key, dims: [dims[0]!, height, width, 3], ...(made ? { graph: made.bytes, options: sessionOptions(made.options) } : {}) };
    return this.send(pixels, dims, { enlarge, ...(drop === undefined ? {} : { drop }) });
  }

  private send(pixels: Uint8Array, dims: readonly number[], extra: { enlarge?: { dims: readonly number[] } } = {}): Promise<PredictResult> {
    if (this.failure) return Promise.reject(this.failure);
    const copy = pixels.slice(0, (extra.enlarge?.dims ?? dims).reduce((a, b) => a * b, 1));
    const id = this.nextId++;
    const result = new Promise<PredictResult>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'run', id, pixels: copy.buffer, dims, ...extra }, [copy.buffer]);
    });
    const forget = () => void this.inFlight.delete(settled);
    const settled: Promise<void> = result.then(forget, forget);
    this.inFlight.add(settled);
    return result;
  }

  /**
   * Stopping the thread while ONNX Runtime computes in it aborts the whole process (a native exception thrown in
   * a dying thread: exit 134 instead of an interrupted run's 130). So the batches in flight finish first (tens of
   * milliseconds), the session is released, and only then is the thread stopped.
   */
  async close(): Promise<void> {
    await Promise.all(this.inFlight);
    if (!this.failure) {
      const released = new Promise<void>((resolve) => {
        this.released = resolve;
        this.worker.postMessage({ type: 'release' });
      });
      // A worker that cannot answer any more is stopped anyway.
      await Promise.race([released, new Promise((resolve) => setTimeout(resolve, RELEASE_TIMEOUT_MS).unref())]);
    }
    await this.worker.terminate();
  }

  private receive(reply: Reply): void {
    if (reply.type === 'loaded') this.loaded?.resolve();
    else if (reply.type === 'released') this.released?.();
    else if (reply.type === 'result') {
      this.waiting.get(reply.id)?.resolve({ features: new Float32Array(reply.features), ...(reply.enlarge ? { enlarge: reply.enlarge } : {}) });
      this.waiting.delete(reply.id);
    } else if (reply.type === 'error') {
      const error = new OrchardError(`ONNX Runtime: ${reply.message}`, 'ERR_ENGINE');
      if (reply.id === undefined) this.loaded?.reject(error);
      else {
        this.waiting.get(reply.id)?.reject(error);
        this.waiting.delete(reply.id);
      }
    }
  }

  private fail(error: Error): void {
    this.failure = new OrchardError(`ONNX Runtime worker failed: ${error.message}`, 'ERR_ENGINE', undefined, { cause: error });
    this.loaded?.reject(this.failure);
    for (const { reject } of this.waiting.values()) reject(this.failure);
    this.waiting.clear();
  }
}

function workerFile(): string {
  for (const candidate of [path.join(__dirname, WORKER_FILE), path.join(__dirname, 'onnx', WORKER_FILE)]) {
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new OrchardError(`${WORKER_FILE} is missing next to ${__dirname}: the orchard installation is incomplete`, 'ERR_ENGINE');
}
