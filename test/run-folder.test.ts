/**
 * The shard contract (runtime/pipeline/run-folder.ts): its commit protocol under overlapping attempts and lost
 * objects, the fit's tree merge over many shards, and the parallel listing that cuts the shards.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mulberry32 } from '../runtime/random';
import { TreeMerge, mergeShards } from '../runtime/pipeline/fit';
import { listInput, listShards } from '../runtime/pipeline/list';
import { RunFolder, type ExtractMeta } from '../runtime/pipeline/run-folder';
import { emptyMoments, mergeMoments, momentsOf, type Moments } from '../runtime/stats/moments';
import { LocalStorage, S3Storage, createS3Client, type PutOptions, type Storage } from '../runtime/storage';
import { startTestS3, tempDir } from './helpers/s3';

const DIM = 6;

function rows(n: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: n * DIM }, (_, i) => 100 + random() * (1 + (i % DIM)));
}

function meta(shard: number, attempt: string, n: number): ExtractMeta {
  return {
    shard,
    attempt,
    dim: DIM,
    rows: Array.from({ length: n }, (_, i) => ({ key: `c/${shard}-${i}.jpg`, label: 'c' })),
    errors: [],
    seconds: 0,
    predictSeconds: 0,
    momentsSeconds: 0,
    engine: { name: 'onnx', version: 'test', threads: 1, batchSize: 1 },
    versions: {},
    host: 'test',
    finishedAt: new Date(0).toISOString(),
  };
}

async function commit(folder: RunFolder, shard: number, attempt: string, n: number, seed: number): Promise<Moments> {
  const features = rows(n, seed);
  const moments = momentsOf(features, n, DIM);
  await folder.commitExtract(meta(shard, attempt, n), features, moments);
  return moments;
}

describe('the commit protocol', () => {
  test('a shard is complete once its meta names data that is whole, and only then', async () => {
    const dir = tempDir();
    const folder = new RunFolder(new LocalStorage(dir));
    expect(await folder.extracted(0)).toBeUndefined();
    await commit(folder, 0, 'a1', 5, 1);
    expect((await folder.extracted(0))?.attempt).toBe('a1');
    // Lifecycle expiry (or a hand) takes the features and leaves the meta: the shard is not complete any more.
    fs.rmSync(path.join(dir, '_work', 'extract', '00000', 'a1.features.f32'));
    expect(await folder.extracted(0)).toBeUndefined();
    await expect(folder.requireExtracted(0)).rejects.toMatchObject({ code: 'ERR_SHARD_INCOMPLETE', message: expect.stringContaining(`run \`orchard extract -o ${path.dirname(dir)}/ --run-id ${path.basename(dir)} --shards 0\``) });
  });

  test('two overlapping attempts of one shard never mix: the last meta names a whole attempt of its own', async () => {
    const folder = new RunFolder(new LocalStorage(tempDir()));
    const first = await commit(folder, 3, 'early', 4, 7);
    const second = await commit(folder, 3, 'late', 4, 8);
    const done = (await folder.extracted(3))!;
    expect(done.attempt).toBe('late');
    expect(await folder.readMoments(done)).toEqual(second);
    expect(await folder.readMoments(meta(3, 'early', 4))).toEqual(first);
    expect(Array.from(await folder.readFeatures(done))).toEqual(Array.from(rows(4, 8)));
  });

  test('tags every _work/ object, and nothing else, for the lifecycle rule', async () => {
    const puts: [string, PutOptions | undefined][] = [];
    const local = new LocalStorage(tempDir());
    const recording: Storage = Object.assign(Object.create(local) as Storage, {
      put: (key: string, body: Buffer | string, options?: PutOptions) => (puts.push([key, options]), local.put(key, body, options)),
    });
    const folder = new RunFolder(recording);
    await commit(folder, 0, 'a', 3, 1);
    await folder.writePlan({ shards: 1, images: 3, shardSize: 3, startedAt: '', listSeconds: 0 });
    expect(puts.length).toBeGreaterThanOrEqual(4);
    for (const [key, options] of puts) expect([key, options?.tags]).toEqual([key, { 'orchard:intermediate': 'true' }]);
  });
});

describe('the fit\'s tree merge', () => {
  test('equals the serial merge of 57 shards within 1e-9 relative, read through the run folder', async () => {
    const folder = new RunFolder(new LocalStorage(tempDir()));
    const sizes = Array.from({ length: 57 }, (_, shard) => (shard % 11 === 0 ? 0 : 1 + ((shard * 7) % 23)));
    let serial = emptyMoments(DIM);
    const metas: ExtractMeta[] = [];
    for (const [shard, n] of sizes.entries()) {
      serial = mergeMoments(serial, await commit(folder, shard, `a${shard}`, n, shard + 100));
      metas.push((await folder.extracted(shard))!);
    }
    const tree = await mergeShards(folder, metas, DIM);
    expect(tree.count).toBe(serial.count);
    const relative = (a: Float64Array, b: Float64Array) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!) / Math.max(Math.abs(b[i]!), 1e-300)));
    expect(relative(tree.mean, serial.mean)).toBeLessThan(1e-9);
    expect(relative(tree.comoment, serial.comoment)).toBeLessThan(1e-9);
  });

  test('gives the same result whatever order the partial sums arrive in: its shape depends on the count only', () => {
    const shards = Array.from({ length: 13 }, (_, i) => momentsOf(rows(3 + i, i), 3 + i, DIM));
    const once = new TreeMerge(DIM);
    const twice = new TreeMerge(DIM);
    for (const m of shards) once.add(m);
    for (const m of shards) twice.add(m);
    expect(once.result()).toEqual(twice.result());
    expect(new TreeMerge(DIM).result().count).toBe(0);
  });

  test('merges inputs it owns in place, to the very same result, and leaves the others untouched', () => {
    const shards = () => Array.from({ length: 13 }, (_, i) => momentsOf(rows(3 + i, i), 3 + i, DIM));
    const kept = shards();
    const before = kept.map((m) => Float64Array.from(m.comoment));
    const copied = new TreeMerge(DIM);
    for (const m of kept) copied.add(m);
    const inPlace = new TreeMerge(DIM);
    for (const m of shards()) inPlace.add(m, true);
    expect(inPlace.result()).toEqual(copied.result());
    kept.forEach((m, i) => expect(m.comoment).toEqual(before[i]));
  });
});

describe('listing', () => {
  const BUCKET = 'list-test';
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  let storage: S3Storage;
  // One folder level (s3rver's delimiter listing misses folders whose objects are all deeper: AWS S3 does not).
  const keys = ['Äpfel/1.jpg', 'Banana/a b.jpg', 'Banana/b.jpg', 'a.jpg', 'a/x.jpg', 'root.png', 'Kiwi/.DS_Store', 'Kiwi/k.jpg', '😀/1.jpg', '\uFF21/2.jpg'];

  beforeAll(async () => {
    s3 = await startTestS3([BUCKET]);
    storage = new S3Storage(createS3Client(s3.options), BUCKET, 'in/');
    for (const key of keys) await storage.put(key, 'x');
  });
  afterAll(() => s3.close());

  test('lists S3 folder by folder in parallel: every key once, in UTF-8 byte order (S3\'s)', async () => {
    const plain: string[] = [];
    for await (const object of storage.list()) plain.push(object.key);
    const parallel: string[] = [];
    for await (const object of listInput(storage, 3, true)) parallel.push(object.key);
    expect([...parallel].sort()).toEqual([...plain].sort());
    expect(parallel).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    // JavaScript's own order (UTF-16) puts U+FF21 after the emoji; S3's puts it before.
    expect(parallel.indexOf('\uFF21/2.jpg')).toBeLessThan(parallel.indexOf('😀/1.jpg'));
  });

  test('cuts shards of the listing, hidden files left out, each shard written as it fills', async () => {
    const written = new Map<number, string[]>();
    for (const parallel of [false, true]) {
      written.clear();
      const listed = await listShards(storage, { shardSize: 3, parallel }, async (shard, items) => void written.set(shard, items.map((item) => item.key)));
      expect(listed).toEqual({ shards: 3, images: 9, skipped: [] });
      expect([...written.keys()].sort()).toEqual([0, 1, 2]);
      expect([...written.values()].flat()).not.toContain('Kiwi/.DS_Store');
      expect(written.get(2)).toHaveLength(3);
    }
  });
});
