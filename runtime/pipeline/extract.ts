import { pMapIterable } from 'p-map';
import sharp from 'sharp';
import { ExitCode, OrchardError } from '../errors';
import { isImageError, preprocessImage } from '../images/preprocess';
import type { LoadedEngine } from '../model/engine';
import type { FeatureModel } from '../model/feature-model';
import { batchesInFlight } from '../onnx/predict-pool';
import type { Reporter } from '../progress';
import { emptyMoments, exactCoMoment, momentsWith, type AsyncCoMomentKernel } from '../stats/moments';
import { NotFoundError, UnreadableObjectError, type S3RetryCounter, type Storage } from '../storage';
import { DEFAULTS, type RunConfig } from './config';
import { labelOf } from './list';
import { describeHolder, workThroughShards } from './lease';
import { hostDescription, newAttempt, type ExtractMeta, type ExtractedWith, type RunFolder, type ShardItem } from './run-folder';

export interface ExtractOptions {
  readonly batchSize: number;
  readonly concurrency: number;
  readonly labelFrom: 'parent' | 'none';
  readonly maxPixels: number;
  /** How to compute the co-moment (the engine's matrix product); the exact float64 JavaScript kernel when absent. */
  readonly coMoment?: AsyncCoMomentKernel;
  readonly signal?: AbortSignal;
  /** Called after every image with the counts so far in this shard. */
  readonly onProgress?: (done: number, failed: number) => void;
  /** The process's count of retried S3 requests: the shard's meta records those made while it was extracted. */
  readonly retries?: S3RetryCounter;
}

/** `pixels` is height × width × 3 bytes: the model's size, or a small image's own when the engine enlarges it. */
type Decoded = { readonly item: ShardItem; readonly pixels: Buffer; readonly height: number; readonly width: number } | { readonly item: ShardItem; readonly error: string };

/** Images of one pixel size waiting for the model, and the feature rows they will fill. */
interface Batch {
  readonly height: number;
  readonly width: number;
  readonly pixels: Uint8Array;
  readonly rows: number[];
}

/**
 * Sizes of small images batched at once (each its own partly filled batch); a further size first sends the least
 * recently filled batch as it is. Datasets have one size or a few, so this bounds memory without costing batches.
 */
const MAX_OPEN_BATCHES = 8;

/**
 * ORCHARD_ENLARGE=js makes the main thread enlarge small images in JavaScript on every engine, as the tfjs engine
 * does, instead of sending them to the onnx engine un-enlarged. Internal: the tests compare the two paths with it
 * (the same bytes reach the CNN), and it is a way back should the in-graph path misbehave somewhere.
 */
function enlargeInEngine(model: FeatureModel): boolean {
  return model.predictEnlarged !== undefined && process.env.ORCHARD_ENLARGE !== 'js';
}

/**
 * One shard: read, decode and preprocess images ahead of the model (bounded by `concurrency`, in key order), run
 * the CNN in batches, then commit the shard's features, its mergeable statistics and — last — its meta through
 * the run folder. A bad image becomes an error row; only systemic failures throw.
 */
