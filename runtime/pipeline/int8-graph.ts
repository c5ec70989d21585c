import * as os from 'node:os';
import { ExitCode, OrchardError } from '../errors';
import { isImageError, preprocessImage } from '../images/preprocess';
import type { ModelFiles } from '../model/artifacts';
import { resolveModel } from '../model/resolve';
import { buildInt8Graph, type Int8Graph } from '../model/int8';
import type { CompiledGraph } from '../model/to-onnx/compile';
import { detectInt8Support, type Int8Support } from '../onnx/cpu';
import { loadOrt } from '../onnx/runtime';
import type { Reporter } from '../progress';
import { DEFAULTS, type RunConfig } from './config';
import type { Plan, RunFolder } from './run-folder';
import type { Storage } from '../storage';

/** What the int8 graph needs of an open run (context.ts's OpenRun, which loads the engine through this module). */
interface Int8Run {
  readonly config: RunConfig;
  readonly input: Storage;
  readonly folder: RunFolder;
}

/** Images calibration looks at: the ranges of MobileNetV2's activations settle well before 100. */
export const CALIBRATION_IMAGES = 100;

/**
 * Which of a run's images calibrate its int8 graph: `count` positions spread evenly over the listing (keys in
 * order), so a `Class/image.jpg` layout gives every class its share, and the same listing always the same sample.
 */
export function calibrationPositions(images: number, count = CALIBRATION_IMAGES): number[] {
  const n = Math.min(images, count);
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) * images) / n));
}

/**
 * The run's int8 graph, made once, by plan: quantized from the float graph with the weight range of this machine's
 * CPU, calibrated on a sample of the run's own images, stored in the run folder. A resumed plan keeps the stored
 * one (it must come from the same float graph).
 */
export async function prepareInt8Graph(run: Int8Run, plan: Plan, files: ModelFiles, fp32: CompiledGraph, reporter: Reporter): Promise<Int8Graph> {
  const { config, folder } = run;
  const stored = await folder.readInt8Graph();
  if (stored) {
    if (stored.weightsSha256 !== files.weightsSha256 || stored.info.fp32GraphSha256 !== fp32.sha256) {
      throw new OrchardError(
        `Cannot resume run ${config.runId}: its int8 graph was quantized from another model graph (sha256 ${stored.info.fp32GraphSha256.slice(0, 12)}…, now ${fp32.sha256.slice(0, 12)}…). Use another --run-id`,
        'ERR_RESUME_MISMATCH',
        ExitCode.Usage,
      );
    }
    return stored;
  }
  const started = performance.now();
  const inputSize = resolveModel(config.model).inputSize;
  const { keys, images } = await calibrationSample(run, plan, inputSize, config);
  const support = planWeightRange();
  const int8 = await buildInt8Graph(loadOrt(), fp32, images, { inputSize, threads: config.threads, support });
  await folder.writeInt8Graph(int8, files.weightsSha256, keys);
  reporter.info(
    `model: int8 graph with ${support.weightBits}-bit weights (${support.reason}), calibrated on ${images.length} images in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return int8;
}

/**
 * The weight range of the run's graph: this CPU's, except where the run's extract workers may run on other CPUs.
 * Lambda's x86_64 hosts are of mixed generations: a plan on one with VNNI would give 8-bit weights that saturate on
 * a worker without it, so the scale path's x86_64 plan keeps to 7 bits (exact everywhere, a little less precise).
 */
export function planWeightRange(env: NodeJS.ProcessEnv = process.env, arch: string = os.arch()): Int8Support {
  if (env.AWS_LAMBDA_FUNCTION_NAME && arch === 'x64') return { weightBits: 7, reason: 'Lambda x86_64, whose hosts may lack VNNI' };
  return detectInt8Support(arch);
}

/** The run's int8 graph for an extract process: the one plan stored, never one made here. */
export async function requireInt8Graph(run: Int8Run, files: ModelFiles, reporter: Reporter): Promise<Int8Graph> {
  const stored = await run.folder.readInt8Graph();
  if (!stored) {
    throw new OrchardError(`${run.folder.uri()} has no int8 graph (_work/int8/graph.onnx): run \`orchard plan\` for this run id first`, 'ERR_NO_PLAN');
  }
  if (stored.weightsSha256 !== files.weightsSha256) {
    throw new OrchardError(
      `The int8 graph of run ${run.config.runId} was made from other model weights (sha256 ${stored.weightsSha256.slice(0, 12)}…, now ${files.weightsSha256.slice(0, 12)}…). Use another --run-id`,
      'ERR_RESUME_MISMATCH',
      ExitCode.Usage,
    );
  }
  const here = detectInt8Support();
  if (stored.info.weightBits > here.weightBits) {
    // The graph is the run's and is kept; this machine's integer kernels may saturate on it (features drift).
    reporter.warn(
      `int8: run ${run.config.runId}'s graph has 8-bit weights (made on a CPU with ${stored.info.cpu}), and this CPU has no 8-bit dot product (${here.reason}): its features may be less accurate than the plan machine's. Extract int8 runs on CPUs like the plan's`,
    );
  }
  return stored;
}

async function calibrationSample(run: Int8Run, plan: Plan, size: number, config: RunConfig): Promise<{ keys: string[]; images: Uint8Array[] }> {
  const keys: string[] = [];
  const images: Uint8Array[] = [];
  const shards = new Map<number, Awaited<ReturnType<typeof run.folder.readShardItems>>>();
  for (const position of calibrationPositions(plan.images)) {
    const shard = Math.floor(position / plan.shardSize);
    if (!shards.has(shard)) shards.set(shard, await run.folder.readShardItems(shard));
    const item = shards.get(shard)![position % plan.shardSize];
    if (!item || item.size > DEFAULTS.maxImageBytes) continue;
    try {
      const image = await preprocessImage(await run.input.get(item.key), { size, maxPixels: config.maxPixels });
      keys.push(item.key);
      images.push(image.pixels);
    } catch (error) {
      // A file that is not an image is an error row of extract; calibration just does without it.
      if (!isImageError(error)) throw error;
    }
  }
  if (images.length === 0) {
    throw new OrchardError(`--precision int8: none of ${calibrationPositions(plan.images).length} sampled inputs could be decoded for calibration`, 'ERR_NO_INPUT', ExitCode.Fatal);
  }
  return { keys, images };
}

