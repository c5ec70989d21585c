import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ExtractMeta } from '../../runtime/pipeline/run-folder';

/** A local run's extract shards (kept with --keep-features): their metas and feature rows, in shard order. */
export interface Extracted {
  readonly metas: ExtractMeta[];
  readonly features: Float32Array[];
}

export function readExtracted(output: string, runId: string): Extracted {
  const extract = path.join(output, runId, '_work', 'extract');
  const metas = fs
    .readdirSync(extract)
    .filter((name) => name.endsWith('.meta.json'))
    .sort()
    .map((name) => JSON.parse(fs.readFileSync(path.join(extract, name), 'utf8')) as ExtractMeta);
  const features = metas.map((meta) => {
    const bytes = fs.readFileSync(path.join(extract, String(meta.shard).padStart(5, '0'), `${meta.attempt}.features.f32`));
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  });
  return { metas, features };
}
