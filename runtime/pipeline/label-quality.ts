/**
 * The label check at publish time: picks the bounded stratified sample (quality/sample.ts) from the shards'
 * labels, reads only the sampled rows' components (the kept projections, or the shard's Parquet part when the
 * run was too large to keep them) and runs quality/labels.ts on them. Memory: the sample, one shard at a time.
 */
import { parquetReadObjects } from 'hyparquet';
import { partKey } from '../contracts/results';
import { assessLabels, type LabelQuality } from '../quality/labels';
import { sampleSize, stratifiedSample } from '../quality/sample';
import type { ExtractMeta, ProjectMeta, RunFolder } from './run-folder';

export async function assessRunLabels(folder: RunFolder, extracted: readonly ExtractMeta[], projected: readonly ProjectMeta[], k: number): Promise<LabelQuality> {
  const labels = extracted.flatMap((meta) => meta.rows.map((row) => row.label));
  if (labels.every((label) => label === '')) return { status: 'absent', reason: 'the run has no labels (--label-from none)' };
  const chosen = stratifiedSample(labels, sampleSize(labels.length, k));
  const values = new Float32Array(chosen.length * k);
  const keys: string[] = [];
  const sampledLabels: string[] = [];
  let next = 0;
  let first = 0;
  for (const [index, meta] of extracted.entries()) {
    const end = first + meta.rows.length;
    const rows: number[] = [];
    while (next < chosen.length && chosen[next]! < end) rows.push(chosen[next++]! - first);
    if (rows.length > 0) {
      const shard = await shardValues(folder, projected[index]!, k);
      for (const row of rows) {
        values.set(shard.subarray(row * k, (row + 1) * k), keys.length * k);
        keys.push(meta.rows[row]!.key);
        sampledLabels.push(meta.rows[row]!.label);
      }
    }
    first = end;
  }
  return assessLabels({ keys, labels: sampledLabels, values, dim: k }, labels.length);
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
