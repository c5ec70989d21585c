import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { io } from '@tensorflow/tfjs';
import { MODEL_DOWNLOADS_OFF } from '../contracts/deployment';
import { ExitCode, OrchardError, describeError } from '../errors';
import { NotFoundError, openStorage, parseLocation, putJson, type S3Options, type Storage } from '../storage';
import { kerasH5ToModelFiles } from './keras-h5';
import type { ModelSource } from './presets';

type ModelJSON = io.ModelJSON;

/** A model's files, read into memory, plus where they really came from. */
export interface ModelFiles {
  readonly modelJson: ModelJSON;
  /** Weight files in manifest order, concatenated. */
  readonly weightData: ArrayBuffer;
  /** URI the files were read from (the cache when it was used). */
  readonly loadedFrom: string;
  /** SHA-256 of the weights: the model's identity in the manifest. */
  readonly weightsSha256: string;
}

export interface ArtifactOptions {
  /** Where copies of web models are kept (`<output bucket>/models/` or a local cache dir). */
  readonly cache?: Storage;
  readonly s3?: S3Options;
  /** Injected for tests; defaults to the global fetch. */
  readonly fetch?: typeof fetch;
  /**
   * A web model absent from the cache is an error instead of a download (the instance and the Lambda functions: the
   * deployment put the model into the bucket's models/, and nothing there may reach a model hub). Unset: off where
   * the environment says so (MODEL_DOWNLOADS_OFF, which the deployment sets).
   */
  readonly noDownload?: boolean;
}

/** Reads a model's model.json and weights from its source, caching web models so later runs need no internet. */
export async function readModelFiles(source: ModelSource, options: ArtifactOptions = {}): Promise<ModelFiles> {
  if (source.kind === 'nsfwjs') return readOfflineModel();
  if (source.kind === 'keras-h5') {
    const { bytes, loadedFrom } = await readPinnedFile(source.uri, options);
    return { ...kerasH5ToModelFiles(bytes, readOfflineModel().modelJson, loadedFrom), loadedFrom };
  }
  const { uri } = source;
  if (/^https?:\/\//i.test(uri)) {
    if (!options.cache) return fromMemoryFiles(await download(uri, options.fetch ?? fetch), uri);
    const cached = options.cache;
    const slug = cacheSlug(uri);
    const cachedModel = await readFromStorage(cached, `${slug}/model.json`).catch((error: unknown) => {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    });
    if (cachedModel) return cachedModel;
    const files = await download(uri, options.fetch ?? fetch);
    // Weights first, model.json last: a cache entry with a model.json is always complete.
    for (const [name, data] of files.weights) await cached.put(`${slug}/${name}`, data);
    await putJson(cached, `${slug}/model.json`, files.modelJson);
    return readFromStorage(cached, `${slug}/model.json`);
  }
  // An S3 URI or a local path: a model.json file or the folder holding one.
  const file = uri.endsWith('.json') ? path.posix.basename(uri) : 'model.json';
  const dir = uri.endsWith('.json') ? uri.slice(0, uri.length - file.length) : uri;
  return readFromStorage(openStorage(parseLocation(dir, '--model'), options.s3), file).catch((error: unknown) => {
    if (!(error instanceof NotFoundError)) throw error;
    throw new OrchardError(
      `No tfjs model at ${uri}: ${error.message}. Fix: give --model a preset name, or a URL, s3:// URI or folder ` +
        'holding model.json and its weight files',
      'ERR_MODEL_LOAD',
      ExitCode.Fatal,
      { cause: error },
    );
  });
}

/** Whether this process runs where the deployment turned model downloads off (the instance, the Lambda functions). */
function downloadsOffHere(): boolean {
  return process.env.ORCHARD_MODEL_DOWNLOADS === MODEL_DOWNLOADS_OFF.ORCHARD_MODEL_DOWNLOADS;
}

/** Where the SHA-256 of a pinned file is recorded: next to it, as `sha256sum` prints it. */
export const sha256Key = (key: string) => `${key}.sha256`;

/**
 * A single-file model (a Keras .h5) by URL, S3 URI or path. A web file is read from the cache when it is there, and
 * downloaded into it otherwise; its SHA-256 is recorded beside it the first time (`<file>.sha256`) and checked on
 * every later load, wherever the file is: a copy that changed is refused, never run.
 */