export async function extractShard(shard: number, input: Storage, folder: RunFolder, model: FeatureModel, options: ExtractOptions): Promise<ExtractMeta> {
  const started = performance.now();
  const attempt = newAttempt();
  const retriesBefore = options.retries?.totals() ?? {};
  const items = await folder.readShardItems(shard);
  const { featureDim: dim, inputSize: size } = model.identity;
  const features = new Float32Array(items.length * dim);
  const inEngine = enlargeInEngine(model);
  // By pixel size: the model's (images enlarged here, or shrunk by sharp) and, when the engine enlarges, small
  // images' own sizes, each batched apart since a batch is one tensor. Insertion order is least recently filled first.
  const batches = new Map<string, Batch>();
  // Every image gets its feature row when it arrives (keys in order), whichever batch it goes in.
  const rows: { key: string; label: string }[] = [];
  const errors: { key: string; reason: string }[] = [];
  let predictSeconds = 0;
  let enlargeSeconds = 0;
  // The model computes `parallel` batches at once, and one more waits for it while the next is filled: `predict`
  // reads the buffer before it returns, and the oldest batch is awaited only when the next one is ready to go,
  // so the model never waits for decoding that could have happened while it ran.
  const parallel = model.parallelBatches ?? 1;
  const inFlight: Promise<void>[] = [];
  // The model's time: while any batch is in it (sent and not done), less the enlargement the engine did first,
  // which is preprocessing (its CPU is counted apart).
  let busy = 0;
  let busySince = 0;

  const flush = async (batch: Batch) => {
    if (batch.rows.length === 0) return;
    const batchRows = batch.rows.splice(0);
    if (busy++ === 0) busySince = performance.now();
    const computed =
      batch.height === size && batch.width === size
        ? model.predict(batch.pixels, batchRows.length).then((out) => ({ features: out, enlargeCpuS: 0, enlargeWallS: 0 }))
        : model.predictEnlarged!(batch.pixels, batchRows.length, batch.height, batch.width);
    const done = computed.then(({ features: out, enlargeCpuS, enlargeWallS }) => {
      predictSeconds -= enlargeWallS / parallel;
      enlargeSeconds += enlargeCpuS;
      batchRows.forEach((row, i) => features.set(out.subarray(i * dim, (i + 1) * dim), row * dim));
    });
    const settled = () => {
      if (--busy === 0) predictSeconds += (performance.now() - busySince) / 1000;
    };
    done.then(settled, settled);
    // Unhandled until awaited below or by a later flush: keep a rejection from surfacing as unhandled.
    done.catch(() => undefined);
    inFlight.push(done);
    while (inFlight.length > batchesInFlight(parallel)) await inFlight.shift();
  };

  /** The batch for images of this pixel size; a new size past MAX_OPEN_BATCHES first sends the stalest batch. */
  const batchFor = async (height: number, width: number): Promise<Batch> => {
    const key = `${height}x${width}`;
    let batch = batches.get(key);
    if (batch) batches.delete(key);
    else {
      if (batches.size >= MAX_OPEN_BATCHES) {
        const [staleKey, stale] = batches.entries().next().value!;
        batches.delete(staleKey);
        await flush(stale);
      }
      batch = { height, width, pixels: new Uint8Array(options.batchSize * height * width * 3), rows: [] };
    }
    batches.set(key, batch);
    return batch;
  };

  const decode = async (item: ShardItem): Promise<Decoded> => {
    if (item.size > DEFAULTS.maxImageBytes) {
      return { item, error: `file too large: ${item.size} bytes exceeds the ${DEFAULTS.maxImageBytes}-byte limit` };
    }
    try {
      const data = await input.get(item.key);
      const image = await preprocessImage(data, { size, maxPixels: options.maxPixels, enlarge: !inEngine });
      return image.ownSize ? { item, pixels: image.pixels, height: image.height, width: image.width } : { item, pixels: image.pixels, height: size, width: size };
    } catch (error) {
      // About this one image: a row of errors.csv, and the run goes on. Anything else (access denied, the
      // network, throttling past the retries, a full disk) is about the environment: it stops the run before the
      // shard is committed, so that a rerun with the same run id does the shard again once the cause is fixed.
      if (isImageError(error)) return { item, error: error.reason };
      if (error instanceof UnreadableObjectError) return { item, error: `unreadable: ${error.reason}` };
      if (error instanceof NotFoundError) return { item, error: 'unreadable: the object disappeared after listing' };
      throw error;
    }
  };

  for await (const result of pMapIterable(items, decode, { concurrency: options.concurrency })) {
    throwIfAborted(options.signal);
    if ('error' in result) {
      errors.push({ key: result.item.key, reason: result.error });
    } else {
      const batch = await batchFor(result.height, result.width);
      batch.pixels.set(result.pixels, batch.rows.length * result.pixels.length);
      batch.rows.push(rows.length);
      rows.push({ key: result.item.key, label: labelOf(result.item.key, options.labelFrom) });
      if (batch.rows.length === options.batchSize) await flush(batch);
    }
    options.onProgress?.(rows.length + errors.length, errors.length);
  }
  for (const batch of batches.values()) await flush(batch);
  await Promise.all(inFlight);

  const momentsStarted = performance.now();
  const coMoment = options.coMoment ?? (async (...args: Parameters<AsyncCoMomentKernel>) => exactCoMoment(...args));
  const moments = rows.length > 0 ? await momentsWith(features.subarray(0, rows.length * dim), rows.length, dim, coMoment) : emptyMoments(dim);
  const momentsSeconds = (performance.now() - momentsStarted) / 1000;
  const meta: ExtractMeta = {
    shard,
    attempt,
    dim,
    rows,
    errors,
    seconds: (performance.now() - started) / 1000,
    predictSeconds: Math.max(0, predictSeconds),
    enlargeSeconds,
    momentsSeconds,
    engine: model.engine,
    versions: { node: process.version, sharp: sharp.versions.sharp ?? '', libvips: sharp.versions.vips, [engineVersionKey(model)]: model.engine.version },
    host: hostDescription(),
    finishedAt: new Date().toISOString(),
    s3Retries: retriesSince(retriesBefore, options.retries?.totals() ?? {}),
  };
  await folder.commitExtract(meta, features, moments);
  return meta;
}

