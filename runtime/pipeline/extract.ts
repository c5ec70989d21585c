import { pMapIterable } from 'p-map';
import { ExitCode, OrchardError } from '../errors';
import { isImageError, preprocessImage } from '../images/preprocess';
import type { FeatureModel } from '../model/feature-model';
import { emptyMoments, encodeMoments, exactCoMoment, momentsWith, type AsyncCoMomentKernel } from '../stats/moments';
import { NotFoundError, getJson, putJson, type Storage } from '../storage';
import { DEFAULTS } from './config';
import { INTERMEDIATE, shardFeatures, shardKeys, shardMeta, shardMoments } from './layout';
import { labelOf, type ShardItem } from './list';

/** What a finished shard records; its presence marks the shard as complete. */
export interface ShardMeta {
  readonly shard: number;
  readonly dim: number;
  /** Successful images, in feature-row order. */
  readonly rows: { readonly key: string; readonly label: string }[];
  readonly errors: { readonly key: string; readonly reason: string }[];
  readonly seconds: number;
  /** Seconds the model computed (reading, decoding and writing overlap with it). */
  readonly predictSeconds: number;
  /** Seconds spent on the shard's statistics (mean and co-moment) for PCA. */
  readonly momentsSeconds: number;
}

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
}

type Decoded = { readonly item: ShardItem; readonly pixels: Buffer } | { readonly item: ShardItem; readonly error: string };

/**
 * The extract stage for one shard: read, decode and preprocess images ahead of the model (bounded by
 * `concurrency`, in key order), run the CNN in batches, then write the shard's features, its mergeable
 * statistics and — last — its meta file. A bad image becomes an error row; only systemic failures throw.
 */
export async function extractShard(shard: number, input: Storage, run: Storage, model: FeatureModel, options: ExtractOptions): Promise<ShardMeta> {
  const started = performance.now();
  const { items } = await getJson<{ items: ShardItem[] }>(run, shardKeys(shard));
  const { featureDim: dim, inputSize: size } = model.identity;
  const imageLength = size * size * 3;
  const features = new Float32Array(items.length * dim);
  const batch = new Uint8Array(options.batchSize * imageLength);
  const pending: ShardItem[] = [];
  const rows: ShardMeta['rows'] = [];
  const errors: ShardMeta['errors'] = [];
  let predictSeconds = 0;
  // One batch is computed while the next is filled: `predict` reads the buffer before it returns, and the
  // batch before is awaited only when the next one is ready to go, so the model never waits for decoding
  // that could have happened during its previous batch.
  let inFlight: Promise<void> = Promise.resolve();
  let modelFreeAt = 0;

  const flush = async () => {
    if (pending.length === 0) return;
    const items = pending.splice(0);
    const rowStart = rows.length;
    for (const item of items) rows.push({ key: item.key, label: labelOf(item.key, options.labelFrom) });
    const previous = inFlight;
    const t0 = performance.now();
    const computed = model.predict(batch, items.length);
    inFlight = computed.then((out) => {
      // The model's own time for this batch: from when it could start (sent, and the batch before done) to done.
      const done = performance.now();
      predictSeconds += (done - Math.max(t0, modelFreeAt)) / 1000;
      modelFreeAt = done;
      features.set(out, rowStart * dim);
    });
    // Unhandled until awaited below or by the next flush: keep a rejection from surfacing as unhandled.
    inFlight.catch(() => undefined);
    await previous;
  };

  const decode = async (item: ShardItem): Promise<Decoded> => {
    if (item.size > DEFAULTS.maxImageBytes) {
      return { item, error: `file too large: ${item.size} bytes exceeds the ${DEFAULTS.maxImageBytes}-byte limit` };
    }
    try {
      const data = await input.get(item.key);
      const image = await preprocessImage(data, { size, maxPixels: options.maxPixels });
      return { item, pixels: image.pixels };
    } catch (error) {
      if (isImageError(error)) return { item, error: error.reason };
      if (error instanceof NotFoundError) return { item, error: 'unreadable: the object disappeared after listing' };
      if (error instanceof OrchardError && error.code === 'ERR_ACCESS_DENIED') return { item, error: 'unreadable: access denied' };
      throw error;
    }
  };

  for await (const result of pMapIterable(items, decode, { concurrency: options.concurrency })) {
    if (options.signal?.aborted) {
      throw new OrchardError('Interrupted', 'ERR_INTERRUPTED', ExitCode.Interrupted);
    }
    if ('error' in result) {
      errors.push({ key: result.item.key, reason: result.error });
    } else {
      batch.set(result.pixels, pending.length * imageLength);
      pending.push(result.item);
      if (pending.length === options.batchSize) await flush();
    }
    options.onProgress?.(rows.length + pending.length + errors.length, errors.length);
  }
  await flush();
  await inFlight;

  const momentsStarted = performance.now();
  const moments =
    rows.length > 0
      ? await momentsWith(features.subarray(0, rows.length * dim), rows.length, dim, options.coMoment ?? (async (...args) => exactCoMoment(...args)))
      : emptyMoments(dim);
  const momentsSeconds = (performance.now() - momentsStarted) / 1000;
  await run.put(shardFeatures(shard), Buffer.from(features.buffer, 0, rows.length * dim * 4), INTERMEDIATE);
  await run.put(shardMoments(shard), encodeMoments(moments), INTERMEDIATE);
  const meta: ShardMeta = { shard, dim, rows, errors, seconds: (performance.now() - started) / 1000, predictSeconds, momentsSeconds };
  await putJson(run, shardMeta(shard), meta, INTERMEDIATE);
  return meta;
}

/** Reads a feature shard back as float32 rows (copying only when the buffer is not 4-byte aligned). */
export async function readFeatures(run: Storage, shard: number, rows: number, dim: number): Promise<Float32Array> {
  const data = await run.get(shardFeatures(shard));
  if (data.length !== rows * dim * 4) {
    throw new OrchardError(
      `${run.uri(shardFeatures(shard))} holds ${data.length} bytes, expected ${rows} × ${dim} float32 values`,
      'ERR_CORRUPT_SHARD',
    );
  }
  return data.byteOffset % 4 === 0
    ? new Float32Array(data.buffer, data.byteOffset, rows * dim)
    : new Float32Array(new Uint8Array(data).buffer);
}

