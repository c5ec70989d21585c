/**
 * The label check at publish time: picks the bounded stratified sample (quality/sample.ts) from the shards'
 * labels, reads only the sampled rows' components (the kept projections, or the shard's Parquet part when the
 * run was too large to keep them) and runs quality/labels.ts on them. Memory: the sample, one shard at a time.
 */
import { parquetReadObjects } from 'hyparquet';
import pMap from 'p-map';
import { partKey } from '../contracts/results';
import { assessLabels, type LabelQuality } from '../quality/labels';
import { sampleSize, stratifiedSample } from '../quality/sample';
import type { ExtractMeta, ProjectMeta, RunFolder } from './run-folder';

/** Shards read at once. */
const READ_CONCURRENCY = 16;

export async function assessRunLabels(folder: RunFolder, extracted: readonly ExtractMeta[], projected: readonly ProjectMeta[], k: number): Promise<LabelQuality> {
  const labels = extracted.flatMap((meta) => meta.rows.map((row) => row.label));
  if (labels.every((label) => label === '')) return { status: 'absent', reason: 'the run has no labels (--label-from none)' };
  const chosen = stratifiedSample(labels, sampleSize(labels.length, k));
  // Which rows of which shard: only the shards holding sampled rows are read, several at once.
  const wanted: { index: number; meta: ExtractMeta; rows: number[] }[] = [];
  let next = 0;
  let first = 0;
  for (const [index, meta] of extracted.entries()) {
    const end = first + meta.rows.length;
    const rows: number[] = [];
    while (next < chosen.length && chosen[next]! < end) rows.push(chosen[next++]! - first);
    if (rows.length > 0) wanted.push({ index, meta, rows });
    first = end;
  }
  const picked = await pMap(
    wanted,
    async ({ index, meta, rows }) => {
      const shard = await shardValues(folder, projected[index]!, k);
      return rows.map((row) => ({ key: meta.rows[row]!.key, label: meta.rows[row]!.label, values: shard.slice(row * k, (row + 1) * k) }));
    },
    { concurrency: READ_CONCURRENCY },
  );
  const rows = picked.flat();
  const values = new Float32Array(rows.length * k);
  rows.forEach((row, i) => values.set(row.values, i * k));
  return assessLabels({ keys: rows.map((row) => row.key), labels: rows.map((row) => row.label), values, dim: k }, labels.length);
}

/** A shard's projected rows (n × k float32): kept by the project stage, or read back from its Parquet part. */
async function shardValues(folder: RunFolder, meta: ProjectMeta, k: number): Promise<Float32Array> {
  if (meta.kept) return folder.readProjections(meta);
  const data = await folder.storage.get(partKey(meta.shard));
  const file = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
  const columns = Array.from({ length: k }, (_, i) => `pc_${i + 1}`);
  const rows = (await parquetReadObjects({ file, columns })) as Record<string, unknown>[];
  const values = new Float32Array(rows.length * k);
  rows.forEach((row, i) => columns.forEach((name, d) => (values[i * k + d] = Number(row[name]))));
  return values;
}
