import * as path from 'node:path';
import sharp from 'sharp';
import { ExitCode, OrchardError, describeError } from '../errors';
import { readModelFiles } from '../model/artifacts';
import type { TfRuntime } from '../model/backend';
import { loadEngine, type LoadedEngine } from '../model/engine';
import { describeEngine, type EngineInfo, type ModelIdentity } from '../model/feature-model';
import { resolveModel } from '../model/resolve';
import { pcaModelToJson } from '../pca/model-json';
import type { Reporter } from '../progress';
import { buildReport } from '../report/build';
import { childLocation, exists, formatLocation, getJsonIfExists, openStorage, putJson, type Location, type Storage } from '../storage';
import { RESUME_INVARIANTS, defaultModelCache, type RunConfig } from './config';
import { extractShard } from './extract';
import { fitStage } from './fit';
import { CONFIG, INTERMEDIATE, MODEL_IDENTITY, OUTPUTS, WORK, shardFeatures, shardMeta, shardMoments } from './layout';
import { planShards } from './list';
import { publishTables } from './publish';

export { defaultModelCache } from './config';

export type RunStatus = 'succeeded' | 'too_many_errors';

export interface RunResult {
  readonly status: RunStatus;
  readonly exitCode: ExitCode;
  readonly runUri: string;
  /** URIs of the outputs written; `report` is absent when the report could not be built. */
  readonly outputs: Record<Exclude<keyof typeof OUTPUTS, 'report'>, string> & { readonly report?: string };
  readonly manifest: Manifest;
}

export interface Manifest {
  readonly orchard: string;
  readonly runId: string;
  readonly status: RunStatus;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly input: string;
  readonly output: string;
  readonly config: Record<string, unknown>;
  readonly counts: { listed: number; processed: number; failed: number; errorRate: number; shards: number; shardsResumed: number };
  readonly pca: { components: number; explainedVariance: number; spec: RunConfig['components'] };
  readonly timings: Record<string, number>;
  readonly imagesPerSecond: number;
  /** The inference engine that ran: name, version, threads, batch size (and the compiled graph for onnx). */
  readonly engine: EngineInfo;
  readonly model: ModelIdentity;
  readonly versions: Record<string, string>;
  readonly outputs: Record<string, string>;
}

export interface RunDependencies {
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
  /** An already-initialised TensorFlow.js (tests and the demo reuse one across runs). */
  readonly tf?: TfRuntime;
}

/**
 * Runs the whole chain — list → extract (per shard) → fit → project/publish — for one run id. Shards that
 * are complete are not redone, so rerunning a killed run with the same id resumes it. A completed run
 * (`_SUCCESS` present) is never overwritten.
 */