export async function readPinnedFile(uri: string, options: ArtifactOptions): Promise<{ bytes: Buffer; loadedFrom: string }> {
  let storage: Storage;
  let key: string;
  let download: (() => Promise<Buffer>) | undefined;
  if (/^https?:\/\//i.test(uri)) {
    if (!options.cache) return { bytes: await fetchFile(uri, options.fetch ?? fetch), loadedFrom: uri };
    [storage, key] = [options.cache, cacheSlug(uri)];
    download = (options.noDownload ?? downloadsOffHere()) ? undefined : () => fetchFile(uri, options.fetch ?? fetch);
  } else {
    key = path.posix.basename(uri);
    storage = openStorage(parseLocation(uri.slice(0, uri.length - key.length) || '.', '--model'), options.s3);
  }
  const recorded = await getIfExists(storage, sha256Key(key));
  let bytes = await getIfExists(storage, key);
  if (!bytes) {
    if (!download) {
      throw new OrchardError(
        `No model file at ${storage.uri(key)}${/^https?:/i.test(uri) ? ` (the cached copy of ${uri}; downloads are off here)` : ''}. Fix: put the file ` +
          `there (aws s3 cp <file> ${storage.uri(key)}), or give --model another preset, URL, s3:// URI or path`,
        'ERR_MODEL_LOAD',
        ExitCode.Fatal,
      );
    }
    bytes = await download().catch((error: unknown) => {
      if (!(error instanceof OrchardError)) throw error;
      throw new OrchardError(
        `${error.message}. Fix: download it where the web is reachable and put it at ${storage.uri(key)} (aws s3 cp <file> ` +
          `${storage.uri(key)}), or give --model the file's path or s3:// URI`,
        error.code,
        ExitCode.Fatal,
        { cause: error },
      );
    });
    await storage.put(key, bytes);
  }
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (recorded) {
    const pinned = recorded.toString('utf8').trim().split(/\s+/)[0];
    if (pinned !== actual) {
      throw new OrchardError(
        `${storage.uri(key)} has SHA-256 ${actual}, but ${storage.uri(sha256Key(key))} recorded ${pinned} when it was first ` +
          'fetched: the file changed, and is not run. Fix: put the original file back, or delete both to take the current one',
        'ERR_MODEL_LOAD',
        ExitCode.Fatal,
      );
    }
  } else if (download) {
    await storage.put(sha256Key(key), Buffer.from(`${actual}  ${key}\n`));
  }
  return { bytes, loadedFrom: storage.uri(key) };
}

async function getIfExists(storage: Storage, key: string): Promise<Buffer | undefined> {
  return storage.get(key).catch((error: unknown) => {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  });
}

