import * as path from 'node:path';
import pMap from 'p-map';
import { OUTPUTS } from '../contracts/results';
import { ExitCode, OrchardError, describeError } from '../errors';
import { readModelFiles, type ModelFiles } from '../model/artifacts';
import type { CompiledGraph } from '../model/to-onnx/compile';
import { tfForWeights } from '../model/backend';
import { resolveModel } from '../model/resolve';
import { loadOrCompileGraph } from '../model/to-onnx/cache';
import type { Reporter } from '../progress';
import { exists, formatLocation, openStorage, type Location, type Storage } from '../storage';
import { RESUME_INVARIANTS, settingsOf, type RunConfig, type RunSettings } from './config';
import type { OpenRun } from './context';
import { prepareInt8Graph } from './int8-graph';
import { listShards } from './list';
import { refuseOverlap } from './overlap';
import { Lease, describeHolder, staleBecause } from './lease';
import type { Plan, RunFolder, ShardItem } from './run-folder';

export interface PlanResult {
  readonly plan: Plan;
  /** True when an earlier attempt had already listed the input (its shards are kept). */
  readonly reused: boolean;
  /** Shards not yet extracted, and the key of the work-item file that lists them (for an engine's map). */
  readonly pending: readonly number[];
  readonly itemsKey: string;
}

/**
 * Every check a run can make before it writes anything: the settings (a known model, an output that is not the
 * input), the input (it exists, can be read, holds something), the output (reachable), the run folder (not
 * completed, not started with other settings, not holding shards without their plan), and for a new run the
 * model's files (read into the model cache). Nothing is written in the run folder, whatever fails.
 */
export async function validateRun(run: OpenRun): Promise<void> {
  const { config, input, folder } = run;
  resolveModel(config.model);
  refuseOverlap(config.input, folder.storage.location);
  excludedPrefixes(run);
  await input.check({ mustExist: true });
  await folder.storage.check();
  if (await folder.isPublished()) {
    throw new OrchardError(
      `Run ${config.runId} already completed at ${folder.uri()}; it is never overwritten. Choose another --run-id`,
      'ERR_RUN_EXISTS',
      ExitCode.Usage,
    );
  }
  const previous = await folder.readConfig<RunSettings>();
  if (!previous) {
    if (await exists(folder.storage, OUTPUTS.manifest)) {
      throw new OrchardError(`${folder.uri()} holds outputs of another run; choose another --run-id`, 'ERR_RUN_EXISTS', ExitCode.Usage);
    }
    // orchard writes and deletes under a _work/ of its own only: one holding anything else is someone else's folder.
    const foreign = await folder.foreignWorkObject();
    if (foreign) {
      throw new OrchardError(
        `${folder.uri()} holds a _work/ that orchard did not write (${folder.uri(foreign)}): choose another --run-id or --output`,
        'ERR_RUN_EXISTS',
        ExitCode.Usage,
      );
    }
  } else {
    const settings = settingsOf(config);
    for (const field of RESUME_INVARIANTS) {
      if (JSON.stringify(previous[field]) !== JSON.stringify(settings[field])) {
        throw new OrchardError(
          `Cannot resume run ${config.runId}: ${field} was ${shown(field, previous[field])} and is now ${shown(field, settings[field])}. ` +
            'Use the same settings, or another --run-id',
          'ERR_RESUME_MISMATCH',
          ExitCode.Usage,
        );
      }
    }
  }
  if (!(await folder.readPlan())) {
    // Shards without a plan: the plan expired (lifecycle) or was deleted. Listing again could cut different shards
    // than the ones already extracted, so the run cannot be resumed safely.
    const leftover = await folder.hasExtractData();
    if (leftover) {
      throw new OrchardError(
        `${folder.uri()} holds extracted shards (${leftover}) but no _work/plan.json: its intermediate files expired or were ` +
          'deleted. Start again with another --run-id',
        'ERR_RESUME_MISMATCH',
        ExitCode.Usage,
      );
    }
    // A new run over an empty input is refused here, before the lease or the listing writes anything: the run
    // folder stays as it was (one listing request on S3, the walk down to the first file of a folder).
    if (!(await hasInputObject(input, excludedPrefixes(run)))) throw noInput(input);
    // So is a model that cannot be read (a wrong path, no internet for a web model): a run folder planned with it
    // could only be resumed with the same --model. Its files land in the model cache, where plan looks next.
    await readModelFiles(resolveModel(config.model).source, { cache: openStorage(run.modelCache, config.s3), s3: config.s3 });
  }
}

