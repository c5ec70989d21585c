import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { initTf, type TfRuntime } from '../runtime/model/backend';
import { cacheSlug, readModelFiles, type ModelFiles } from '../runtime/model/artifacts';
import { createTfjsFeatureModel } from '../runtime/model/tfjs-model';
import { PRESETS, UNIT_RANGE, type ModelPreset } from '../runtime/model/presets';
import { resolveModel } from '../runtime/model/resolve';
import { OrchardError } from '../runtime/errors';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { startTestS3, tempDir } from './helpers/s3';
import { TINY_FEATURES, TINY_INPUT, saveTinyModel } from './helpers/tiny-model';

const BUCKET = 'model-test';
const N = 3;
let s3: Awaited<ReturnType<typeof startTestS3>>;
let rt: TfRuntime;
let modelDir: string;
/** N seeded images of TINY_INPUT² × 3 bytes. */
let input: Uint8Array;

beforeAll(async () => {
  s3 = await startTestS3([BUCKET]);
  rt = await initTf('wasm');
  modelDir = tempDir();
  await saveTinyModel(rt.tf, new LocalStorage(modelDir));
  // The very same files in S3, so that every source serves identical bytes.
  const bucket = new S3Storage(createS3Client(s3.options), BUCKET, 'models/tiny/');
  for (const file of fs.readdirSync(modelDir)) await bucket.put(file, fs.readFileSync(path.join(modelDir, file)));
  let seed = 12345;
  input = Uint8Array.from({ length: N * TINY_INPUT * TINY_INPUT * 3 }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 24;
  });
});
afterAll(() => s3.close());

function tinyPreset(ref: string, featureLayer = 'features'): ModelPreset {
  return resolveModel({ ref, featureLayer, inputSize: TINY_INPUT });
}

async function loadAndPredict(ref: string, options: Parameters<typeof readModelFiles>[1] = {}) {
  const preset = tinyPreset(ref);
  const files = await readModelFiles(preset.source, options);
  const model = await createTfjsFeatureModel(rt, preset, files);
  try {
    return { files, identity: model.identity, features: await model.predict(input, N) };
  } finally {
    model.dispose();
  }
}