async function fetchFile(url: string, fetchImpl: typeof fetch): Promise<Buffer> {
  const failed = (cause: string) => new OrchardError(`Cannot download ${url} (${cause})`, 'ERR_MODEL_FETCH', ExitCode.Fatal);
  let response: Response;
  try {
    response = await fetchImpl(url, { redirect: 'follow' });
  } catch (error) {
    throw failed(describeError(error));
  }
  if (!response.ok) throw failed(`HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

/** Cache folder name for a web model: readable and unique per URL. */
export function cacheSlug(url: string): string {
  const u = new URL(url);
  return `${u.host}${u.pathname}`.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '');
}

async function readFromStorage(storage: Storage, file: string): Promise<ModelFiles> {
  const modelJson = JSON.parse((await storage.get(file)).toString('utf8')) as ModelJSON;
  const base = path.posix.dirname(file) === '.' ? '' : `${path.posix.dirname(file)}/`;
  const buffers: Buffer[] = [];
  for (const group of modelJson.weightsManifest ?? []) {
    for (const weightPath of group.paths) buffers.push(await storage.get(base + weightPath));
  }
  return withWeights(modelJson, Buffer.concat(buffers), storage.uri(file));
}

interface DownloadedModel {
  readonly modelJson: ModelJSON;
  readonly weights: [string, Buffer][];
}

/**
 * Downloads a tfjs model over HTTP(S). TF Hub handles follow tfjs's own `fromTFHub` convention:
 * `<handle>/model.json?tfjs-format=file`, weights with the same query.
 */
async function download(url: string, fetchImpl: typeof fetch): Promise<DownloadedModel> {
  const tfhub = /(^|\.)tfhub\.dev$/i.test(new URL(url).host);
  const query = tfhub ? '?tfjs-format=file' : '';
  const modelUrl = new URL(url).pathname.endsWith('.json') ? `${url}${query}` : `${url.replace(/\/+$/, '')}/model.json${query}`;
  const get = async (target: string): Promise<Buffer> => {
    let response: Response;
    try {
      response = await fetchImpl(target, { redirect: 'follow' });
    } catch (error) {
      throw modelFetchError(url, describeError(error));
    }
    if (!response.ok) throw modelFetchError(url, `HTTP ${response.status} for ${target}`);
    return Buffer.from(await response.arrayBuffer());
  };
  const modelJson = JSON.parse((await get(modelUrl)).toString('utf8')) as ModelJSON;
  const weights: [string, Buffer][] = [];
  for (const group of modelJson.weightsManifest ?? []) {
    for (const weightPath of group.paths) weights.push([weightPath, await get(new URL(weightPath, modelUrl).href + query)]);
  }
  return { modelJson, weights };
}

function modelFetchError(url: string, cause: string): OrchardError {
  return new OrchardError(
    `Cannot download the model from ${url} (${cause}). Fix: give --model <url|s3 uri|dir> pointing to a reachable ` +
      'copy of a tfjs model, or run once where the internet is reachable so that the model cache keeps it (to try ' +
      'orchard without either: --model mobilenet_v2_offline, the MobileNetV2 shipped in an npm package)',
    'ERR_MODEL_FETCH',
    ExitCode.Fatal,
  );
}

function fromMemoryFiles(files: DownloadedModel, uri: string): ModelFiles {
  return withWeights(files.modelJson, Buffer.concat(files.weights.map(([, data]) => data)), uri);
}

function withWeights(modelJson: ModelJSON, weights: Buffer, loadedFrom: string): ModelFiles {
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer;
  return { modelJson, weightData, loadedFrom, weightsSha256: createHash('sha256').update(weights).digest('hex') };
}

/** Where both bundles carry the offline model, next to their entry file: a tfjs model.json and one weights file. */
export const OFFLINE_MODEL_DIR = path.join('models', 'mobilenet_v2_offline');

/**
 * The offline model (nsfwjs's Keras MobileNetV2): from the bundle's own models/ folder when it runs from a bundle,
 * else from the nsfwjs npm package (a clone of the repository).
 */
function readOfflineModel(): ModelFiles {
  const shipped = path.join(__dirname, OFFLINE_MODEL_DIR);
  if (fs.existsSync(path.join(shipped, 'model.json'))) {
    const modelJson = JSON.parse(fs.readFileSync(path.join(shipped, 'model.json'), 'utf8')) as ModelJSON;
    const paths = (modelJson.weightsManifest ?? []).flatMap((group) => group.paths);
    return withWeights(modelJson, Buffer.concat(paths.map((file) => fs.readFileSync(path.join(shipped, file)))), `bundle:${OFFLINE_MODEL_DIR.split(path.sep).join('/')}`);
  }
  const { modelJson, weights } = nsfwjsModelFolder();
  return withWeights(modelJson, weights, 'npm:nsfwjs/dist/models/mobilenet_v2');
}

/**
 * The nsfwjs package ships its Keras MobileNetV2 as two UMD modules (topology + base64 weights) under
 * dist/models/, outside its `exports` map, so they are required by absolute path. Returned as a plain tfjs model
 * folder (model.json naming one weights file), which is what the bundles carry instead of the whole package.
 */
export function nsfwjsModelFolder(): { modelJson: ModelJSON; weightsFile: string; weights: Buffer } {
  let distDir: string;
  try {
    distDir = path.resolve(path.dirname(require.resolve('nsfwjs')), '..');
  } catch (error) {
    throw new OrchardError(
      `The mobilenet_v2_offline model is neither next to this orchard (${OFFLINE_MODEL_DIR}) nor in an installed nsfwjs ` +
        `npm package (${describeError(error)}). Fix: use --model mobilenet_v2 or a model URL, s3:// URI or folder; in a ` +
        'clone of the repository, run npm ci',
      'ERR_MODEL_LOAD',
    );
  }
  const dir = path.join(distDir, 'models', 'mobilenet_v2');
  const module = require(path.join(dir, 'model.min.js')) as ModelJSON;
  const buffers = (module.weightsManifest ?? []).flatMap((group) =>
    group.paths.map((shard) => {
      const exported = require(path.join(dir, `${shard}.min.js`)) as string | { default: string };
      return Buffer.from(typeof exported === 'string' ? exported : exported.default, 'base64');
    }),
  );
  const weightsFile = 'weights.bin';
  const weightsManifest = [{ paths: [weightsFile], weights: (module.weightsManifest ?? []).flatMap((group) => group.weights) }];
  return { modelJson: { modelTopology: module.modelTopology, weightsManifest, format: 'layers-model' }, weightsFile, weights: Buffer.concat(buffers) };
}
