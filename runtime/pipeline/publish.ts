import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { once } from 'node:events';
import { stringify } from 'csv-stringify';
import { CsvResultWriter, ParquetResultWriter } from '../output/table-writers';
import type { Projector } from '../pca/project';
import type { PcaModel } from '../pca/fit';
import { getJson, type Storage } from '../storage';
import { readFeatures, type ShardMeta } from './extract';
import { OUTPUTS, shardMeta } from './layout';

export interface PublishCounts {
  readonly rows: number;
  readonly errors: number;
}

/**
 * The project and publish stages: for each shard in order, project its features onto the k components and
 * append the rows to pca.csv and pca.parquet; gather every shard's errors into errors.csv. Files are built in
 * a temp folder one shard at a time, then uploaded (in parts when large), so memory stays one shard.
 */
export async function publishTables(run: Storage, shards: number, model: PcaModel, metadata: Record<string, string>, project: Projector): Promise<PublishCounts> {
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'orchard-publish-'));
  try {
    const k = model.nComponents;
    const csv = new CsvResultWriter(path.join(tmp, OUTPUTS.csv), k);
    const parquet = new ParquetResultWriter(path.join(tmp, OUTPUTS.parquet), k, metadata);
    const errorsFile = fs.createWriteStream(path.join(tmp, OUTPUTS.errors));
    const errors = stringify({ header: true, columns: ['key', 'reason'] });
    errors.pipe(errorsFile);
    let rows = 0;
    let failed = 0;
    for (let shard = 0; shard < shards; shard++) {
      const meta = await getJson<ShardMeta>(run, shardMeta(shard));
      for (const error of meta.errors) {
        if (!errors.write([error.key, error.reason])) await once(errors, 'drain');
      }
      failed += meta.errors.length;
      if (meta.rows.length === 0) continue;
      const features = await readFeatures(run, shard, meta.rows.length, meta.dim);
      const block = {
        keys: meta.rows.map((row) => row.key),
        labels: meta.rows.map((row) => row.label),
        values: await project(features, meta.rows.length, model),
      };
      await csv.write(block);
      await parquet.write(block);
      rows += meta.rows.length;
    }
    errors.end();
    await Promise.all([csv.close(), parquet.close(), once(errorsFile, 'finish')]);
    for (const name of [OUTPUTS.csv, OUTPUTS.parquet, OUTPUTS.errors]) await run.putFile(name, path.join(tmp, name));
    return { rows, errors: failed };
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
}
