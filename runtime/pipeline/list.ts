import * as path from 'node:path';
import pMap, { pMapIterable } from 'p-map';
import { OUTPUTS } from '../contracts/results';
import { getJson, type ObjectInfo, type Storage } from '../storage';
import { isOwnWorkKey, type ShardItem } from './run-folder';

export interface ListOptions {
  readonly shardSize: number;
  /** Prefixes of the input to leave out (the output and the model cache, when they lie inside the input). */
  readonly exclude?: readonly string[];
  /** Folders listed at once (S3), and shard files written at once. @default 8 */
  readonly concurrency?: number;
  /**
   * List folder by folder, several at once (stores that can). Only where delimiter listings are exact: AWS S3
   * (s3rver, for one, finds no folder whose objects are all two levels down, so a run would miss them).
   * @default false
   */
  readonly parallel?: boolean;
}

export interface Listed {
  readonly shards: number;
  readonly images: number;
  /** Orchard run folders found inside the input (`results/r1/`), whose files were not listed. */
  readonly skipped: readonly string[];
}

const CONCURRENCY = 8;

/**
 * Every object under the input, in key order (the order S3 lists in: UTF-8 bytes). In parallel on S3, the first
 * level is listed with a delimiter and each folder (`Apple Braeburn/`, …) is then listed by its own requests,
 * several at once: a bucket of a million keys in 131 class folders is 131 listings in parallel instead of 1,000
 * pages one after the other. On AWS S3 the order, and so the shards, are those of a plain listing.
 */
export async function* listInput(input: Storage, concurrency = CONCURRENCY, parallel = true): AsyncIterable<ObjectInfo> {
  if (!input.listLevel || !parallel) {
    yield* input.list();
    return;
  }
  const top = await input.listLevel('');
  // Sorted here rather than trusted: some S3-compatible servers sort common prefixes as UTF-16 strings.
  const entries = mergeByKey([...top.objects].sort((a, b) => utf8Order(a.key, b.key)), [...top.folders].sort(utf8Order));
  const listFolder = async (entry: Entry): Promise<readonly ObjectInfo[]> => {
    if (entry.folder === undefined) return [entry.object];
    const inside: ObjectInfo[] = [];
    for await (const object of input.list(entry.folder)) inside.push(object);
    return inside;
  };
  for await (const objects of pMapIterable(entries, listFolder, { concurrency })) yield* objects;
}

/**
 * The list stage: the input's images cut into shards of `shardSize` keys, each shard's key list written as soon
 * as it is full (several at once), so that memory stays a few shards however many objects there are. Hidden files
 * and folders (`.DS_Store`, `.ipynb_checkpoints/`) are not inputs.
 */
export async function listShards(
  input: Storage,
  options: ListOptions,
  writeShard: (shard: number, items: readonly ShardItem[]) => Promise<void>,
  /** Deletes a shard file an earlier pass wrote and the last one did not (see below). */
  dropShard: (shard: number) => Promise<void> = async () => undefined,
): Promise<Listed> {
  const concurrency = options.concurrency ?? CONCURRENCY;
  const runFolders = new Set<string>();
  let written = 0;
  for (;;) {
    const known = runFolders.size;
    const listed = await listOnce(input, options, concurrency, runFolders, writeShard);
    written = Math.max(written, listed.shards);
    // A run folder found after some of its files went into a shard already written: list again without it.
    if (!listed.again) {
      await pMap(Array.from({ length: written - listed.shards }, (_, i) => listed.shards + i), dropShard, { concurrency });
      return { shards: listed.shards, images: listed.images, skipped: [...runFolders].sort() };
    }
    if (runFolders.size === known) throw new Error('listing: a run folder was found twice');
  }
}

