import { ExitCode, OrchardError, describeError } from './errors';
import { readModelFiles } from './model/artifacts';
import { initTf, type BackendPreference, type TfRuntime } from './model/backend';
import { loadEngine } from './model/engine';
import { describeEngine, type EnginePreference } from './model/feature-model';
import { resolveModel } from './model/resolve';
import { loadOrt } from './onnx/runtime';
import type { ModelChoice } from './model/choice';
import { DEFAULTS, defaultModelCache, defaultThreads } from './pipeline/config';
import { openStorage, type Location, type S3Options } from './storage';

/**
 * `orchard doctor`: checks, one line each, that this machine can run the pipeline, in the order a run needs
 * them. The EC2 bootstrap runs it before it signals CloudFormation, so a broken instance fails `cdk deploy`
 * with the check that broke instead of failing its first run.
 *
 * Native modules (sharp, tfjs-node) are loaded inside their checks, never at import, so a machine where they
 * are missing or built for another platform gets a FAIL line naming the cause rather than a stack trace.
 */

/** The Node.js major version the instance runs: tfjs-node 4.22 breaks on Node ≥ 23, and CI runs 22. */
export const SUPPORTED_NODE_MAJOR = 22;

/** `warn` is printed but does not fail the doctor; any `FAIL` does. */
export type CheckStatus = 'ok' | 'warn' | 'FAIL';
export type CheckName = 'node' | 'sharp' | 'onnx' | 'backend' | 's3' | 'model';
export type S3Location = Location & { readonly kind: 's3' };

export interface CheckResult {
  readonly name: CheckName;
  readonly status: CheckStatus;
  readonly detail: string;
  readonly seconds: number;
}

export interface DoctorConfig {
  /** The model a run would use (default of `run`: the mobilenet_v2 preset). */
  readonly model: ModelChoice;
  /** Where a web model is cached. @default `s3://<bucket>/models/` of the first of `buckets`; none without. */
  readonly modelCache?: Location;
  /** S3 locations whose reachability is checked, each by a listing of one key under its prefix. @default none */
  readonly buckets?: readonly S3Location[];
  readonly engine: EnginePreference;
  readonly backend: BackendPreference;
  readonly s3: S3Options;
}

export interface DoctorDependencies {
  /** Called as each check ends, so slow checks (a model download) show progress. */
  readonly onCheck?: (result: CheckResult) => void;
  /** @default process.version */
  readonly nodeVersion?: string;
}

export interface DoctorReport {
  readonly checks: readonly CheckResult[];
  readonly passed: boolean;
  /** 0 when no check failed (warnings allowed), 1 otherwise. */
  readonly exitCode: ExitCode;
}

/** Side of the square images the sharp check decodes to: the input size of MobileNetV2. */
const SHARP_CHECK_SIZE = 224;
/** Largest difference per channel accepted between a generated colour and what comes back (JPEG/WebP loss). */
const COLOUR_TOLERANCE = 12;

export async function runDoctor(config: DoctorConfig, deps: DoctorDependencies = {}): Promise<DoctorReport> {
  const checks: CheckResult[] = [];
  const record = async (name: CheckName, check: () => Promise<{ status?: CheckStatus; detail: string }>) => {
    const started = performance.now();
    let result: CheckResult;
    try {
      const { status = 'ok', detail } = await check();
      result = { name, status, detail, seconds: elapsed(started) };
    } catch (error) {
      result = { name, status: 'FAIL', detail: describeFailure(error), seconds: elapsed(started) };
    }
    checks.push(result);
    deps.onCheck?.(result);
    return result;
  };

  await record('node', async () => checkNodeVersion(deps.nodeVersion ?? process.version));
  await record('sharp', checkSharp);
  const onnx = await record('onnx', async () => checkOnnx(config.engine));
  let tf: TfRuntime | undefined;
  await record('backend', async () => {
    tf = await initTf(config.backend);
    return { detail: describeBackend(tf, config.backend) };
  });
  for (const bucket of config.buckets ?? []) await record('s3', () => checkBucket(bucket, config.s3));
  await record('model', async () => {
    if (config.engine === 'onnx' && onnx.status === 'FAIL') throw new OrchardError('not checked: ONNX Runtime does not load (see the onnx check)', 'ERR_ENGINE');
    if (!tf && config.engine === 'tfjs') throw new OrchardError('not checked: no TensorFlow.js backend (see the backend check)', 'ERR_BACKEND');
    return checkModel(tf, config);
  });

  const passed = checks.every((check) => check.status !== 'FAIL');
  return { checks, passed, exitCode: passed ? ExitCode.Ok : ExitCode.Fatal };
}

