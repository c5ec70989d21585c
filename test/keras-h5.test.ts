import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { cacheSlug, readModelFiles, readPinnedFile, sha256Key } from '../runtime/model/artifacts';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { preprocessImage } from '../runtime/images/preprocess';
import { SIGNED_RANGE, UNIT_RANGE } from '../runtime/model/presets';
import { resolveModel } from '../runtime/model/resolve';
import { createTfjsFeatureModel } from '../runtime/model/tfjs-model';
import { LocalStorage } from '../runtime/storage';
import { orchard } from './helpers/cli';
import { nsfwjsAsKerasLayers, writeKerasH5, type H5Layer } from './helpers/keras-h5';
import { tempDir } from './helpers/s3';

/**
 * The mobilenet_v2 preset reads Keras's HDF5 weights over the nsfwjs topology. With the nsfwjs weights themselves
 * written in Keras's layout, the HDF5 path must give what the nsfwjs path gives: same network, same weights.
 */
const work = tempDir();
const images = path.join(work, 'images');
const goodH5 = path.join(work, 'nsfwjs.h5');
let layers: H5Layer[];

beforeAll(async () => {
  await generateSampleImages(images, { perClass: 3, seed: 5, classes: ['Apple Braeburn', 'Banana', 'Kiwi'] });
  layers = await nsfwjsAsKerasLayers();
  writeKerasH5(goodH5, layers);
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** pca.csv's rows by key: [label, ...values]. The keys of these images hold no commas. */
function pcaRows(dir: string): Map<string, number[]> {
  const lines = fs.readFileSync(path.join(dir, 'pca.csv'), 'utf8').trim().split('\n').slice(1);
  return new Map(lines.map((line) => line.split(',')).map(([key, , ...values]) => [key!, values.map(Number)]));
}

function runWith(model: string, ...extra: string[]) {
  const output = path.join(work, `out-${Math.random().toString(36).slice(2)}`);
  return { output, result: orchard('run', '--input', images, '--output', output, '--run-id', 'r', '--model', model, '--components', '4', '-q', ...extra) };
}

test('a Keras-layout .h5 of the nsfwjs weights gives the PCA matrix of mobilenet_v2_offline (within 1e-6)', async () => {
  const h5 = runWith(goodH5, '--normalize', '0,1');
  const offline = runWith('mobilenet_v2_offline');
  expect((await h5.result).code).toBe(0);
  expect((await offline.result).code).toBe(0);
  const [a, b] = [pcaRows(path.join(h5.output, 'r')), pcaRows(path.join(offline.output, 'r'))];
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  expect(a.size).toBe(9);
  let worst = 0;
  for (const [key, row] of a) row.forEach((value, i) => (worst = Math.max(worst, Math.abs(value - b.get(key)![i]!))));
  expect(worst).toBeLessThanOrEqual(1e-6);
  // The manifest names the file and its SHA-256 as the model's identity.
  const manifest = JSON.parse(fs.readFileSync(path.join(h5.output, 'r', 'manifest.json'), 'utf8')) as { model: { weightsSha256: string; loadedFrom: string } };
  expect(manifest.model.loadedFrom).toContain('nsfwjs.h5');
  expect(manifest.model.weightsSha256).toMatch(/^[0-9a-f]{64}$/);
});

test('on the tfjs engine too, the .h5 (cut at out_relu, pooled) gives the features of mobilenet_v2_offline', async () => {
  const preset = resolveModel({ ref: goodH5 });
  expect(preset).toMatchObject({ inputSize: 224, normalization: SIGNED_RANGE, featureLayer: 'global_average_pooling2d', featureDim: 1280 });
  const files = await readModelFiles(preset.source);
  // Every weight of MobileNetV2 up to out_relu as float32, none of the nsfwjs classifier head.
  const weights = files.modelJson.weightsManifest![0]!.weights;
  expect(weights).toHaveLength(260);
  expect(weights.filter((weight) => weight.name.startsWith('dense_') || weight.dtype !== 'float32')).toEqual([]);
  const rt = await initTf('wasm');
  const offlinePreset = resolveModel({ ref: 'mobilenet_v2_offline' });
  const h5Model = await createTfjsFeatureModel(rt, { ...preset, normalization: UNIT_RANGE }, files);
  const offlineModel = await createTfjsFeatureModel(rt, offlinePreset, await readModelFiles(offlinePreset.source));
  try {
    const keys = fs.readdirSync(images, { recursive: true }).map(String).filter((key) => key.endsWith('.jpg')).slice(0, 2);
    const pixels = Buffer.concat(await Promise.all(keys.map(async (key) => (await preprocessImage(fs.readFileSync(path.join(images, key)), { size: 224, maxPixels: 40_000_000 })).pixels)));
    const [a, b] = [await h5Model.predict(pixels, 2), await offlineModel.predict(pixels, 2)];
    expect(a).toHaveLength(2 * 1280);
    expect(Math.max(...a.map((value, i) => Math.abs(value - b[i]!)))).toBeLessThanOrEqual(1e-5);
  } finally {
    h5Model.dispose();
    offlineModel.dispose();
  }
});

describe('a file that is not that network is refused, naming the first mismatch, before anything is written', () => {
  async function refused(name: string, write: (file: string) => void): Promise<string> {
    const file = path.join(work, name);
    write(file);
    const { output, result } = runWith(file);
    const { code, err } = await result;
    expect(code).toBe(1);
    expect(fs.existsSync(output)).toBe(false);
    return err;
  }

  test('a weight of another shape (another width of network)', async () => {
    const changed = structuredClone(layers);
    const layer = changed.find((l) => l.name === 'block_3_expand')!;
    layer.weights[0] = { ...layer.weights[0]!, shape: [1, 1, 24, 143], values: layer.weights[0]!.values.subarray(0, 24 * 143) };
    const err = await refused('wide.h5', (file) => writeKerasH5(file, changed));
    expect(err).toContain("weight 'block_3_expand/kernel:0' has shape [1, 1, 24, 143], expected [1, 1, 24, 144]");
  });

  test('a missing layer', async () => {
    const err = await refused('short.h5', (file) => writeKerasH5(file, layers.filter((l) => l.name !== 'block_16_project_BN')));
    expect(err).toContain("layer 'block_16_project_BN' is missing");
  });

  test('a truncated download', async () => {
    const bytes = fs.readFileSync(goodH5);
    const err = await refused('cut.h5', (file) => fs.writeFileSync(file, bytes.subarray(0, 1_000_000)));
    expect(err).toContain(`it is truncated: 1000000 bytes, but its superblock says ${bytes.length}`);
  });

  test('a file that is not HDF5 at all', async () => {
    const err = await refused('text.h5', (file) => fs.writeFileSync(file, 'not a weights file'));
    expect(err).toContain('it does not start with the HDF5 signature');
  });
});

describe('a web .h5 is fetched into the model cache once and pinned by SHA-256', () => {
  let server: http.Server;
  let url: string;
  let requests = 0;
  const cache = new LocalStorage(tempDir());

  beforeAll(async () => {
    const bytes = fs.readFileSync(goodH5);
    server = http.createServer((_req, res) => {
      requests++;
      res.end(bytes);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/keras/weights_no_top.h5`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  test('the first load downloads it and records its SHA-256 beside it; later loads read the cache', async () => {
    const first = await readPinnedFile(url, { cache });
    const key = cacheSlug(url);
    expect(first.loadedFrom).toBe(cache.uri(key));
    const recorded = (await cache.get(sha256Key(key))).toString('utf8');
    expect(recorded).toMatch(new RegExp(`^[0-9a-f]{64}  ${key}\\n$`));
    await readPinnedFile(url, { cache, noDownload: true });
    expect(requests).toBe(1);
  });

  test('a cached copy that no longer matches its recorded SHA-256 is refused', async () => {
    const key = cacheSlug(url);
    await cache.put(key, Buffer.concat([await cache.get(key), Buffer.from([0])]));
    await expect(readPinnedFile(url, { cache })).rejects.toThrow(/has SHA-256 [0-9a-f]{64}, but .*\.sha256 recorded [0-9a-f]{64} when it was first fetched/);
  });

  test('where the deployment turns downloads off (ORCHARD_MODEL_DOWNLOADS=off), a file absent from the cache is never fetched', async () => {
    const other = `${url.replace('weights_no_top', 'deployed')}`;
    process.env.ORCHARD_MODEL_DOWNLOADS = 'off';
    try {
      await expect(readPinnedFile(other, { cache })).rejects.toThrow(/downloads are off here/);
    } finally {
      delete process.env.ORCHARD_MODEL_DOWNLOADS;
    }
    expect(requests).toBe(1);
  });

  test('with downloads off, a file absent from the cache is an error saying where to put it', async () => {
    const other = `${url.replace('weights_no_top', 'other')}`;
    await expect(readPinnedFile(other, { cache, noDownload: true })).rejects.toThrow(`aws s3 cp <file> ${cache.uri(cacheSlug(other))}`);
    expect(requests).toBe(1);
  });
});
