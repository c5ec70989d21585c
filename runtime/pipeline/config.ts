import * as os from 'node:os';
import * as path from 'node:path';
import { RUN_ID_PATTERN_SOURCE } from '../contracts/deployment';
import { ExitCode, OrchardError, invalidParameter } from '../errors';
import { DEFAULT_MAX_PIXELS } from '../images/limits';
import type { BackendPreference } from '../model/backend';
import type { ModelChoice } from '../model/choice';
import type { EnginePreference } from '../model/feature-model';
import { PRECISIONS, type Precision } from '../model/int8';
import { DEFAULT_MODEL, SIGNED_RANGE, UNIT_RANGE, type Normalization } from '../model/presets';
import type { ComponentsSpec } from '../pca/fit';
import { formatLocation, parseLocation, type Location, type S3Options } from '../storage';

/** The whole, validated configuration of one run. Built once, by `buildRunConfig`; nothing below reads argv/env. */
export interface RunConfig {
  readonly input: Location;
  readonly output: Location;
  readonly runId: string;
  readonly components: ComponentsSpec;
  readonly model: ModelChoice;
  /** Where web models and compiled graphs are cached; @default `<output bucket>/models/` for S3 output, ~/.cache/orchard/models otherwise. */
  readonly modelCache?: Location;
  /** Inference engine: ONNX Runtime, TensorFlow.js, or ONNX Runtime unless it cannot run the model (`auto`). */
  readonly engine: EnginePreference;
  /** TensorFlow.js backend, when TensorFlow.js runs the model. */
  readonly backend: BackendPreference;
  /** fp32, or int8: a QDQ graph quantized and calibrated once by plan, stored in the run folder (ONNX Runtime only). */
  readonly precision: Precision;
  /** Threads ONNX Runtime computes on. @default the machine's cores */
  readonly threads: number;
  readonly batchSize: number;
  /** Images read and decoded ahead of the model. */
  readonly concurrency: number;
  /** Images per shard: the unit of resume, and of a distributed map. */
  readonly shardSize: number;
  readonly maxErrorRate: number;
  readonly labelFrom: 'parent' | 'none';
  readonly keepFeatures: boolean;
  /** Decompression-bomb guard: largest width × height decoded. */
  readonly maxPixels: number;
  /** pca.csv and pca.parquet are written when the run has at most this many processed images. */
  readonly singleFileMaxRows: number;
  readonly s3: S3Options;
}

/**
 * A run's settings as plain values (URIs as strings): what the command line gives, what the demo and the tests
 * pass, and what `_work/config.json` stores so that a stage run in another process, on another machine, works
 * on exactly the same run. Everything but input and output has a default.
 */
export interface RunSettings {
  readonly input: string;
  readonly output: string;
  readonly runId?: string;
  readonly components?: number;
  readonly variance?: number;
  readonly model?: string;
  readonly featureLayer?: string;
  readonly inputSize?: number;
  readonly normalize?: '0,1' | '-1,1';
  readonly modelCache?: string;
  readonly engine?: EnginePreference;
  readonly backend?: BackendPreference;
  readonly precision?: Precision;
  readonly threads?: number;
  readonly batchSize?: number;
  readonly concurrency?: number;
  readonly shardSize?: number;
  readonly maxErrorRate?: number;
  readonly labelFrom?: 'parent' | 'none';
  readonly keepFeatures?: boolean;
  readonly maxPixels?: number;
  readonly singleFileMaxRows?: number;
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
  maxPixels: DEFAULT_MAX_PIXELS,
  /**
   * A million rows: pca.csv is then about 300 MB and takes about a minute to write; past it the Parquet dataset
   * (`pca/part-*.parquet`) is the result, which every engine that reads Parquet reads as one table.
   */
  singleFileMaxRows: 1_000_000,
  /** Objects larger than this are listed as errors without being downloaded. */
  maxImageBytes: 64 * 1024 * 1024,
} as const;

/** Settings that must not change when a run is resumed: they change what the shards contain. */
export const RESUME_INVARIANTS = ['input', 'model', 'featureLayer', 'inputSize', 'normalize', 'shardSize', 'labelFrom', 'maxPixels', 'precision'] as const;

/** Settings a stage process may set for itself (they depend on the machine, not on the run). */
export const MACHINE_SETTINGS = ['threads', 'concurrency'] as const;

/** A run id from the clock, e.g. `run-20261124-130522`: sorts by time, safe in S3 keys and file names. */
export function defaultRunId(now = new Date()): string {
  return `run-${now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}`;
}

/** Run ids become S3 key segments and file names: a safe character set, as in the SSM document's pattern. */
export const RUN_ID_PATTERN = new RegExp(`^${RUN_ID_PATTERN_SOURCE}$`);

