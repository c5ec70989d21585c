import * as os from 'node:os';
import { ORT_TELEMETRY_OFF } from '../contracts/deployment';
import { OrchardError, describeError } from '../errors';

export type Ort = typeof import('onnxruntime-node');
export type OrtSession = import('onnxruntime-node').InferenceSession;

export interface OrtRuntime {
  readonly ort: Ort;
  readonly version: string;
}

let loaded: OrtRuntime | undefined;

/**
 * Loads onnxruntime-node on first use. Its CPU binaries ship inside the npm package for linux x64/arm64,
 * macOS arm64 and Windows; elsewhere (an Intel Mac, a libc older than glibc 2.28) loading fails, which this
 * turns into an OrchardError saying so, so that `--engine auto` can fall back to TensorFlow.js. Its telemetry is
 * turned off first, on every path (CLI, Lambda, bench, tests; the predict worker inherits the environment).
 */
export function loadOrt(): OrtRuntime {
  if (loaded) return loaded;
  Object.assign(process.env, ORT_TELEMETRY_OFF);
  let ort: Ort;
  try {
    ort = require('onnxruntime-node') as Ort;
  } catch (error) {
    throw new OrchardError(
      `onnxruntime-node cannot load on ${os.platform()}/${os.arch()}: ${describeError(error)}`,
      'ERR_ENGINE',
    );
  }
  const version = (ort.env.versions as { node?: string; common?: string }).node ?? ort.env.versions.common ?? '?';
  loaded = { ort, version };
  return loaded;
}

export interface SessionOptions {
  /** Intra-op threads: the machine's cores by default. */
  readonly threads: number;
  /**
   * Give a run's intermediate buffers back when it ends, instead of keeping them in ONNX Runtime's arena for the
   * next run (its default): for a session that runs now and then on large inputs, so that what it needed once
   * does not stay resident for the rest of the process.
   */
  readonly releaseMemory?: boolean;
}

/**
 * A session with every graph optimisation on ('all' fuses Conv+BatchNorm+Clip and lays convolutions out for the
 * CPU's vector width: measured twice as fast as 'basic' on MobileNetV2), and threads that sleep rather than
 * spin when idle, so that decoding on the same cores is not starved between batches.
 */
export async function createSession(runtime: OrtRuntime, model: Uint8Array, options: SessionOptions): Promise<OrtSession> {
  return runtime.ort.InferenceSession.create(model, sessionOptions(options));
}

/** The options `createSession` uses (a worker thread creates its session with them too). */
export function sessionOptions(options: SessionOptions): import('onnxruntime-node').InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
    ...(options.releaseMemory ? { enableCpuMemArena: false, enableMemPattern: false } : {}),
  };
}