export async function runPipeline(config: RunConfig, deps: RunDependencies): Promise<RunResult> {
  const { reporter } = deps;
  const startedAt = new Date();
  const timer = stageTimer();
  const input = openStorage(config.input, config.s3);
  const runLocation = childLocation(config.output, config.runId);
  const run = openStorage(runLocation, config.s3);
  await input.check();
  await run.check();
  await guardRunFolder(run, config);

  reporter.info(`run ${config.runId}: ${formatLocation(config.input)} → ${run.uri()}`);
  const modelCache = config.modelCache ?? defaultModelCache(config.output);
  const exclude = [config.output, modelCache].flatMap((location) => excludedPrefix(config.input, location) ?? []);
  const plan = await timer.time('list', () => planShards(input, run, { shardSize: config.shardSize, exclude }, reporter));
  throwIfAborted(deps.signal);
  if (plan.images === 0) {
    throw new OrchardError(`No files found under ${input.uri()}`, 'ERR_NO_INPUT', ExitCode.Fatal);
  }

  const { model, coMoment, project } = await timer.time('model_load', () => loadModel(config, modelCache, deps));
  let shardsResumed = 0;
  let predictSeconds = 0;
  let momentsSeconds = 0;
  try {
    await guardModelIdentity(run, config, model);
    reporter.info(`model ${model.identity.name}: ${model.identity.featureDim} features from ${model.identity.loadedFrom}; ${describeEngine(model.engine)}`);

    const task = reporter.task('extract', plan.images);
    let done = 0;
    let failed = 0;
    await timer.time('extract', async () => {
      for (let shard = 0; shard < plan.shards; shard++) {
        const previous = await getJsonIfExists<{ rows: unknown[]; errors: unknown[] }>(run, shardMeta(shard));
        // Complete means meta plus its data: lifecycle expiry is per object and may have taken one of them.
        if (previous && (await exists(run, shardFeatures(shard))) && (await exists(run, shardMoments(shard)))) {
          shardsResumed += 1;
          done += previous.rows.length + previous.errors.length;
          failed += previous.errors.length;
          task.update(done, failed);
          continue;
        }
        const meta = await extractShard(shard, input, run, model, {
          batchSize: config.batchSize,
          concurrency: config.concurrency,
          labelFrom: config.labelFrom,
          maxPixels: config.maxPixels,
          coMoment,
          signal: deps.signal,
          onProgress: (shardDone, shardFailed) => task.update(done + shardDone, failed + shardFailed),
        });
        done += meta.rows.length + meta.errors.length;
        failed += meta.errors.length;
        predictSeconds += meta.predictSeconds;
        momentsSeconds += meta.momentsSeconds;
      }
    });
    task.stop();
    if (shardsResumed > 0) reporter.info(`extract: ${shardsResumed} of ${plan.shards} shard(s) were already complete`);
  } finally {
    model.dispose();
  }

  throwIfAborted(deps.signal);
  const pca = await timer.time('fit', () => fitStage(run, plan.shards, model.identity.featureDim, config.components));
  const cumulative = pca.explainedVarianceRatio.reduce((sum, value) => sum + value, 0);
  reporter.info(`fit: k=${pca.nComponents} explains ${(cumulative * 100).toFixed(2)}% of the variance`);
  await putJson(run, OUTPUTS.model, pcaModelToJson(pca, { model: model.identity, run_id: config.runId }));

  throwIfAborted(deps.signal);
  const counts = await timer.time('publish', () =>
    publishTables(run, plan.shards, pca, { orchard_run_id: config.runId, orchard_model: model.identity.name }, project),
  );
  const errorRate = counts.errors / plan.images;
  const status: RunStatus = errorRate <= config.maxErrorRate ? 'succeeded' : 'too_many_errors';
  let outputs = Object.fromEntries(Object.entries(OUTPUTS).map(([name, file]) => [name, run.uri(file)])) as RunResult['outputs'];
  const timings = timer.result();
  let manifest: Manifest = {
    orchard: ORCHARD_VERSION,
    runId: config.runId,
    status,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    input: formatLocation(config.input),
    output: run.uri(),
    config: describeConfig(config),
    counts: { listed: plan.images, processed: counts.rows, failed: counts.errors, errorRate, shards: plan.shards, shardsResumed },
    pca: { components: pca.nComponents, explainedVariance: cumulative, spec: config.components },
    timings: { ...timings, predict: round(predictSeconds), moments: round(momentsSeconds) },
    imagesPerSecond: round(plan.images / Math.max(timings.total, 1e-9)),
    engine: model.engine,
    model: model.identity,
    versions: { node: process.version, sharp: sharp.versions.sharp ?? '', libvips: sharp.versions.vips, [engineVersionKey(model.engine)]: model.engine.version },
    outputs,
  };
  // The report shows the manifest, so it is built from the manifest object before manifest.json is written;
  // a report that cannot be built costs a warning, never the run (and leaves the outputs list).
  try {
    await buildReport(run, { input, manifest, reporter, maxPixels: config.maxPixels });
  } catch (error) {
    reporter.warn(`report: could not build ${outputs.report}: ${describeError(error)}`);
    const { report: _unbuilt, ...rest } = outputs;
    outputs = rest;
    manifest = { ...manifest, outputs };
  }
  await putJson(run, OUTPUTS.manifest, manifest);
  if (status === 'succeeded') {
    // _SUCCESS last: readers that wait for it see every other output complete.
    await run.put(OUTPUTS.success, '');
    if (!config.keepFeatures) await run.deletePrefix(WORK);
  } else {
    reporter.warn(
      `${counts.errors} of ${plan.images} images failed (${(errorRate * 100).toFixed(2)}% > --max-error-rate ${config.maxErrorRate * 100}%); see ${outputs.errors}`,
    );
  }
  return { status, exitCode: status === 'succeeded' ? ExitCode.Ok : ExitCode.TooManyErrors, runUri: run.uri(), outputs, manifest };
}

async function loadModel(config: RunConfig, modelCache: Location, deps: RunDependencies): Promise<LoadedEngine> {
  const preset = resolveModel(config.model);
  const cache = openStorage(modelCache, config.s3);
  const files = await readModelFiles(preset.source, { cache, s3: config.s3 });
  return loadEngine(preset, files, {
    engine: config.engine,
    backend: config.backend,
    threads: config.threads,
    batchSize: config.batchSize,
    graphCache: cache,
    warn: (message) => deps.reporter.warn(message),
    tf: deps.tf,
  });
}

function engineVersionKey(engine: EngineInfo): string {
  return engine.name === 'onnx' ? 'onnxruntime-node' : 'tfjs-core';
}