/** ONNX Runtime's threads: one per core the process may use (ORT's own default counts physical cores only). */
export function defaultThreads(): number {
  return os.availableParallelism();
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

/**
 * The one way a RunConfig is made: from settings (the CLI's flags, the demo's choices, a test's, or a stored
 * `_work/config.json`), each checked and named in the error when wrong, defaults applied. `s3` is the caller's
 * own (endpoint and region are a property of where the process runs, not of the run).
 */
export function buildRunConfig(settings: RunSettings, s3: S3Options = {}): RunConfig {
  const input = parseLocation(required(settings.input, '--input'), '--input');
  const output = parseLocation(required(settings.output, '--output'), '--output');
  const runId = settings.runId === undefined ? defaultRunId() : checkRunId(settings.runId, '--run-id');
  if (settings.components !== undefined && settings.variance !== undefined) {
    throw new OrchardError('Give --components or --variance, not both', 'ERR_INVALID_PARAMETER', ExitCode.Usage);
  }
  const components: ComponentsSpec =
    settings.components !== undefined
      ? { kind: 'components', count: integer(settings.components, '--components') }
      : { kind: 'variance', fraction: fraction(settings.variance ?? DEFAULTS.variance, '--variance') };
  const batchSize = integer(settings.batchSize ?? DEFAULTS.batchSize, '--batch-size');
  const engine = oneOf(settings.engine ?? 'auto', ['auto', 'onnx', 'tfjs'], '--engine');
  const precision = oneOf(settings.precision ?? 'fp32', PRECISIONS, '--precision');
  if (precision === 'int8' && engine === 'tfjs') {
    throw new OrchardError('--precision int8 runs on ONNX Runtime only: use --engine onnx (or auto)', 'ERR_INVALID_PARAMETER', ExitCode.Usage);
  }
  return {
    input,
    output,
    runId,
    components,
    model: {
      ref: settings.model ?? DEFAULT_MODEL,
      featureLayer: settings.featureLayer,
      inputSize: settings.inputSize === undefined ? undefined : integer(settings.inputSize, '--input-size'),
      normalization: settings.normalize === undefined ? undefined : normalization(settings.normalize),
    },
    modelCache: settings.modelCache === undefined ? undefined : parseLocation(settings.modelCache, '--model-cache'),
    engine,
    backend: oneOf(settings.backend ?? 'auto', ['auto', 'tensorflow', 'wasm'], '--backend'),
    precision,
    threads: integer(settings.threads ?? defaultThreads(), '--threads'),
    batchSize,
    // At least a batch in flight, or the model would wait for every batch to be read.
    concurrency: Math.max(integer(settings.concurrency ?? DEFAULTS.concurrency, '--concurrency'), batchSize),
    shardSize: integer(settings.shardSize ?? DEFAULTS.shardSize, '--shard-size'),
    maxErrorRate: rate(settings.maxErrorRate ?? DEFAULTS.maxErrorRate, '--max-error-rate'),
    labelFrom: oneOf(settings.labelFrom ?? 'parent', ['parent', 'none'], '--label-from'),
    keepFeatures: settings.keepFeatures ?? false,
    maxPixels: integer(settings.maxPixels ?? DEFAULTS.maxPixels, '--max-pixels'),
    singleFileMaxRows: wholeNumber(settings.singleFileMaxRows ?? DEFAULTS.singleFileMaxRows, '--single-file-max-rows'),
    s3,
  };
}

/** The settings of a config, as `_work/config.json` stores them (the inverse of `buildRunConfig`). */
export function settingsOf(config: RunConfig): RunSettings {
  const { model } = config;
  return {
    input: formatLocation(config.input),
    output: formatLocation(config.output),
    runId: config.runId,
    ...(config.components.kind === 'components' ? { components: config.components.count } : { variance: config.components.fraction }),
    model: model.ref,
    featureLayer: model.featureLayer,
    inputSize: model.inputSize,
    normalize: model.normalization === undefined ? undefined : model.normalization === SIGNED_RANGE ? '-1,1' : '0,1',
    modelCache: config.modelCache === undefined ? undefined : formatLocation(config.modelCache),
    engine: config.engine,
    backend: config.backend,
    // fp32 is left out, as before --precision existed: runs planned then resume unchanged.
    precision: config.precision === 'fp32' ? undefined : config.precision,
    threads: config.threads,
    batchSize: config.batchSize,
    concurrency: config.concurrency,
    shardSize: config.shardSize,
    maxErrorRate: config.maxErrorRate,
    labelFrom: config.labelFrom,
    keepFeatures: config.keepFeatures,
    maxPixels: config.maxPixels,
    singleFileMaxRows: config.singleFileMaxRows,
  };
}

function required(value: string | undefined, name: string): string {
  if (typeof value !== 'string' || value === '') throw invalidParameter(name, 'an s3:// URI or a folder', value);
  return value;
}

/** A run id as every entry point checks it (flags, stored settings, the stage function's events). */
export function checkRunId(value: unknown, name: string): string {
  if (typeof value !== 'string' || !RUN_ID_PATTERN.test(value)) throw invalidParameter(name, 'letters, digits, ".", "_" or "-" (at most 128)', value);
  return value;
}

function integer(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw invalidParameter(name, 'a whole number ≥ 1', value);
  return value;
}

export function wholeNumber(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) throw invalidParameter(name, 'a whole number ≥ 0', value);
  return value;
}

function fraction(value: number, name: string): number {
  if (typeof value !== 'number' || !(value > 0 && value < 1)) throw invalidParameter(name, 'a number between 0 and 1 (exclusive)', value);
  return value;
}

function rate(value: number, name: string): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw invalidParameter(name, 'a number from 0 to 1', value);
  return value;
}

function oneOf<T extends string>(value: string, choices: readonly T[], name: string): T {
  if (!(choices as readonly string[]).includes(value)) throw invalidParameter(name, `one of ${choices.join(', ')}`, value);
  return value as T;
}

function normalization(value: string): Normalization {
  if (value === '0,1') return UNIT_RANGE;
  if (value === '-1,1') return SIGNED_RANGE;
  throw invalidParameter('--normalize', '0,1 or -1,1', value);
}
