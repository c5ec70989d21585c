import * as path from 'node:path';
import { ExitCode, OrchardError } from '../errors';
import type { Reporter } from '../progress';
import { getJsonIfExists, putJson, type Storage } from '../storage';
import { INTERMEDIATE, PLAN, WORK, shardKeys } from './layout';

export interface ShardItem {
  readonly key: string;
  readonly size: number;
}

export interface Plan {
  readonly shards: number;
  readonly images: number;
  readonly shardSize: number;
}

export interface ListOptions {
  readonly shardSize: number;
  /** Prefixes of the input to leave out (the output and the model cache, when they lie inside the input). */
  readonly exclude?: readonly string[];
}

/**
 * The list stage: streams the input listing into shard files of `shardSize` keys, so that memory stays one
 * shard however many objects there are. Hidden files and folders (`.DS_Store`, `.ipynb_checkpoints/`) are not inputs. The plan is
 * written last; an existing plan is reused, which keeps the shard boundaries of a resumed run identical.
 */
export async function planShards(input: Storage, run: Storage, options: ListOptions, reporter: Reporter): Promise<Plan> {
  const existing = await getJsonIfExists<Plan>(run, PLAN);
  if (existing) {
    reporter.info(`list: reusing the plan of this run (${existing.images} images in ${existing.shards} shards)`);
    return existing;
  }
  // Shards without a plan: the plan expired (lifecycle) or was deleted. Listing again could cut different shards
  // than the ones already extracted, so the run cannot be resumed safely.
  for await (const leftover of run.list(`${WORK}extract/`)) {
    throw new OrchardError(
      `${run.uri()} holds extracted shards (${leftover.key}) but no ${PLAN}: its intermediate files expired or were ` +
        'deleted. Start again with another --run-id',
      'ERR_RESUME_MISMATCH',
      ExitCode.Usage,
    );
  }
  let shard = 0;
  let images = 0;
  let items: ShardItem[] = [];
  const flush = async () => {
    await putJson(run, shardKeys(shard), { shard, items }, INTERMEDIATE);
    shard += 1;
    items = [];
  };
  for await (const object of input.list()) {
    if (options.exclude?.some((prefix) => object.key.startsWith(prefix))) continue;
    if (object.key.split('/').some((segment) => segment.startsWith('.'))) continue;
    items.push({ key: object.key, size: object.size });
    images += 1;
    if (items.length === options.shardSize) await flush();
  }
  if (items.length > 0) await flush();
  const plan: Plan = { shards: shard, images, shardSize: options.shardSize };
  await putJson(run, PLAN, plan, INTERMEDIATE);
  reporter.info(`list: ${images} objects in ${shard} shard(s) under ${input.uri()}`);
  return plan;
}

/** The label of a key: the name of the folder that holds it (Fruits-360: `Test/Apple Braeburn/3_100.jpg`). */
export function labelOf(key: string, from: 'parent' | 'none'): string {
  if (from === 'none') return '';
  const parent = path.posix.dirname(key);
  return parent === '.' ? '' : path.posix.basename(parent);
}
