/**
 * Object names inside `<output>/<run-id>/`. Results sit at the top; everything a stage hands to the next sits
 * under `_work/`, which is deleted after a successful run unless --keep-features (and expired by the bucket's
 * lifecycle rule otherwise).
 *
 * Feature shards (`_work/extract/<shard>.features.f32`): n × dim little-endian float32, row-major, rows in the
 * order of the `rows` array in the shard's meta JSON. Moments (`.moments.bin`): see runtime/stats/moments.ts.
 */
export const OUTPUTS = {
  csv: 'pca.csv',
  parquet: 'pca.parquet',
  model: 'pca-model.json',
  errors: 'errors.csv',
  /** Charts, classes, thumbnails and errors in one self-contained page (runtime/report/). */
  report: 'report.html',
  manifest: 'manifest.json',
  success: '_SUCCESS',
} as const;

export const WORK = '_work/';
/**
 * Every `_work/` object carries this tag: the bucket's lifecycle rule expires intermediate files by it (an S3
 * lifecycle filter cannot match a wildcard such as `results/<run-id>/_work/`).
 */
export const INTERMEDIATE = { tags: { 'orchard:intermediate': 'true' } } as const;
export const CONFIG = `${WORK}config.json`;
/** Identity (weights SHA-256) of the model that extracted the shards: a resume must use the same. */
export const MODEL_IDENTITY = `${WORK}model.json`;
/** Written once listing is complete: its presence means every shard's key list exists. */
export const PLAN = `${WORK}plan.json`;

const pad = (shard: number) => String(shard).padStart(5, '0');
export const shardKeys = (shard: number) => `${WORK}shards/${pad(shard)}.json`;
export const shardFeatures = (shard: number) => `${WORK}extract/${pad(shard)}.features.f32`;
export const shardMoments = (shard: number) => `${WORK}extract/${pad(shard)}.moments.bin`;
/** Written last by extract: its presence means the shard is complete. */
export const shardMeta = (shard: number) => `${WORK}extract/${pad(shard)}.meta.json`;
