import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { io } from '@tensorflow/tfjs';
import { ExitCode, OrchardError, describeError } from '../errors';
import { NotFoundError, openStorage, parseLocation, putJson, type S3Options, type Storage } from '../storage';
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
}

/** Reads a model's model.json and weights from its source, caching web models so later runs need no internet. */
export async function readModelFiles(source: ModelSource, options: ArtifactOptions = {}): Promise<ModelFiles> {
  if (source.kind === 'nsfwjs') return readNsfwjsModel(source.model);
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

/**
 * The nsfwjs package ships its Keras MobileNetV2 as two UMD modules (topology + base64 weights) under
 * dist/models/, outside its `exports` map, so they are required by absolute path.
 */
function readNsfwjsModel(model: string): ModelFiles {
  let distDir: string;
  try {
    distDir = path.resolve(path.dirname(require.resolve('nsfwjs')), '..');
  } catch (error) {
    // The instance bundle leaves nsfwjs (41 MB) out on purpose: only this preset needs it.
    throw new OrchardError(
      `The mobilenet_v2_offline model is read from the nsfwjs npm package, which is not installed next to this ` +
        `orchard (${describeError(error)}). Fix: use --model mobilenet_v2 or a model URL, s3:// URI or folder; ` +
        'in a clone of the repository, run npm ci',
      'ERR_MODEL_LOAD',
    );
  }
  const dir = path.join(distDir, 'models', model);
  const modelJson = require(path.join(dir, 'model.min.js')) as ModelJSON;
  const buffers = (modelJson.weightsManifest ?? []).flatMap((group) =>
    group.paths.map((shard) => {
      const exported = require(path.join(dir, `${shard}.min.js`)) as string | { default: string };
      return Buffer.from(typeof exported === 'string' ? exported : exported.default, 'base64');
    }),
  );
  return withWeights(modelJson, Buffer.concat(buffers), `npm:nsfwjs/dist/models/${model}`);
}