/** Defaults the stored settings leave out, named in the resume refusal (runs planned before --precision existed resume). */
const UNSTORED_DEFAULTS: Partial<Record<string, string>> = { precision: 'fp32' };

/** A setting as the resume refusal names it: unset is its default (fp32 for --precision, the preset's input size). */
function shown(field: string, value: unknown): string {
  if (value !== undefined) return JSON.stringify(value);
  const fallback = UNSTORED_DEFAULTS[field];
  return fallback ? `"${fallback}" (the default)` : "the preset's default";
}

function noInput(input: Storage): OrchardError {
  return new OrchardError(`No files found under ${input.uri()}`, 'ERR_NO_INPUT', ExitCode.Fatal);
}

async function hasInputObject(input: Storage, exclude: readonly string[]): Promise<boolean> {
  for await (const object of input.list()) if (!exclude.some((prefix) => object.key.startsWith(prefix))) return true;
  return false;
}

/** Takes the run's lease (plan, fit, publish and `orchard run` hold it): one process at a time works on a run. */
export function acquireRunLease(run: OpenRun, purpose: string, onLost: (error: OrchardError) => void, reporter: Reporter): Promise<Lease> {
  return Lease.acquire(run.folder.storage, run.folder.leaseKey('run'), {
    purpose: `${purpose} ${run.config.runId}`,
    onLost,
    onTakeOver: (previous) =>
      reporter.info(`run ${run.config.runId}: taking over from ${describeHolder(previous)}: ${staleBecause(previous, Date.now()) ?? 'it is gone'}`),
  });
}

/**
 * The plan stage: everything `validateRun` checks, then the listing of the input into shards (once: a resumed
 * run keeps its shards), and only when images were found, the run's settings and plan. Then the model cache is
 * filled (the weights, and the compiled ONNX graph unless the engine is tfjs) so that extract tasks need no
 * internet and compile nothing, and the work items are written: the shards not yet extracted.
 */
export async function planStage(run: OpenRun, reporter: Reporter): Promise<PlanResult> {
  const { config, input, folder } = run;
  const started = new Date();
  await validateRun(run);
  reporter.info(`run ${config.runId}: ${formatLocation(config.input)} → ${folder.uri()}`);

  let plan = await folder.readPlan();
  const reused = plan !== undefined;
  if (plan) {
    reporter.info(`list: reusing the plan of this run (${plan.images} images in ${plan.shards} shards)`);
  } else {
    const listStarted = performance.now();
    // Folder by folder in parallel on AWS S3; through another endpoint one plain listing (see ListOptions.parallel).
    const parallel = config.input.kind === 's3' && config.s3.endpoint === undefined;
    const { skipped, ...listed } = await listShards(input, { shardSize: config.shardSize, exclude: excludedPrefixes(run), parallel }, heldUntil(componentsWanted(config), (shard, items) => folder.writeShardItems(shard, items)), (shard) => folder.deleteShardItems(shard));
    if (skipped.length > 0) {
      reporter.warn(`list: skipped ${skipped.length} orchard run folder(s) inside the input, their files are not images: ${skipped.map((prefix) => input.uri(prefix)).join(', ')}`);
    }
    // Nothing is kept of a listing that found nothing: the same run id lists again once images are there.
    if (listed.images === 0) throw noInput(input);
    // A PCA has at most as many components as images: say so now, not after extracting them all.
    if (config.components.kind === 'components' && config.components.count > listed.images) {
      throw new OrchardError(
        `--components ${config.components.count} is more than ${listed.images} images can give (at most one per image): give a smaller -k, or --variance`,
        'ERR_INVALID_PARAMETER',
        ExitCode.Usage,
      );
    }
    plan = { ...listed, shardSize: config.shardSize, startedAt: started.toISOString(), listSeconds: (performance.now() - listStarted) / 1000 };
    if (!(await folder.readConfig())) await folder.writeConfig(settingsOf(config));
    await folder.writePlan(plan);
    reporter.info(`list: ${plan.images} objects in ${plan.shards} shard(s) under ${input.uri()}`);
  }

  const model = await fillModelCache(run, reporter);
  if (config.precision === 'int8') await prepareInt8Graph(run, plan, model.files, model.graph!, reporter);
  const done = await pMap(Array.from({ length: plan.shards }, (_, shard) => shard), async (shard) => (await folder.extracted(shard)) !== undefined, { concurrency: 16 });
  const pending = done.flatMap((complete, shard) => (complete ? [] : [shard]));
  const itemsKey = await folder.writeWorkItems('extract', pending);
  return { plan, reused, pending, itemsKey };
}

