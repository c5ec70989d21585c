import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { OrchardError } from '../errors';
import { sessionOptions, type SessionOptions } from './runtime';

/** How long close() waits for the session's release before it stops the thread regardless. */
const RELEASE_TIMEOUT_MS = 10_000;

/** The worker's file: beside this module in the repository, beside orchard.cjs in the bundle (copied there). */
const WORKER_FILE = 'predict-worker.cjs';

type Reply =
  | { readonly type: 'loaded' | 'released' }
  | { readonly type: 'result'; readonly id: number; readonly features: ArrayBuffer }
  | { readonly type: 'error'; readonly id?: number; readonly message: string };

/**
 * An ONNX Runtime session in a worker thread. `run` copies the batch before it returns, so the caller can fill
 * the same buffer with the next batch while this one is computed; results come back in the order asked.
 */
export class PredictWorker {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (features: Float32Array) => void; reject: (error: Error) => void }>();
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

  run(pixels: Uint8Array, dims: readonly number[]): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    const copy = pixels.slice(0, dims.reduce((a, b) => a * b, 1));
    const id = this.nextId++;
    const result = new Promise<Float32Array>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'run', id, pixels: copy.buffer, dims }, [copy.buffer]);
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
      this.waiting.get(reply.id)?.resolve(new Float32Array(reply.features));
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
