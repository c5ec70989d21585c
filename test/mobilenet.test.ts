import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs';
import { initTf, type TfRuntime } from '../runtime/model/backend';
import { readModelFiles } from '../runtime/model/artifacts';
import type { FeatureModel } from '../runtime/model/feature-model';
import { createTfjsFeatureModel } from '../runtime/model/tfjs-model';
import { resolveModel } from '../runtime/model/resolve';
import { generateSampleImages } from '../runtime/images/generate';
import { preprocessImage } from '../runtime/images/preprocess';
import { tempDir } from './helpers/s3';

/**
 * The real offline MobileNetV2 (preset mobilenet_v2_offline, the Keras model shipped in the nsfwjs package), end
 * to end on generated fruit images, and checked against nsfwjs's own loading path.
 */

const SIZE = 224;
const DIM = 1280;
const CLASSES = ['Apple Braeburn', 'Banana', 'Kiwi'];
const PER_CLASS = 3;
const PIXELS = SIZE * SIZE * 3;

let rt: TfRuntime;
let model: FeatureModel;
let labels: string[];
let pixels: Buffer[];
/** Features of every image from one batched predict: n × 1280. */
let features: Float32Array;

beforeAll(async () => {
  rt = await initTf('wasm');
  const dir = tempDir();
  const keys = await generateSampleImages(dir, { perClass: PER_CLASS, seed: 11, classes: CLASSES });
  labels = keys.map((key) => key.split('/')[0]);
  pixels = [];
  for (const key of keys) {
    pixels.push((await preprocessImage(fs.readFileSync(path.join(dir, key)), { size: SIZE, maxPixels: 40_000_000 })).pixels);
  }
  const preset = resolveModel({ ref: 'mobilenet_v2_offline' });
  model = await createTfjsFeatureModel(rt, preset, await readModelFiles(preset.source));
  features = await model.predict(Buffer.concat(pixels), pixels.length);
});
afterAll(() => model?.dispose());

const row = (matrix: Float32Array, i: number) => matrix.subarray(i * DIM, (i + 1) * DIM);

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let j = 0; j < a.length; j++) {
    dot += a[j] * b[j];
    na += a[j] * a[j];
    nb += b[j] * b[j];
  }
  return dot / Math.sqrt(na * nb);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

it('loads the model shipped in nsfwjs as a layers model cut at flatten_1', () => {
  expect(model.identity).toMatchObject({
    name: 'mobilenet_v2_offline',
    format: 'layers-model',
    featureLayer: 'flatten_1',
    featureDim: DIM,
    inputSize: SIZE,
    loadedFrom: 'npm:nsfwjs/dist/models/mobilenet_v2',
  });
  expect(model.identity.weightsSha256).toMatch(/^[0-9a-f]{64}$/);
});

it('gives 1280 values per image', () => {
  expect(features).toHaveLength(pixels.length * DIM);
});

it('gives finite values within [0, 6] (ReLU6 then average pooling)', () => {
  const values = Array.from(features);
  expect(values.filter((value) => !Number.isFinite(value))).toEqual([]);
  expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
  expect(Math.max(...values)).toBeLessThanOrEqual(6);
});

it('gives features that are not all equal within an image', () => {
  for (let i = 0; i < pixels.length; i++) {
    const values = row(features, i);
    expect(Math.max(...values)).toBeGreaterThan(Math.min(...values));
  }
});

it('gives the same features image by image as in one batch (within 1e-4)', async () => {
  for (let i = 0; i < pixels.length; i++) {
    expect(maxAbsDiff(await model.predict(pixels[i], 1), row(features, i))).toBeLessThan(1e-4);
  }
});

it('gives the same features as nsfwjs’s own loading path cut at flatten_1 (within 1e-4)', async () => {
  const { tf } = rt;
  // nsfwjs logs which model it uses through console.info; keep the test output clean.
  const info = console.info;
  console.info = () => {};
  let nsfw: { model: LayersModel; dispose(): void };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    nsfw = await (require('nsfwjs') as { load(name: string): Promise<typeof nsfw> }).load('MobileNetV2');
  } finally {
    console.info = info;
  }
  try {
    const full = nsfw.model;
    const cut = tf.model({ inputs: full.inputs, outputs: full.getLayer('flatten_1').output as SymbolicTensor });
    // Independent of the engine's normalisation: the same sharp-decoded bytes, divided by 255 as nsfwjs's infer() does.
    const input = new Float32Array(pixels.length * PIXELS);
    pixels.forEach((image, i) => {
      for (let j = 0; j < PIXELS; j++) input[i * PIXELS + j] = image[j] / 255;
    });
    const expected = tf.tidy(() => cut.predict(tf.tensor4d(input, [pixels.length, SIZE, SIZE, 3])) as import('@tensorflow/tfjs').Tensor);
    try {
      expect(expected.shape).toEqual([pixels.length, DIM]);
      expect(maxAbsDiff(features, await expected.data())).toBeLessThan(1e-4);
    } finally {
      expected.dispose();
    }
  } finally {
    nsfw.dispose();
  }
});

it('gives features that carry the class: mean cosine similarity within a class exceeds that across classes', () => {
  let within = 0;
  let withinCount = 0;
  let across = 0;
  let acrossCount = 0;
  for (let i = 0; i < pixels.length; i++) {
    for (let j = i + 1; j < pixels.length; j++) {
      const similarity = cosine(row(features, i), row(features, j));
      if (labels[i] === labels[j]) {
        within += similarity;
        withinCount++;
      } else {
        across += similarity;
        acrossCount++;
      }
    }
  }
  expect(withinCount).toBe(CLASSES.length * ((PER_CLASS * (PER_CLASS - 1)) / 2));
  expect(within / withinCount).toBeGreaterThan(across / acrossCount);
});