describe('a tiny layers model loaded from a folder, a model.json path and an s3:// URI', () => {
  const sources = () => ({
    folder: modelDir,
    modelJson: path.join(modelDir, 'model.json'),
    s3: `s3://${BUCKET}/models/tiny/`,
  });
  let loaded: Record<string, Awaited<ReturnType<typeof loadAndPredict>>>;

  beforeAll(async () => {
    loaded = {};
    for (const [name, ref] of Object.entries(sources())) loaded[name] = await loadAndPredict(ref, { s3: s3.options });
  });

  it('records where each copy was read from', () => {
    expect(loaded.folder.files.loadedFrom).toBe(path.join(modelDir, 'model.json'));
    expect(loaded.modelJson.files.loadedFrom).toBe(path.join(modelDir, 'model.json'));
    expect(loaded.s3.files.loadedFrom).toBe(`s3://${BUCKET}/models/tiny/model.json`);
  });

  it('gives n × TINY_FEATURES finite values from each source', () => {
    for (const { features, identity } of Object.values(loaded)) {
      expect(features).toHaveLength(N * TINY_FEATURES);
      expect(identity.featureDim).toBe(TINY_FEATURES);
      expect(features.every(Number.isFinite)).toBe(true);
    }
  });

  it('gives identical features for the same input whatever the source', () => {
    expect(Array.from(loaded.modelJson.features)).toEqual(Array.from(loaded.folder.features));
    expect(Array.from(loaded.s3.features)).toEqual(Array.from(loaded.folder.features));
  });

  it('gives different features for different images', () => {
    const first = Array.from(loaded.folder.features.subarray(0, TINY_FEATURES));
    const second = Array.from(loaded.folder.features.subarray(TINY_FEATURES, 2 * TINY_FEATURES));
    expect(second).not.toEqual(first);
  });

  it('computes the same weights SHA-256 from each source, the hash of weights.bin', () => {
    const expected = createHash('sha256').update(fs.readFileSync(path.join(modelDir, 'weights.bin'))).digest('hex');
    for (const { files } of Object.values(loaded)) expect(files.weightsSha256).toBe(expected);
  });

  it('identifies the model as a layers model cut at its feature layer', () => {
    expect(loaded.folder.identity).toMatchObject({ format: 'layers-model', featureLayer: 'features', inputSize: TINY_INPUT, normalization: UNIT_RANGE });
  });

  it('leaves no tensors behind after predict', async () => {
    const preset = tinyPreset(modelDir);
    const model = await createTfjsFeatureModel(rt, preset, await readModelFiles(preset.source));
    try {
      const before = rt.tf.memory().numTensors;
      await model.predict(input, N);
      expect(rt.tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
    }
  });
});

/** Serves the tiny model's files under /tiny/ on loopback and counts the requests it gets. */
async function serveTinyModel(): Promise<{ server: http.Server; url: string; requests: string[] }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const name = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/^\/tiny\//, '');
    const file = path.join(modelDir, name);
    if (!/^[\w.-]+$/.test(name) || !fs.existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(fs.readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/tiny`, requests };
}

function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}

describe('a model on the web, cached', () => {
  let served: Awaited<ReturnType<typeof serveTinyModel>>;
  let cacheDir: string;
  let cache: LocalStorage;
  let first: Awaited<ReturnType<typeof loadAndPredict>>;
  let requestsAfterFirst: string[];
  let second: Awaited<ReturnType<typeof loadAndPredict>>;
  let reference: Float32Array;

  beforeAll(async () => {
    served = await serveTinyModel();
    cacheDir = tempDir();
    cache = new LocalStorage(cacheDir);
    first = await loadAndPredict(served.url, { cache });
    requestsAfterFirst = [...served.requests];
    await closeServer(served.server);
    second = await loadAndPredict(served.url, { cache });
    reference = (await loadAndPredict(modelDir)).features;
  });

  it('downloads model.json and its weights, without any query for a host other than TF Hub', () => {
    expect(requestsAfterFirst).toEqual(['/tiny/model.json', '/tiny/weights.bin']);
  });

  it('writes the files into the cache under cacheSlug(url)/', () => {
    const slug = cacheSlug(served.url);
    expect(fs.readdirSync(path.join(cacheDir, slug)).sort()).toEqual(['model.json', 'weights.bin']);
    expect(fs.readFileSync(path.join(cacheDir, slug, 'weights.bin'))).toEqual(fs.readFileSync(path.join(modelDir, 'weights.bin')));
  });

  it('reports the cache as where the model was loaded from', () => {
    expect(first.files.loadedFrom).toBe(cache.uri(`${cacheSlug(served.url)}/model.json`));
  });

  it('loads again from the cache once the server is gone, making no request', () => {
    expect(second.files.loadedFrom).toBe(first.files.loadedFrom);
    expect(served.requests).toEqual(requestsAfterFirst);
  });

  it('gives the same features and weights hash from the cache as from the original files', () => {
    expect(Array.from(first.features)).toEqual(Array.from(reference));
    expect(Array.from(second.features)).toEqual(Array.from(reference));
    expect(second.files.weightsSha256).toBe(first.files.weightsSha256);
  });
});

describe('a TF Hub model handle', () => {
  // No TF Hub server exists offline: an injected fetch records the URLs asked for and serves the tiny model.
  const requested: string[] = [];
  const fakeFetch = (async (target: string | URL | Request) => {
    const url = String(target);
    requested.push(url);
    const file = path.join(modelDir, path.posix.basename(new URL(url).pathname));
    return fs.existsSync(file) ? new Response(fs.readFileSync(file)) : new Response('not found', { status: 404 });
  }) as typeof fetch;
  const handle = 'https://tfhub.dev/google/tiny/feature_vector/1';
  let files: ModelFiles;

  beforeAll(async () => {
    files = await readModelFiles(tinyPreset(handle).source, { fetch: fakeFetch });
  });

  it('asks for model.json and the weights with ?tfjs-format=file, as tfjs fromTFHub does', () => {
    expect(requested).toEqual([`${handle}/model.json?tfjs-format=file`, `${handle}/weights.bin?tfjs-format=file`]);
  });

  it('gives a model that loads and predicts', async () => {
    const model = await createTfjsFeatureModel(rt, tinyPreset(handle), files);
    try {
      expect(await model.predict(input, N)).toHaveLength(N * TINY_FEATURES);
    } finally {
      model.dispose();
    }
  });
});

describe('model loading errors', () => {
  it('reports an unreachable URL as ERR_MODEL_FETCH naming the URL and the --model fix', async () => {
    const { server, url } = await serveTinyModel();
    await closeServer(server);
    const error = await readModelFiles(tinyPreset(url).source).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OrchardError);
    expect(error).toMatchObject({ code: 'ERR_MODEL_FETCH' });
    expect((error as Error).message).toContain(url);
    expect((error as Error).message).toContain('--model');
  });

  it('reports an HTTP error status as ERR_MODEL_FETCH with the status and leaves nothing in the cache', async () => {
    const served = await serveTinyModel();
    const cacheDir = tempDir();
    try {
      const url = served.url.replace(/\/tiny$/, '/elsewhere');
      const error = await readModelFiles(tinyPreset(url).source, { cache: new LocalStorage(cacheDir) }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'ERR_MODEL_FETCH', message: expect.stringContaining('HTTP 404') });
      expect(fs.readdirSync(cacheDir)).toEqual([]);
    } finally {
      await closeServer(served.server);
    }
  });

  it.each([
    ['a folder without model.json', () => path.join(tempDir(), 'empty')],
    ['an s3:// prefix without model.json', () => `s3://${BUCKET}/models/missing/`],
  ])('reports %s as ERR_MODEL_LOAD naming the location and the --model fix', async (_name, location) => {
    const ref = location();
    const error = await readModelFiles(tinyPreset(ref).source, { s3: s3.options }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OrchardError);
    expect(error).toMatchObject({ code: 'ERR_MODEL_LOAD' });
    expect((error as Error).message).toContain(ref);
    expect((error as Error).message).toContain('--model');
  });

  it('rejects an unknown preset name with ERR_INVALID_PARAMETER listing the presets', () => {
    let error: unknown;
    try {
      resolveModel({ ref: 'mobilenet_v3' });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'ERR_INVALID_PARAMETER' });
    for (const name of Object.keys(PRESETS)) expect((error as Error).message).toContain(name);
  });

  it('rejects a missing feature layer with a message listing the layer names', async () => {
    const preset = tinyPreset(modelDir, 'no_such_layer');
    const error = await createTfjsFeatureModel(rt, preset, await readModelFiles(preset.source)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OrchardError);
    expect((error as Error).message).toContain('no_such_layer');
    expect((error as Error).message).toContain('features');
  });

  it('detects a feature length that differs from the preset as ERR_MODEL_LOAD', async () => {
    const preset: ModelPreset = { ...tinyPreset(modelDir), name: 'tiny-999', featureDim: 999 };
    const error = await createTfjsFeatureModel(rt, preset, await readModelFiles(preset.source)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_MODEL_LOAD' });
    expect((error as Error).message).toContain(String(TINY_FEATURES));
    expect((error as Error).message).toContain('999');
  });

  it('keeps a preset’s feature length, and drops it once its layer or input size is overridden', () => {
    expect(resolveModel({ ref: 'mobilenet_v2_offline' }).featureDim).toBe(1280);
    expect(resolveModel({ ref: 'mobilenet_v2_offline', featureLayer: 'out_relu' }).featureDim).toBeUndefined();
    expect(resolveModel({ ref: 'mobilenet_v2_offline', inputSize: 160 }).featureDim).toBeUndefined();
  });
});