/** `ok|warn|FAIL <check>: <detail>`, the line the doctor prints per check. */
export function formatCheck(check: CheckResult): string {
  return `${check.status} ${check.name}: ${check.detail}`;
}

/** The last line: which checks failed, or that all passed. */
export function formatSummary(report: DoctorReport): string {
  const failed = report.checks.filter((check) => check.status === 'FAIL').map((check) => check.name);
  const warnings = report.checks.filter((check) => check.status === 'warn').length;
  if (failed.length > 0) return `doctor: failed: ${failed.join(', ')} (${failed.length} of ${report.checks.length} checks)`;
  return `doctor: passed (${report.checks.length} checks${warnings > 0 ? `, ${warnings} warning${warnings > 1 ? 's' : ''}` : ''})`;
}

export function checkNodeVersion(version: string): { status: CheckStatus; detail: string } {
  const major = Number(/^v?(\d+)\./.exec(version)?.[1]);
  if (major === SUPPORTED_NODE_MAJOR) return { status: 'ok', detail: `Node.js ${version}` };
  return {
    status: 'warn',
    detail:
      `Node.js ${version}: the instance runs Node.js ${SUPPORTED_NODE_MAJOR} ` +
      `(@tensorflow/tfjs-node 4.22 breaks on Node.js 23 and later); other versions are not what was tested`,
  };
}

/** Loads sharp and runs generated JPEG, PNG and WebP images through the pipeline's own preprocessing. */
async function checkSharp(): Promise<{ detail: string }> {
  type Sharp = typeof import('sharp').default;
  let sharp: Sharp;
  let preprocess: typeof import('./images/preprocess');
  try {
    // `require`, not `import()`: orchard runs as CommonJS (tsx's require hook, or the esbuild bundle).
    const loaded = require('sharp') as Sharp & { default?: Sharp };
    sharp = loaded.default ?? loaded;
    preprocess = require('./images/preprocess') as typeof import('./images/preprocess');
  } catch (error) {
    throw new OrchardError(
      `cannot load sharp: ${describeError(error)}. Fix: install orchard's dependencies for this platform ` +
        '(npm ci in a clone; npm install --omit=dev next to orchard.cjs, as the bootstrap does)',
      'ERR_SHARP',
    );
  }
  const colour = { r: 200, g: 40, b: 90 };
  const source = sharp({ create: { width: 64, height: 48, channels: 3, background: colour } });
  const samples: [string, Buffer][] = [
    ['JPEG', await source.clone().jpeg({ quality: 95 }).toBuffer()],
    ['PNG', await source.clone().png().toBuffer()],
    ['WebP', await source.clone().webp({ quality: 95 }).toBuffer()],
  ];
  for (const [format, data] of samples) {
    const image = await preprocess.preprocessImage(data, { size: SHARP_CHECK_SIZE, maxPixels: DEFAULTS.maxPixels });
    const [r, g, b] = [image.pixels[0]!, image.pixels[1]!, image.pixels[2]!];
    const expectedBytes = SHARP_CHECK_SIZE * SHARP_CHECK_SIZE * 3;
    if (image.pixels.length !== expectedBytes) {
      throw new OrchardError(`decoding a ${format} gave ${image.pixels.length} bytes, expected ${expectedBytes}`, 'ERR_SHARP');
    }
    if (Math.max(Math.abs(r - colour.r), Math.abs(g - colour.g), Math.abs(b - colour.b)) > COLOUR_TOLERANCE) {
      throw new OrchardError(
        `decoding a ${format} of rgb(${colour.r},${colour.g},${colour.b}) gave rgb(${r},${g},${b})`,
        'ERR_SHARP',
      );
    }
  }
  return {
    detail:
      `sharp ${sharp.versions.sharp ?? '?'} (libvips ${sharp.versions.vips}) decoded generated ` +
      `${samples.map(([format]) => format).join(', ')} images to ${SHARP_CHECK_SIZE}×${SHARP_CHECK_SIZE} RGB`,
  };
}