/** The images a run needs at least: one per component asked for (-k), 0 for a share of variance. */
function componentsWanted(config: RunConfig): number {
  return config.components.kind === 'components' ? config.components.count : 0;
}

/**
 * Shard writes held back until `needed` images are listed, so that a run refused for too few images (-k above
 * their number) leaves no shard file; past that, shards are written as they fill, and memory stays flat.
 */
function heldUntil(needed: number, write: (shard: number, items: readonly ShardItem[]) => Promise<void>): typeof write {
  // By shard: a listing that runs again (a run folder found late) writes the same shards anew.
  const sizes = new Map<number, number>();
  const held = new Map<number, readonly ShardItem[]>();
  let listed = 0;
  return async (shard, items) => {
    listed += items.length - (sizes.get(shard) ?? 0);
    sizes.set(shard, items.length);
    if (listed < needed) {
      held.set(shard, items);
      return;
    }
    held.delete(shard);
    const due = [...held];
    held.clear();
    await Promise.all(due.map(([s, i]) => write(s, i)));
    await write(shard, items);
  };
}

/**
 * The model's files into the cache (a web model is downloaded once), and its ONNX graph compiled into it. A model
 * the compiler cannot translate is left to the extract tasks, which run it on TensorFlow.js under `--engine auto`.
 */
async function fillModelCache(run: OpenRun, reporter: Reporter): Promise<{ files: ModelFiles; graph?: CompiledGraph }> {
  const { config } = run;
  const preset = resolveModel(config.model);
  const cache = openStorage(run.modelCache, config.s3);
  const files = await readModelFiles(preset.source, { cache, s3: config.s3 });
  if (config.engine === 'tfjs') return { files };
  try {
    const compiled = await loadOrCompileGraph(
      tfForWeights,
      files,
      { inputSize: preset.inputSize, normalization: preset.normalization, featureLayer: preset.featureLayer },
      cache,
      (message) => reporter.warn(message),
    );
    if (!compiled.cached) reporter.info(`model: compiled ${preset.name} to an ONNX graph of ${compiled.graph.nodes} nodes in ${compiled.seconds.toFixed(2)} s`);
    return { files, graph: compiled.graph };
  } catch (error) {
    // int8 exists only as an ONNX graph: no TensorFlow.js fallback for it.
    if (config.engine === 'onnx' || config.precision === 'int8') throw error;
    reporter.info(`model: ${preset.name} is not compiled to ONNX (${describeError(error)}); extract decides the engine`);
    return { files };
  }
}

/** Prefixes of the input that are not inputs: the model cache, when it lies inside it (a run folder may not). */
function excludedPrefixes(run: OpenRun): string[] {
  return [run.modelCache].flatMap((location) => excludedPrefix(run.config.input, location) ?? []);
}

/**
 * When the model cache lies inside the input, its files are not inputs: the prefix to leave out, relative to the
 * input. It may not be the input folder itself.
 */
function excludedPrefix(input: Location, inner: Location): string | undefined {
  const withSlash = (location: Location) => formatLocation(location).split(path.sep).join('/').replace(/\/?$/, '/');
  const base = withSlash(input);
  const candidate = withSlash(inner);
  if (!candidate.startsWith(base)) return undefined;
  if (candidate === base) {
    throw new OrchardError(
      `--model-cache ${formatLocation(inner)} is the --input folder itself; use a folder outside it or below it (e.g. ${base}models/)`,
      'ERR_INVALID_PARAMETER',
      ExitCode.Usage,
    );
  }
  return candidate.slice(base.length);
}

/**
 * The settings of a planned run, for a stage process that was given only the output and the run id. Its own
 * machine settings (threads, concurrency) and S3 options replace the stored ones.
 */
export async function storedSettings(folder: RunFolder): Promise<RunSettings> {
  const settings = await folder.readConfig<RunSettings>();
  if (!settings && (await folder.isPublished())) {
    throw new OrchardError(`Run at ${folder.uri()} is already published (its _work/ is gone); a published run is never changed`, 'ERR_RUN_EXISTS', ExitCode.Usage);
  }
  if (!settings) {
    throw new OrchardError(`${folder.uri()} holds no run (no _work/config.json): run \`orchard plan\` for this run id first`, 'ERR_NO_PLAN', ExitCode.Usage);
  }
  return settings;
}
