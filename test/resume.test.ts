import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSampleImages } from '../runtime/images/generate';
import { S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import { S3_ENV, startOrchard, type Exit } from './helpers/cli';
import { startTestS3, tempDir } from './helpers/s3';
import { loadScaledBudget } from './helpers/budget';

/**
 * A real `orchard run` process, killed with SIGKILL as soon as its first shard is complete, then rerun with the
 * same --run-id: it must resume from the completed shards and end with the same results as an uninterrupted run.
 * The real offline MobileNetV2 (~20 images/s on wasm) keeps the run long enough to be killed in the middle.
 */

// Real processes running MobileNetV2 on wasm: a budget against hangs, scaled to the machine's load.
jest.setTimeout(loadScaledBudget(60));

const BUCKET = 'resume-test';
const CLASSES = ['Apple Braeburn', 'Banana', 'Lemon', 'Kiwi', 'Pêche de vigne'];
const PER_CLASS = 8;
const IMAGES = CLASSES.length * PER_CLASS;
const SHARD_SIZE = 8;
const SHARDS = IMAGES / SHARD_SIZE;

let s3: Awaited<ReturnType<typeof startTestS3>>;
const output = tempDir();

beforeAll(async () => {
  s3 = await startTestS3([BUCKET]);
  const dir = tempDir();
  await generateSampleImages(dir, { perClass: PER_CLASS, seed: 11, classes: CLASSES });
  await uploadTree({ sourceDir: dir, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/') });
});
afterAll(() => s3.close());


function runArgs(runId: string, shardSize = SHARD_SIZE): string[] {
  return [
    'run',
    '--input', `s3://${BUCKET}/images/`,
    '--output', output,
    '--run-id', runId,
    '--model', 'mobilenet_v2_offline',
    '--shard-size', String(shardSize),
    '--batch-size', '4',
    // TensorFlow.js on WebAssembly (~20 images/s) keeps the run long enough to be killed in the middle.
    '--engine', 'tfjs',
    '--backend', 'wasm',
    '-k', '5',
    '--json-logs',
    '--endpoint', s3.endpoint,
  ];
}

const start = (args: string[]) => startOrchard(args, S3_ENV);

const runDir = (runId: string) => path.join(output, runId);
const metaFiles = (runId: string) => {
  const dir = path.join(runDir(runId), '_work', 'extract');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => name.endsWith('.meta.json')).sort() : [];
};

/** Runs until the first shard's meta file appears, then SIGKILLs the process (no chance to clean up). */
async function killAfterFirstShard(runId: string): Promise<Exit> {
  const { child, exited } = start(runArgs(runId));
  const firstMeta = path.join(runDir(runId), '_work', 'extract', '00000.meta.json');
  let finished = false;
  void exited.then(() => (finished = true));
  while (!finished && !fs.existsSync(firstMeta)) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!finished) child.kill('SIGKILL');
  return exited;
}

function readCsv(file: string): string[][] {
  // The generated keys hold no commas or quotes, so a plain split reads them faithfully.
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => line.split(','));
}