function describeBackend(tf: TfRuntime, preference: BackendPreference): string {
  const versions = Object.entries(tf.versions)
    .filter(([name]) => name === 'tfjs-core' || name === 'tfjs-node')
    .map(([name, version]) => `${name} ${version}`)
    .join(', ');
  const why =
    preference !== 'auto'
      ? `chosen with --backend ${preference}`
      : tf.backend === 'wasm'
        ? '@tensorflow/tfjs-node is not installed, so WebAssembly'
        : '@tensorflow/tfjs-node is installed';
  return `${tf.backend} (${versions}; ${why})`;
}

/** onnxruntime-node loads here. Under `--engine auto` a failure is a warning: runs fall back to TensorFlow.js. */
function checkOnnx(engine: EnginePreference): { status: CheckStatus; detail: string } {
  if (engine === 'tfjs') return { status: 'ok', detail: 'not used (--engine tfjs)' };
  try {
    const { version } = loadOrt();
    return { status: 'ok', detail: `onnxruntime-node ${version} loads (${process.platform}/${process.arch}); runs use ${defaultThreads()} threads` };
  } catch (error) {
    if (engine === 'onnx') throw error;
    return { status: 'warn', detail: `${describeFailure(error)}; runs fall back to TensorFlow.js` };
  }
}

/**
 * The bucket exists and this identity may list under the prefix (what a run does first): a listing of one key,
 * then the first key found, so that the line shows what is there.
 */
async function checkBucket(bucket: S3Location, s3: S3Options): Promise<{ detail: string }> {
  const storage = openStorage(bucket, s3);
  await storage.check();
  let first: string | undefined;
  for await (const item of storage.list()) {
    first = item.key;
    break;
  }
  const where = s3.endpoint ? ` through ${s3.endpoint}` : '';
  return {
    detail: `${storage.uri()} is reachable${where}: ${first === undefined ? 'no objects under it yet' : `lists ${storage.uri(first)}`}`,
  };
}

/**
 * Loads the model exactly as a run does (same files, cache, feature cut and engine: for onnx, the graph is
 * compiled and cached next to the weights, so that the first run does not compile it) and predicts once.
 */
async function checkModel(tf: TfRuntime | undefined, config: DoctorConfig): Promise<{ status: CheckStatus; detail: string }> {
  const preset = resolveModel(config.model);
  const first = config.buckets?.[0];
  const cacheLocation = config.modelCache ?? (first ? defaultModelCache(first) : undefined);
  const cache = cacheLocation ? openStorage(cacheLocation, config.s3) : undefined;
  const files = await readModelFiles(preset.source, { cache, s3: config.s3 });
  const warnings: string[] = [];
  const { model } = await loadEngine(preset, files, {
    engine: config.engine,
    backend: config.backend,
    threads: defaultThreads(),
    batchSize: 1,
    graphCache: cache,
    warn: (message) => warnings.push(message),
    tf,
  });
  model.dispose();
  const { identity } = model;
  return {
    status: warnings.length > 0 ? 'warn' : 'ok',
    detail:
      `${identity.name} gives ${identity.featureDim} features per image (${identity.format}, ` +
      `${identity.inputSize}×${identity.inputSize} input${identity.featureLayer ? `, layer ${identity.featureLayer}` : ''}) ` +
      `from ${identity.loadedFrom}, weights sha256 ${identity.weightsSha256.slice(0, 12)}…, on the ${describeEngine(model.engine)}` +
      warnings.map((warning) => `; ${warning}`).join(''),
  };
}

function describeFailure(error: unknown): string {
  return error instanceof OrchardError ? error.message : describeError(error);
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started) / 1000;
}
