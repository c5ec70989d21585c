/**
 * A run split into tasks, as an engine that runs stages on many machines would split it: `orchard plan`, four
 * `orchard extract` processes on disjoint shards at once plus a fifth on shards the others also do, one of them
 * SIGKILLed in the middle of a shard and run again, `orchard fit`, two `orchard project` at once, `orchard
 * publish`. Real processes of the real CLI against the real S3 server; the result must be `orchard run`'s.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parquetReadObjects } from 'hyparquet';
import { generateSampleImages } from '../runtime/images/generate';
import { RunFolder } from '../runtime/pipeline/run-folder';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import { S3_ENV, startOrchard, type Exit } from './helpers/cli';
import { startTestS3, tempDir } from './helpers/s3';
import { loadScaledBudget } from './helpers/budget';

// Real processes running MobileNetV2 on wasm: a budget against hangs, scaled to the machine's load.
jest.setTimeout(loadScaledBudget(120));

const BUCKET = 'stages-test';
const CLASSES = ['Apple Braeburn', 'Banana', 'Kiwi', 'Pêche de vigne'];
const PER_CLASS = 12;
const SHARD_SIZE = 4;
const SHARDS = (CLASSES.length * PER_CLASS) / SHARD_SIZE;
const RUN_ID = 'split-run';

let s3: Awaited<ReturnType<typeof startTestS3>>;
const oneProcess = tempDir();
const split = tempDir();

function start(args: string[]) {
  return startOrchard([...args, '--endpoint', s3.endpoint, '-q'], S3_ENV);
}

async function ok(args: string[]): Promise<Exit> {
  const exit = await start(args).exited;
  if (exit.code !== 0) throw new Error(`orchard ${args.join(' ')} exited ${exit.code}:\n${exit.stderr}`);
  return exit;
}

/** The settings of the run: TensorFlow.js on WebAssembly (slow enough to be killed within a shard). */
const settings = ['--model', 'mobilenet_v2_offline', '--engine', 'tfjs', '--backend', 'wasm', '--shard-size', String(SHARD_SIZE), '--batch-size', '2', '-k', '5'];
const task = (output: string) => ['--output', output, '--run-id', RUN_ID];
const metaOf = (output: string, shard: number) => path.join(output, RUN_ID, '_work', 'extract', `${String(shard).padStart(5, '0')}.meta.json`);

let killed: Exit;
let midShardAtKill: boolean;
let overlap: { extracted: Set<string>; attempts: Map<number, string> };

