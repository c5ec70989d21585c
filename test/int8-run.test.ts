/**
 * One int8 run, one graph: plan quantizes and stores it, and every extract process of the run loads those
 * bytes. Two `orchard extract` processes over a planned int8 run give the same feature shards, byte for byte,
 * as one `orchard run --precision int8`; a resume with another precision is refused before anything is written.
 * (The Lambda path's int8 run is in scale-local.test.ts.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { detectInt8Support } from '../runtime/onnx/cpu';
import { planWeightRange } from '../runtime/pipeline/int8-graph';
import { LocalStorage } from '../runtime/storage';
import { orchard, startOrchard } from './helpers/cli';
import { tempDir } from './helpers/s3';
import { saveTinyModel } from './helpers/tiny-model';

const images = tempDir();
const modelDir = tempDir();
const output = tempDir();
const SHARDS = 4;

const settings = (runId: string, precision = 'int8') => [
  '-i', images, '-o', output, '--run-id', runId, '--model', modelDir, '--feature-layer', 'features', '--input-size', '32',
  '-k', '3', '--shard-size', '4', '--precision', precision, '--model-cache', path.join(output, 'models'),
];
const work = (runId: string, ...parts: string[]) => path.join(output, runId, '_work', ...parts);
const features = (runId: string, shard: number) => {
  const meta = JSON.parse(fs.readFileSync(work(runId, 'extract', `${String(shard).padStart(5, '0')}.meta.json`), 'utf8')) as { attempt: string };
  return fs.readFileSync(work(runId, 'extract', String(shard).padStart(5, '0'), `${meta.attempt}.features.f32`));
};

/** Every file under a folder with its size and modification time: what "nothing was written" compares. */
function snapshot(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .sort()
    .map((name) => {
      const stat = fs.statSync(path.join(dir, name));
      return `${name} ${stat.size} ${stat.mtimeMs}`;
    });
}

beforeAll(async () => {
  const tf = await initTf('wasm');
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  await generateSampleImages(images, { perClass: 4, seed: 18, classes: ['Kiwi', 'Lemon', 'Banana', 'Orange'] });
  const single = await orchard('run', ...settings('single'), '--keep-features');
  expect(single.code).toBe(0);
  const planned = await orchard('plan', ...settings('split'));
  expect(planned.code).toBe(0);
  // Two extract processes at once, each with its own shards.
  const exits = await Promise.all(['0-1', '2-3'].map((shards) => startOrchard(['extract', '-o', output, '--run-id', 'split', '--shards', shards]).exited));
  for (const exit of exits) expect(exit).toMatchObject({ code: 0 });
}, 180_000);

test('plan stores one int8 graph per run; the single run\'s manifest records its precision and weight range', () => {
  expect(fs.readFileSync(work('split', 'int8', 'graph.onnx'))).toEqual(fs.readFileSync(work('single', 'int8', 'graph.onnx')));
  const manifest = JSON.parse(fs.readFileSync(path.join(output, 'single', 'manifest.json'), 'utf8'));
  expect(manifest.engine).toMatchObject({ name: 'onnx', precision: 'int8', int8: { weightBits: detectInt8Support().weightBits, calibrationImages: 16 } });
  const entry = JSON.parse(fs.readFileSync(work('single', 'int8', 'graph.json'), 'utf8'));
  expect(manifest.engine.graph.sha256).toBe(entry.sha256);
  expect(entry.calibrationKeys).toHaveLength(16);
});

test('two extract processes give the same feature shards, byte for byte, as one orchard run', () => {
  for (let shard = 0; shard < SHARDS; shard++) {
    const split = features('split', shard);
    expect(split.length).toBe(4 * 12 * 4);
    expect(split).toEqual(features('single', shard));
  }
  const extractedWith = JSON.parse(fs.readFileSync(work('split', 'model.json'), 'utf8'));
  expect(extractedWith.graphSha256).toBe(JSON.parse(fs.readFileSync(work('split', 'int8', 'graph.json'), 'utf8')).sha256);
});

test('int8 features differ from fp32 ones, but little', async () => {
  const fp32 = await orchard('run', ...settings('float', 'fp32'), '--keep-features');
  expect(fp32.code).toBe(0);
  const a = new Float32Array(Uint8Array.from(features('float', 0)).buffer);
  const b = new Float32Array(Uint8Array.from(features('single', 0)).buffer);
  expect(b).not.toEqual(a);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(0.05 * Math.max(...a.map(Math.abs)));
}, 60_000);

test('a resume with another precision is refused before anything is written', async () => {
  const before = snapshot(path.join(output, 'split'));
  const resumed = await orchard('run', ...settings('split', 'fp32'));
  expect(resumed.code).toBe(2);
  expect(resumed.err).toMatch(/Cannot resume run split: precision was "int8" and is now "fp32" \(the default\)/);
  expect(snapshot(path.join(output, 'split'))).toEqual(before);
}, 60_000);

test('an extract process refuses a run whose stored int8 graph was altered', async () => {
  await expect(orchard('plan', ...settings('tampered'))).resolves.toMatchObject({ code: 0 });
  const graph = work('tampered', 'int8', 'graph.onnx');
  const bytes = fs.readFileSync(graph);
  bytes[bytes.length >> 1] ^= 0xff;
  fs.writeFileSync(graph, bytes);
  const extract = await orchard('extract', '-o', output, '--run-id', 'tampered', '--shards', '0');
  expect(extract.code).toBe(1);
  expect(extract.err).toMatch(/_work\/int8\/graph\.onnx.*SHA-256 is not/);
  expect(fs.existsSync(work('tampered', 'extract', '00000.meta.json'))).toBe(false);
}, 60_000);

test('a Lambda x86_64 plan keeps to 7-bit weights, whatever CPU it lands on', () => {
  expect(planWeightRange({ AWS_LAMBDA_FUNCTION_NAME: 'orchard-stage' }, 'x64').weightBits).toBe(7);
  expect(planWeightRange({ AWS_LAMBDA_FUNCTION_NAME: 'orchard-stage' }, 'arm64')).toEqual(detectInt8Support('arm64'));
  expect(planWeightRange({}, 'x64')).toEqual(detectInt8Support('x64'));
});