describe('a run killed mid-extract and rerun with the same --run-id', () => {
  let killed: Exit;
  let metasAfterKill: string[];
  let successAfterKill: boolean;
  let refused: Exit;
  let metasAfterRefusal: string[];
  let resumed: Exit;
  let fresh: Exit;

  beforeAll(async () => {
    // The uninterrupted reference run goes alongside the others (a second core): the fit of 1280 features
    // takes most of a run's time, and the two runs share nothing but the input bucket.
    const freshRun = start(runArgs('fresh1')).exited;
    killed = await killAfterFirstShard('resume1');
    metasAfterKill = metaFiles('resume1');
    successAfterKill = fs.existsSync(path.join(runDir('resume1'), '_SUCCESS'));
    refused = await start(runArgs('resume1', SHARD_SIZE + 2)).exited;
    metasAfterRefusal = metaFiles('resume1');
    resumed = await start(runArgs('resume1')).exited;
    fresh = await freshRun;
  });

  it('was killed in the middle: by SIGKILL, without _SUCCESS, with some but not all shards complete', () => {
    expect(killed.signal).toBe('SIGKILL');
    expect(successAfterKill).toBe(false);
    expect(metasAfterKill.length).toBeGreaterThanOrEqual(1);
    expect(metasAfterKill.length).toBeLessThan(SHARDS);
  });

  it('refuses to resume with another --shard-size: exit 2, naming shardSize', () => {
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^orchard: Cannot resume run resume1: shardSize was 8 and is now 10/m);
    expect(metasAfterRefusal).toEqual(metasAfterKill);
  });

  it('finishes on the rerun: exit 0 and _SUCCESS', () => {
    expect(resumed.stderr).not.toMatch(/"level":"warn"/);
    // The killed process's lease names a process that no longer runs: taken over at once, not after its expiry.
    expect(resumed.stderr).toMatch(/taking over from orchard run resume1 on .* \(pid \d+\) since .*: process \d+ no longer runs/);
    expect(resumed.code).toBe(0);
    expect(fs.existsSync(path.join(runDir('resume1'), '_SUCCESS'))).toBe(true);
  });

  it('reuses exactly the shards completed before the kill and processes every image', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(runDir('resume1'), 'manifest.json'), 'utf8'));
    expect(manifest.counts.shardsResumed).toBe(metasAfterKill.length);
    expect(manifest.counts.shardsResumed).toBeGreaterThanOrEqual(1);
    expect(manifest.counts).toMatchObject({ listed: IMAGES, processed: IMAGES, failed: 0, shards: SHARDS });
    expect(JSON.parse(resumed.stdout).counts.shardsResumed).toBe(metasAfterKill.length);
  });

  it('writes the same pca.csv as an uninterrupted run: same keys in the same order, values within 1e-4', () => {
    expect(fresh.code).toBe(0);
    const freshManifest = JSON.parse(fs.readFileSync(path.join(runDir('fresh1'), 'manifest.json'), 'utf8'));
    expect(freshManifest.counts.shardsResumed).toBe(0);
    const a = readCsv(path.join(runDir('resume1'), 'pca.csv'));
    const b = readCsv(path.join(runDir('fresh1'), 'pca.csv'));
    expect(a[0]).toEqual(['key', 'label', 'pc_1', 'pc_2', 'pc_3', 'pc_4', 'pc_5']);
    expect(a.map((row) => row.slice(0, 2))).toEqual(b.map((row) => row.slice(0, 2)));
    expect(a).toHaveLength(IMAGES + 1);
    let worst = 0;
    for (let i = 1; i < a.length; i++) {
      for (let c = 2; c < a[i].length; c++) worst = Math.max(worst, Math.abs(Number(a[i][c]) - Number(b[i][c])));
    }
    expect(worst).toBeLessThanOrEqual(1e-4);
  });
});

describe('a run on the onnx engine stopped with SIGTERM', () => {
  it('stops after the batch in flight: exit 130, no native abort, the shards done kept for a resume', async () => {
    // From a local folder the model is what the run waits for: when the first shard is committed, it is computing.
    const input = tempDir();
    await generateSampleImages(input, { perClass: 60, seed: 12, classes: CLASSES });
    const args = ['run', '--input', input, '--output', output, '--run-id', 'term1', '--model', 'mobilenet_v2_offline', '--engine', 'onnx', '--shard-size', '100', '-k', '5', '--json-logs'];
    const { child, exited } = start(args);
    const firstMeta = path.join(runDir('term1'), '_work', 'extract', '00000.meta.json');
    let finished = false;
    void exited.then(() => (finished = true));
    while (!finished && !fs.existsSync(firstMeta)) await new Promise((resolve) => setTimeout(resolve, 10));
    // Into the second shard, its batches going through the model.
    await new Promise((resolve) => setTimeout(resolve, 200));
    child.kill('SIGTERM');
    const result = await exited;
    // Stopping the ONNX Runtime thread while it computed aborted the process (exit 134, "terminate called…").
    expect(result.stderr).not.toContain('terminate called');
    expect({ code: result.code, signal: result.signal }).toEqual({ code: 130, signal: null });
    expect(result.stderr).toContain('resume with --run-id term1');
    expect(metaFiles('term1').length).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(runDir('term1'), '_SUCCESS'))).toBe(false);
  });
});