export interface ExtractSummary {
  readonly shards: number;
  /** Shards already complete, skipped. */
  readonly resumed: number;
  /** Images done in this process (processed and failed), and of those the failed. */
  readonly images: number;
  readonly failed: number;
  readonly predictSeconds: number;
  readonly momentsSeconds: number;
}

export interface ExtractDependencies {
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
  /** Called if a shard's lease is lost to another process while this one works on it. */
  readonly onLeaseLost?: (error: OrchardError) => void;
  /** Called with each shard this process committed (its session counts them, even if the stage is stopped later). */
  readonly onShard?: (meta: ExtractMeta) => void;
}

/**
 * The extract stage over some shards of a planned run (every shard for `orchard run`, a task's for `orchard
 * extract --shards`): complete shards are skipped, the others extracted one after the other with one model.
 */
export async function extractStage(
  folder: RunFolder,
  config: RunConfig,
  input: Storage,
  shards: readonly number[],
  engine: LoadedEngine,
  deps: ExtractDependencies,
): Promise<ExtractSummary> {
  const { model, coMoment } = engine;
  await guardModelIdentity(folder, config, model);
  const { reporter } = deps;
  const todo: number[] = [];
  let resumed = 0;
  for (const shard of shards) {
    const status = await folder.extractState(shard);
    if (status.state === 'complete') resumed += 1;
    else todo.push(shard);
    if (status.state === 'damaged') reporter.warn(`extract: shard ${shard} is incomplete (${status.why}): extracting it again`);
  }
  if (resumed > 0) reporter.info(`extract: ${resumed} of ${shards.length} shard(s) were already complete`);
  const sizes = new Map(await Promise.all(todo.map(async (shard) => [shard, (await folder.readShardItems(shard)).length] as const)));
  const task = reporter.task('extract', [...sizes.values()].reduce((a, b) => a + b, 0));
  let images = 0;
  let failed = 0;
  let predictSeconds = 0;
  let momentsSeconds = 0;
  try {
    const done = await workThroughShards(folder.storage, todo, {
      isDone: async (shard) => (await folder.extracted(shard)) !== undefined,
      leaseKey: (shard) => folder.leaseKey({ stage: 'extract', shard }),
      purpose: (shard) => `extract shard ${shard}`,
      onLost: deps.onLeaseLost,
      onHeld: (shard, holder) => reporter.info(`extract: shard ${shard} is being extracted by ${describeHolder(holder)}; waiting for it`),
      signal: deps.signal,
      work: async (shard) => {
        const meta = await extractShard(shard, input, folder, model, {
          batchSize: config.batchSize,
          concurrency: config.concurrency,
          labelFrom: config.labelFrom,
          maxPixels: config.maxPixels,
          coMoment,
          signal: deps.signal,
          onProgress: (doneInShard, shardFailed) => task.update(images + doneInShard, failed + shardFailed),
        });
        images += meta.rows.length + meta.errors.length;
        failed += meta.errors.length;
        predictSeconds += meta.predictSeconds;
        momentsSeconds += meta.momentsSeconds;
        deps.onShard?.(meta);
      },
    });
    throwIfAborted(deps.signal);
    return { shards: done.length, resumed: shards.length - done.length, images, failed, predictSeconds, momentsSeconds };
  } finally {
    task.stop();
  }
}

/**
 * Shards of one run must come from one network run one way: a resumed run whose model files changed (same
 * --model, other weights), or that would run on another engine or another compiled graph, is refused rather
 * than merging features computed two ways.
 */
async function guardModelIdentity(folder: RunFolder, config: RunConfig, model: FeatureModel): Promise<void> {
  const now: ExtractedWith = { ...model.identity, engine: model.engine.name, graphSha256: model.engine.graph?.sha256 };
  // Concurrent first shards (workers of one run) race to record it: the first creation wins, and every worker,
  // the first one included, compares itself with what was recorded.
  const previous = (await folder.readExtractedWith()) ?? (await folder.claimExtractedWith(now));
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

function retriesSince(before: Record<string, number>, now: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(now).flatMap(([command, total]) => (total > (before[command] ?? 0) ? [[command, total - (before[command] ?? 0)]] : [])));
}

function engineVersionKey(model: FeatureModel): string {
  return model.engine.name === 'onnx' ? 'onnxruntime-node' : 'tfjs-core';
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new OrchardError('Interrupted', 'ERR_INTERRUPTED', ExitCode.Interrupted);
}
