import * as os from 'node:os';
import * as path from 'node:path';
import type { BackendPreference } from '../model/backend';
import type { EnginePreference } from '../model/feature-model';
import type { Normalization } from '../model/presets';
import type { ComponentsSpec } from '../pca/fit';
import type { Location, S3Options } from '../storage';

/** Which model to run: a preset name, or a tfjs model by URL / S3 URI / path, with optional overrides. */
export interface ModelChoice {
  readonly ref: string;
  readonly featureLayer?: string;
  readonly inputSize?: number;
  readonly normalization?: Normalization;
}

/** The whole, validated configuration of one run. Built once at the edge (CLI); nothing below reads argv/env. */
export interface RunConfig {
  readonly input: Location;
  readonly output: Location;
  readonly runId: string;
  readonly components: ComponentsSpec;
  readonly model: ModelChoice;
  /** Where web models are cached; @default `<output bucket>/models/` for S3 output, ~/.cache/orchard/models otherwise. */
  readonly modelCache?: Location;
  /** Inference engine: ONNX Runtime, TensorFlow.js, or ONNX Runtime unless it cannot run the model (`auto`). */
  readonly engine: EnginePreference;
  /** TensorFlow.js backend, when TensorFlow.js runs the model. */
  readonly backend: BackendPreference;
  /** Threads ONNX Runtime computes on. @default the machine's cores */
  readonly threads: number;
  readonly batchSize: number;
  /** Images read and decoded ahead of the model. */
  readonly concurrency: number;
  /** Images per shard: the unit of resume (and of a distributed map later). */
  readonly shardSize: number;
  readonly maxErrorRate: number;
  readonly labelFrom: 'parent' | 'none';
  readonly keepFeatures: boolean;
  /** Decompression-bomb guard: largest width × height decoded. */
  readonly maxPixels: number;
  readonly s3: S3Options;
}

export const DEFAULTS = {
  variance: 0.95,
  /**
   * Measured on 2 cores, MobileNetV2 224: ONNX Runtime predicts 274 images/s at batch 8, 263 at 16, 255 at 32;
   * tfjs on WebAssembly 24.3 at batch 8 with a 0.5 GB peak RSS, 22.7 at 32 with 1.4 GB (the activations of the
   * whole batch live in wasm memory, which never shrinks). Larger batches buy nothing here and cost memory.
   */
  batchSize: 8,
  concurrency: 64,
  shardSize: 4096,
  maxErrorRate: 0.01,
  maxPixels: 40_000_000,
  /** Objects larger than this are listed as errors without being downloaded. */
  maxImageBytes: 64 * 1024 * 1024,
} as const;

/** ONNX Runtime's threads: one per core the process may use (ORT's own default counts physical cores only). */
export function defaultThreads(): number {
  return os.availableParallelism();
}

/** Config fields that must not change when a run is resumed: they change what the shards contain. */
export const RESUME_INVARIANTS = ['input', 'model', 'shardSize', 'labelFrom', 'maxPixels'] as const;

/** A run id from the clock, e.g. `run-20261124-130522`: sorts by time, safe in S3 keys and file names. */
export function defaultRunId(now = new Date()): string {
  return `run-${now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}`;
}

/**
 * Web models are cached next to the results: `s3://<output bucket>/models/`, or ~/.cache/orchard/models. Kept
 * here, free of native modules, because `orchard doctor` uses it without loading the pipeline.
 */
export function defaultModelCache(output: Location): Location {
  return output.kind === 's3'
    ? { kind: 's3', bucket: output.bucket, prefix: 'models/' }
    : { kind: 'local', dir: path.join(os.homedir(), '.cache', 'orchard', 'models') };
}