beforeAll(async () => {
  s3 = await startTestS3([BUCKET]);
  const dir = tempDir();
  await generateSampleImages(dir, { perClass: PER_CLASS, seed: 21, classes: CLASSES });
  await uploadTree({ sourceDir: dir, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/') });
  const input = ['--input', `s3://${BUCKET}/images/`];

  // The reference, in one process, alongside the split run (another core; they share only the input).
  const reference = ok(['run', ...input, ...task(oneProcess), ...settings]);

  await ok(['plan', ...input, ...task(split), ...settings]);
  const extract = (shards: string) => start(['extract', ...task(split), '--shards', shards]);
  const tasks = [extract('0-2'), extract('3-5'), extract('6-8'), extract('2-4')];
  // The fourth range's process is killed as soon as its first shard is committed: it is then inside shard 10.
  const victim = extract('9-11');
  let finished = false;
  void victim.exited.then(() => (finished = true));
  while (!finished && !fs.existsSync(metaOf(split, 9))) await new Promise((resolve) => setTimeout(resolve, 10));
  victim.child.kill('SIGKILL');
  midShardAtKill = !fs.existsSync(metaOf(split, 10));
  killed = await victim.exited;
  for (const exit of await Promise.all(tasks.map((t) => t.exited))) {
    if (exit.code !== 0) throw new Error(`an extract task exited ${exit.code}:\n${exit.stderr}`);
  }
  await ok(['extract', ...task(split), '--shards', '9-11']);

  // What the overlapping attempts left: every shard committed by one attempt whose data is whole.
  const folder = new RunFolder(new LocalStorage(path.join(split, RUN_ID)));
  overlap = { extracted: new Set(), attempts: new Map() };
  for (let shard = 0; shard < SHARDS; shard++) {
    const meta = await folder.extracted(shard);
    if (meta) {
      overlap.extracted.add(String(shard));
      overlap.attempts.set(shard, meta.attempt);
    }
  }

  await ok(['fit', ...task(split)]);
  await Promise.all([ok(['project', ...task(split), '--shards', '0-5']), ok(['project', ...task(split), '--shards', '6-11'])]);
  await ok(['publish', ...task(split)]);
  await reference;
});
afterAll(() => s3?.close());

const read = (output: string, file: string) => fs.readFileSync(path.join(output, RUN_ID, file));

describe('a run split into stage tasks, one of them killed mid-shard and retried', () => {
  test('killed one extract task inside a shard, with nothing of that shard committed', () => {
    expect(killed.signal).toBe('SIGKILL');
    expect(midShardAtKill).toBe(true);
  });

  test('ends with every shard extracted by exactly one whole attempt', () => {
    expect(overlap.extracted.size).toBe(SHARDS);
  });

  test('writes pca.csv and pca.parquet byte for byte as orchard run does', () => {
    expect(read(split, 'pca.csv').equals(read(oneProcess, 'pca.csv'))).toBe(true);
    expect(read(split, 'pca.parquet').equals(read(oneProcess, 'pca.parquet'))).toBe(true);
    expect(read(split, 'errors.csv').equals(read(oneProcess, 'errors.csv'))).toBe(true);
    expect(read(split, 'pca-model.json').equals(read(oneProcess, 'pca-model.json'))).toBe(true);
  });

  test('writes the same Parquet dataset, one part per shard: same keys in the same order, values within 1e-6', async () => {
    const parts = (output: string) => fs.readdirSync(path.join(output, RUN_ID, 'pca')).sort();
    expect(parts(split)).toEqual(Array.from({ length: SHARDS }, (_, shard) => `part-${String(shard).padStart(5, '0')}.parquet`));
    expect(parts(split)).toEqual(parts(oneProcess));
    const rows = async (output: string) => {
      const all: Record<string, unknown>[] = [];
      for (const part of parts(output)) {
        const data = read(output, `pca/${part}`);
        all.push(...((await parquetReadObjects({ file: data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer })) as Record<string, unknown>[]));
      }
      return all;
    };
    const [a, b] = [await rows(split), await rows(oneProcess)];
    expect(a.map((row) => row.key)).toEqual(b.map((row) => row.key));
    expect(a).toHaveLength(CLASSES.length * PER_CLASS);
    a.forEach((row, i) => {
      for (let c = 1; c <= 5; c++) expect(Math.abs((row[`pc_${c}`] as number) - (b[i]![`pc_${c}`] as number))).toBeLessThanOrEqual(1e-6);
    });
  });

  test('publishes a manifest built from the shards, and _SUCCESS, and removes _work/', () => {
    const manifest = JSON.parse(read(split, 'manifest.json').toString('utf8'));
    expect(manifest.status).toBe('succeeded');
    expect(manifest.counts).toMatchObject({ listed: SHARDS * SHARD_SIZE, processed: SHARDS * SHARD_SIZE, failed: 0, shards: SHARDS });
    expect(manifest.engine).toMatchObject({ name: 'tfjs', backend: 'wasm' });
    expect(manifest.outputs.parts).toBe(path.join(split, RUN_ID, 'pca/'));
    expect(fs.existsSync(path.join(split, RUN_ID, '_SUCCESS'))).toBe(true);
    expect(fs.existsSync(path.join(split, RUN_ID, '_work'))).toBe(false);
  });

  test('a second publish changes nothing, says the run is already published and succeeds', async () => {
    const csv = fs.readFileSync(path.join(split, RUN_ID, 'pca.csv'));
    const again = await start(['publish', ...task(split)]).exited;
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`publish: run ${RUN_ID} is already published at ${path.join(split, RUN_ID)}`);
    expect(fs.readFileSync(path.join(split, RUN_ID, 'pca.csv'))).toEqual(csv);
  });
});

describe('stage commands refuse what cannot work, naming the fix', () => {
  test('a stage of a run that was never planned', async () => {
    const exit = await start(['extract', '--output', tempDir(), '--run-id', 'nothing', '--shards', '0']).exited;
    expect(exit.code).toBe(2);
    expect(exit.stderr).toMatch(/holds no run \(no _work\/config.json\): run `orchard plan` for this run id first/);
  });

  test('a shard the plan does not have, and a shard list that is not one', async () => {
    const output = tempDir();
    await ok(['plan', '--input', `s3://${BUCKET}/images/`, ...task(output), ...settings]);
    const beyond = await start(['extract', ...task(output), '--shards', '11-13']).exited;
    expect(beyond.code).toBe(2);
    expect(beyond.stderr).toContain(`Run ${RUN_ID} has ${SHARDS} shard(s) (0-${SHARDS - 1}); there is no shard 12, 13`);
    const bad = await start(['extract', ...task(split), '--shards', '3-1']).exited;
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('expected shard numbers and ranges such as 0-9,12 (or all) for --shards');
  });
});