async function listOnce(
  input: Storage,
  options: ListOptions,
  concurrency: number,
  runFolders: Set<string>,
  writeShard: (shard: number, items: readonly ShardItem[]) => Promise<void>,
): Promise<{ shards: number; images: number; again: boolean }> {
  let images = 0;
  let shards = 0;
  let again = false;
  const inRunFolder = (key: string) => [...runFolders].some((folder) => key.startsWith(folder));
  async function* cut(): AsyncIterable<{ shard: number; items: ShardItem[] }> {
    let items: ShardItem[] = [];
    // The last key of the last shard cut: a folder's keys come together, so a run folder found later had files
    // in a shard already cut exactly when this key is one of them.
    let lastCut: string | undefined;
    for await (const object of listInput(input, concurrency, options.parallel ?? false)) {
      if (options.exclude?.some((prefix) => object.key.startsWith(prefix))) continue;
      const marked = await runFolderMarkedBy(input, object.key);
      if (marked && !inRunFolder(marked)) {
        runFolders.add(marked);
        if (lastCut?.startsWith(marked)) {
          again = true;
          return;
        }
        const kept = items.filter((item) => !item.key.startsWith(marked));
        images -= items.length - kept.length;
        items = kept;
      }
      if (inRunFolder(object.key)) continue;
      if (object.key.split('/').some((segment) => segment.startsWith('.'))) continue;
      items.push({ key: object.key, size: object.size });
      images += 1;
      if (items.length === options.shardSize) {
        lastCut = object.key;
        yield { shard: shards++, items };
        items = [];
      }
    }
    if (items.length > 0) yield { shard: shards++, items };
  }
  await pMap(cut(), ({ shard, items }) => writeShard(shard, items), { concurrency });
  return { shards, images, again };
}

/**
 * The orchard run folder (as a prefix of the input, `results/r1/`) that a key shows to be one: a key of orchard's
 * own `_work/` layout, orchard's `manifest.json`, or a `_SUCCESS` beside one. A user's folder named `_work`, or a
 * Spark or Hadoop output's `_SUCCESS`, is not one. Not the input itself (`-i` names what the user wants read).
 */
async function runFolderMarkedBy(input: Storage, key: string): Promise<string | undefined> {
  const parts = key.split('/');
  const work = parts.indexOf('_work');
  if (work > 0 && isOwnWorkKey(parts.slice(work).join('/'))) return `${parts.slice(0, work).join('/')}/`;
  const name = parts[parts.length - 1];
  if (parts.length < 2 || (name !== OUTPUTS.success && name !== OUTPUTS.manifest)) return undefined;
  const folder = `${parts.slice(0, -1).join('/')}/`;
  return (await isOrchardManifest(input, `${folder}${OUTPUTS.manifest}`)) ? folder : undefined;
}

/** Whether a `manifest.json` is one orchard wrote (a dataset may carry a manifest of its own). */
async function isOrchardManifest(input: Storage, key: string): Promise<boolean> {
  const manifest = await getJson<Record<string, unknown>>(input, key).catch(() => undefined);
  return typeof manifest?.orchard === 'string' && typeof manifest.runId === 'string';
}

/** The label of a key: the name of the folder that holds it (Fruits-360: `Test/Apple Braeburn/3_100.jpg`). */
export function labelOf(key: string, from: 'parent' | 'none'): string {
  if (from === 'none') return '';
  const parent = path.posix.dirname(key);
  return parent === '.' ? '' : path.posix.basename(parent);
}

type Entry = { readonly key: string; readonly object: ObjectInfo; readonly folder?: undefined } | { readonly key: string; readonly folder: string; readonly object?: undefined };

/** A level's objects and folders, each sorted by key, merged in UTF-8 byte order (S3's, which JavaScript's string order is not). */
function mergeByKey(objects: readonly ObjectInfo[], folders: readonly string[]): Entry[] {
  const out: Entry[] = [];
  let i = 0;
  let j = 0;
  while (i < objects.length || j < folders.length) {
    if (j >= folders.length || (i < objects.length && utf8Order(objects[i]!.key, folders[j]!) <= 0)) {
      out.push({ key: objects[i]!.key, object: objects[i++]! });
    } else {
      out.push({ key: folders[j]!, folder: folders[j++]! });
    }
  }
  return out;
}

function utf8Order(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