async function guardRunFolder(run: Storage, config: RunConfig): Promise<void> {
  if (await exists(run, OUTPUTS.success)) {
    throw new OrchardError(
      `Run ${config.runId} already completed at ${run.uri()}; it is never overwritten. Choose another --run-id`,
      'ERR_RUN_EXISTS',
      ExitCode.Usage,
    );
  }
  const described = describeConfig(config);
  const previous = await getJsonIfExists<Record<string, unknown>>(run, CONFIG);
  if (!previous) {
    if (await exists(run, OUTPUTS.manifest)) {
      throw new OrchardError(`${run.uri()} holds outputs of another run; choose another --run-id`, 'ERR_RUN_EXISTS', ExitCode.Usage);
    }
    await putJson(run, CONFIG, described, INTERMEDIATE);
    return;
  }
  for (const field of RESUME_INVARIANTS) {
    if (JSON.stringify(previous[field]) !== JSON.stringify(described[field])) {
      throw new OrchardError(
        `Cannot resume run ${config.runId}: ${field} was ${JSON.stringify(previous[field])} and is now ${JSON.stringify(described[field])}. ` +
          'Use the same settings, or another --run-id',
        'ERR_RESUME_MISMATCH',
        ExitCode.Usage,
      );
    }
  }
}

/** The config as the manifest shows it: URIs instead of parsed locations, nothing secret (there is nothing). */
function describeConfig(config: RunConfig): Record<string, unknown> {
  return {
    input: formatLocation(config.input),
    output: formatLocation(config.output),
    runId: config.runId,
    components: config.components,
    model: config.model,
    engine: config.engine,
    backend: config.backend,
    threads: config.threads,
    batchSize: config.batchSize,
    concurrency: config.concurrency,
    shardSize: config.shardSize,
    maxErrorRate: config.maxErrorRate,
    labelFrom: config.labelFrom,
    keepFeatures: config.keepFeatures,
    maxPixels: config.maxPixels,
    endpoint: config.s3.endpoint,
  };
}

/** What a run's shards were computed with: the network, and the engine that ran it (with its graph). */
interface ExtractedWith extends ModelIdentity {
  readonly engine: EngineInfo['name'];
  readonly graphSha256?: string;
}

/**
 * Shards of one run must come from one network run one way: a resumed run whose model files changed (same
 * --model, other weights), or that would run on another engine or another compiled graph, is refused rather
 * than merging features computed two ways.
 */
async function guardModelIdentity(run: Storage, config: RunConfig, model: LoadedEngine['model']): Promise<void> {
  const now: ExtractedWith = { ...model.identity, engine: model.engine.name, graphSha256: model.engine.graph?.sha256 };
  const previous = await getJsonIfExists<ExtractedWith>(run, MODEL_IDENTITY);
  if (!previous) {
    await putJson(run, MODEL_IDENTITY, now, INTERMEDIATE);
    return;
  }
  const refuse = (what: string) =>
    new OrchardError(`Cannot resume run ${config.runId}: its shards were extracted ${what}. Use another --run-id`, 'ERR_RESUME_MISMATCH', ExitCode.Usage);
  if (previous.weightsSha256 !== now.weightsSha256 || previous.featureDim !== now.featureDim) {
    throw refuse(`with other model weights (sha256 ${previous.weightsSha256.slice(0, 12)}…, now ${now.weightsSha256.slice(0, 12)}…)`);
  }
  if ((previous.engine ?? 'tfjs') !== now.engine) {
    throw refuse(`on the ${previous.engine ?? 'tfjs'} engine, and this run would use ${now.engine} (give --engine ${previous.engine ?? 'tfjs'})`);
  }
  if (previous.graphSha256 !== now.graphSha256) {
    throw refuse(`with another compiled ONNX graph (sha256 ${previous.graphSha256?.slice(0, 12)}…, now ${now.graphSha256?.slice(0, 12)}…)`);
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new OrchardError('Interrupted', 'ERR_INTERRUPTED', ExitCode.Interrupted);
}

/**
 * When a location (the output, the model cache) lies inside the input, its files are not inputs: the prefix to
 * leave out, relative to the input. The output may not be the input folder itself (earlier runs would be read).
 */
function excludedPrefix(input: Location, inner: Location): string | undefined {
  const withSlash = (location: Location) => formatLocation(location).split(path.sep).join('/').replace(/\/?$/, '/');
  const base = withSlash(input);
  const candidate = withSlash(inner);
  if (!candidate.startsWith(base)) return undefined;
  if (candidate === base) {
    throw new OrchardError(
      `--output ${formatLocation(inner)} is the --input folder itself; use a folder outside it or below it (e.g. ${base}results/)`,
      'ERR_INVALID_PARAMETER',
      ExitCode.Usage,
    );
  }
  return candidate.slice(base.length);
}

function stageTimer() {
  const started = performance.now();
  const timings: Record<string, number> = {};
  return {
    async time<T>(stage: string, work: () => Promise<T>): Promise<T> {
      const t0 = performance.now();
      try {
        return await work();
      } finally {
        timings[stage] = round((performance.now() - t0) / 1000);
      }
    },
    result: () => ({ ...timings, total: round((performance.now() - started) / 1000) }),
  };
}

const round = (value: number) => Math.round(value * 1000) / 1000;

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const ORCHARD_VERSION: string = (require('../../package.json') as { version: string }).version;
