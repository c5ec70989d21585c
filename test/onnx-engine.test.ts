/**
 * The ONNX engine computes the features the TensorFlow.js engine computes, from the same weights: the offline
 * MobileNetV2 (a Keras layers model), a TF graph model shaped like the TF Hub preset, and layer shapes chosen
 * to exercise TensorFlow's padding rules. Anything the compiler does not know is refused by name.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { generateSampleImages } from '../runtime/images/generate';
import { preprocessImage } from '../runtime/images/preprocess';
import { readModelFiles, type ModelFiles } from '../runtime/model/artifacts';
import { initTf, type TfRuntime } from '../runtime/model/backend';
import { loadEngine } from '../runtime/model/engine';
import type { FeatureModel } from '../runtime/model/feature-model';
import { PRESETS, SIGNED_RANGE, UNIT_RANGE, type Normalization, type ModelPreset } from '../runtime/model/presets';
import { createTfjsFeatureModel } from '../runtime/model/tfjs-model';
import { loadOrCompileGraph } from '../runtime/model/to-onnx/cache';
import { compileToOnnx } from '../runtime/model/to-onnx/compile';
import { UnsupportedModelError } from '../runtime/model/to-onnx/network';
import { OrchardError } from '../runtime/errors';
import { LocalStorage } from '../runtime/storage';
import { DEFAULTS } from '../runtime/pipeline/config';
import { GRAPH_FEATURES, GRAPH_INPUT, saveGraphModel } from './helpers/graph-model';
import { tempDir } from './helpers/s3';

const IMAGES = 64;
let rt: TfRuntime;
let photos: Buffer[];

beforeAll(async () => {
  rt = await initTf('wasm');
  const dir = tempDir();
  const keys = await generateSampleImages(dir, { perClass: IMAGES / 8, seed: 5 });
  photos = keys.map((key) => fs.readFileSync(path.join(dir, key)));
});

/** The photos preprocessed for a model's input size, as one NHWC batch of bytes. */
async function batchOf(size: number): Promise<Uint8Array> {
  const out = new Uint8Array(photos.length * size * size * 3);
  for (const [i, photo] of photos.entries()) {
    const image = await preprocessImage(photo, { size, maxPixels: DEFAULTS.maxPixels });
    out.set(image.pixels, i * size * size * 3);
  }
  return out;
}

async function predictAll(model: FeatureModel, input: Uint8Array, n: number, batch = 8): Promise<Float32Array> {
  const size = model.identity.inputSize;
  const perImage = size * size * 3;
  const out = new Float32Array(n * model.identity.featureDim);
  for (let start = 0; start < n; start += batch) {
    const count = Math.min(batch, n - start);
    out.set(await model.predict(input.subarray(start * perImage, (start + count) * perImage), count), start * model.identity.featureDim);
  }
  return out;
}

/** Largest absolute difference and mean cosine similarity of two sets of n feature rows. */
function agreement(a: Float32Array, b: Float32Array, n: number): { maxAbs: number; meanCosine: number } {
  const dim = a.length / n;
  let maxAbs = 0;
  let cosines = 0;
  for (let r = 0; r < n; r++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let j = 0; j < dim; j++) {
      const x = a[r * dim + j]!;
      const y = b[r * dim + j]!;
      maxAbs = Math.max(maxAbs, Math.abs(x - y));
      dot += x * y;
      na += x * x;
      nb += y * y;
    }
    cosines += na === 0 && nb === 0 ? 1 : dot / Math.sqrt(na * nb);
  }
  return { maxAbs, meanCosine: cosines / n };
}

async function bothEngines(preset: ModelPreset, files: ModelFiles) {
  const warnings: string[] = [];
  const options = { backend: 'wasm', threads: 2, batchSize: 8, warn: (m: string) => warnings.push(m), tf: rt } as const;
  const onnx = (await loadEngine(preset, files, { ...options, engine: 'onnx' })).model;
  const tfjs = (await loadEngine(preset, files, { ...options, engine: 'tfjs' })).model;
  expect(warnings).toEqual([]);
  return { onnx, tfjs };
}

describe('mobilenet_v2_offline (Keras layers model, 157 layers to flatten_1)', () => {
  let onnx: FeatureModel;
  let tfjs: FeatureModel;
  let result: { maxAbs: number; meanCosine: number };

  beforeAll(async () => {
    const preset = PRESETS.mobilenet_v2_offline!;
    ({ onnx, tfjs } = await bothEngines(preset, await readModelFiles(preset.source)));
    const input = await batchOf(224);
    result = agreement(await predictAll(onnx, input, IMAGES), await predictAll(tfjs, input, IMAGES), IMAGES);
    console.log(`mobilenet_v2_offline over ${IMAGES} images: max abs difference ${result.maxAbs.toExponential(2)}, mean cosine ${result.meanCosine.toFixed(9)}`);
  });
  afterAll(() => {
    onnx?.dispose();
    tfjs?.dispose();
  });

  test(`gives the tfjs engine's 1280 features on ${IMAGES} photos: max abs difference ≤ 1e-3, mean cosine ≥ 0.9999`, () => {
    expect(onnx.identity.featureDim).toBe(1280);
    expect(result.maxAbs).toBeLessThanOrEqual(1e-3);
    expect(result.meanCosine).toBeGreaterThanOrEqual(0.9999);
  });

  test('says which engine ran: onnx, its version, threads, batch size and the graph', () => {
    expect(onnx.engine).toMatchObject({ name: 'onnx', version: require('onnxruntime-node/package.json').version, threads: 2, batchSize: 8 });
    expect(onnx.engine.graph?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(tfjs.engine).toMatchObject({ name: 'tfjs', backend: 'wasm', threads: 1, batchSize: 8 });
    expect(onnx.identity).toEqual(tfjs.identity);
  });
});

describe('a TF graph model (the TF Hub preset\'s format): fused convolutions, batch norm, residual, pad, mean', () => {
  let onnx: FeatureModel;
  let tfjs: FeatureModel;
  let result: { maxAbs: number; meanCosine: number };
  // Inputs in [-1, 1], as Keras applications take them: the graph's own input scaling is on top of it.
  const preset: ModelPreset = { name: 'graph', description: 'test graph', source: { kind: 'uri', uri: '' }, inputSize: GRAPH_INPUT, normalization: SIGNED_RANGE };

  beforeAll(async () => {
    const dir = tempDir();
    await saveGraphModel(new LocalStorage(dir));
    const files = await readModelFiles({ kind: 'uri', uri: dir });
    ({ onnx, tfjs } = await bothEngines(preset, files));
    const input = await batchOf(GRAPH_INPUT);
    result = agreement(await predictAll(onnx, input, IMAGES), await predictAll(tfjs, input, IMAGES), IMAGES);
    console.log(`graph model over ${IMAGES} images: max abs difference ${result.maxAbs.toExponential(2)}, mean cosine ${result.meanCosine.toFixed(9)}`);
  });
  afterAll(() => {
    onnx?.dispose();
    tfjs?.dispose();
  });

  test(`gives the tfjs engine's ${GRAPH_FEATURES} features on ${IMAGES} photos: max abs difference ≤ 1e-3, mean cosine ≥ 0.9999`, () => {
    expect(onnx.identity).toMatchObject({ format: 'graph-model', featureDim: GRAPH_FEATURES });
    expect(result.maxAbs).toBeLessThanOrEqual(1e-3);
    expect(result.meanCosine).toBeGreaterThanOrEqual(0.9999);
  });

  test('refuses an op it does not know, naming the op and its node', async () => {
    const dir = tempDir();
    await saveGraphModel(new LocalStorage(dir), '', { extraOp: 'Softplus' });
    const files = await readModelFiles({ kind: 'uri', uri: dir });
    const error = await Promise.resolve()
      .then(async () => compileToOnnx(rt.tf, files, { inputSize: GRAPH_INPUT, normalization: UNIT_RANGE }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsupportedModelError);
    expect((error as UnsupportedModelError).op).toBe('Softplus');
    expect((error as Error).message).toMatch(/^Softplus: node 'block_2\/Softplus' \(supported ops: Placeholder, Const, /);
  });
});

/** Saves a tfjs layers model (built by `build`) into a temp folder as model.json + weights, as tfjs writes them. */
async function saveLayersModel(build: (tf: TfRuntime['tf']) => import('@tensorflow/tfjs').LayersModel): Promise<ModelFiles> {
  const { tf } = rt;
  const model = build(tf);
  // Batch norms start as the identity (mean 0, variance 1): give them statistics so that folding is tested.
  let seed = 1;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    layer.setWeights(layer.getWeights().map((w, i) => tf.randomUniform(w.shape, i === 3 ? 0.5 : -0.5, 1.5, 'float32', seed++)));
  }
  const dir = tempDir();
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(artifacts.weightData as ArrayBuffer));
      fs.writeFileSync(
        path.join(dir, 'model.json'),
        JSON.stringify({ format: 'layers-model', modelTopology: artifacts.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }] }),
      );
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  return readModelFiles({ kind: 'uri', uri: dir });
}

const glorot = (tf: TfRuntime['tf'], seed: number) => tf.initializers.glorotUniform({ seed });
type Sym = import('@tensorflow/tfjs').SymbolicTensor;

describe('layer shapes that exercise TensorFlow\'s rules (layers models built with tfjs)', () => {
  const cases: [string, number, string | undefined, (tf: TfRuntime['tf']) => import('@tensorflow/tfjs').LayersModel][] = [
    [
      "'same' stride-2 convolutions on odd sizes, dilation, depthwise ×2, batch norm after an activation, Concatenate, Multiply",
      31,
      'features',
      (tf) => {
        const input = tf.input({ shape: [31, 31, 3] });
        const a = tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', kernelInitializer: glorot(tf, 1), biasInitializer: 'ones' }).apply(input) as Sym;
        const b = tf.layers.reLU({ maxValue: 6 }).apply(a) as Sym;
        const c = tf.layers.batchNormalization().apply(b) as Sym;
        const d = tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', depthwiseInitializer: glorot(tf, 2) }).apply(c) as Sym;
        const e = tf.layers.conv2d({ filters: 12, kernelSize: 3, dilationRate: 2, padding: 'same', kernelInitializer: glorot(tf, 3) }).apply(c) as Sym;
        const f = tf.layers.multiply().apply([d, e]) as Sym;
        const g = tf.layers.concatenate().apply([f, e]) as Sym;
        const h = tf.layers.leakyReLU({ alpha: 0.1 }).apply(g) as Sym;
        const pooled = tf.layers.globalAveragePooling2d({ name: 'features' }).apply(h) as Sym;
        return tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2 }).apply(pooled) as Sym });
      },
    ],
    [
      "ZeroPadding2D before 'same' average pooling (padding counted, then left out of the mean), flatten in NHWC order",
      20,
      'flat',
      (tf) => {
        const input = tf.input({ shape: [20, 20, 3] });
        const a = tf.layers.conv2d({ filters: 4, kernelSize: 5, strides: 2, activation: 'tanh', kernelInitializer: glorot(tf, 4) }).apply(input) as Sym;
        const b = tf.layers.zeroPadding2d({ padding: [[1, 2], [0, 1]] }).apply(a) as Sym;
        const c = tf.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same' }).apply(b) as Sym;
        const d = tf.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(c) as Sym;
        return tf.model({ inputs: input, outputs: tf.layers.flatten({ name: 'flat' }).apply(d) as Sym });
      },
    ],
    [
      'a ResNet stem: ReLU, ZeroPadding2D, max pooling 3×3 stride 2 (ONNX Runtime folds the pad: exact on non-negative inputs)',
      24,
      'features',
      (tf) => {
        const input = tf.input({ shape: [24, 24, 3] });
        const a = tf.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: glorot(tf, 8), biasInitializer: 'ones' }).apply(input) as Sym;
        const b = tf.layers.zeroPadding2d({ padding: [[1, 1], [1, 1]] }).apply(a) as Sym;
        const c = tf.layers.maxPooling2d({ poolSize: 3, strides: 2 }).apply(b) as Sym;
        return tf.model({ inputs: input, outputs: tf.layers.globalAveragePooling2d({ name: 'features' }).apply(c) as Sym });
      },
    ],
    [
      'a Sequential model: conv with sigmoid, ZeroPadding2D into a valid stride-2 conv, batch norm folded, elu, dense features',
      16,
      undefined,
      (tf) =>
        tf.sequential({
          layers: [
            tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 5, kernelSize: 3, activation: 'sigmoid', kernelInitializer: glorot(tf, 5) }),
            tf.layers.zeroPadding2d({ padding: [[0, 1], [0, 1]] }),
            tf.layers.conv2d({ filters: 7, kernelSize: 3, strides: 2, useBias: false, kernelInitializer: glorot(tf, 6) }),
            tf.layers.batchNormalization(),
            tf.layers.activation({ activation: 'elu' }),
            tf.layers.flatten(),
            tf.layers.dense({ units: 9, activation: 'relu', kernelInitializer: glorot(tf, 7) }),
          ],
        }),
    ],
  ];

  test.each(cases)('%s', async (_name, size, featureLayer, build) => {
    const files = await saveLayersModel(build);
    const preset: ModelPreset = { name: 'case', description: '', source: { kind: 'uri', uri: '' }, inputSize: size, normalization: UNIT_RANGE, featureLayer };
    const { onnx, tfjs } = await bothEngines(preset, files);
    const input = await batchOf(size);
    const n = 16;
    const [a, b] = [await predictAll(onnx, input, n), await predictAll(tfjs, input, n)];
    expect(a.some((v) => v !== 0)).toBe(true);
    const { maxAbs, meanCosine } = agreement(a, b, n);
    expect(maxAbs).toBeLessThanOrEqual(1e-4);
    expect(meanCosine).toBeGreaterThanOrEqual(0.99999);
    onnx.dispose();
    tfjs.dispose();
  });

  test('refuses zero padding before max pooling of values that may be negative (ONNX Runtime would pool the padding as -inf)', async () => {
    const files = await saveLayersModel((tf) =>
      tf.sequential({
        layers: [
          tf.layers.conv2d({ inputShape: [12, 12, 3], filters: 2, kernelSize: 3, activation: 'tanh' }),
          tf.layers.zeroPadding2d({ padding: 1 }),
          tf.layers.maxPooling2d({ poolSize: 3, strides: 2, name: 'pool' }),
          tf.layers.globalAveragePooling2d({}),
        ],
      }),
    );
    expect(() => compileToOnnx(rt.tf, files, { inputSize: 12, normalization: UNIT_RANGE })).toThrow(/^MaxPool after zero padding: pool: its input may be negative/);
  });

  test('refuses a layer class it does not know, naming the class and the layer', async () => {
    const files = await saveLayersModel((tf) =>
      tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 2, kernelSize: 3 }), tf.layers.upSampling2d({ name: 'grow' }), tf.layers.globalAveragePooling2d({})] }),
    );
    const error = (() => {
      try {
        return compileToOnnx(rt.tf, files, { inputSize: 8, normalization: UNIT_RANGE });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(UnsupportedModelError);
    expect((error as UnsupportedModelError).op).toBe('UpSampling2D');
    expect((error as Error).message).toMatch(/^UpSampling2D: layer 'grow' \(supported layers: InputLayer, /);
  });
});

describe('engine choice', () => {
  let unsupported: ModelFiles;
  const preset: ModelPreset = { name: 'odd', description: '', source: { kind: 'uri', uri: '' }, inputSize: 8, normalization: UNIT_RANGE };
  beforeAll(async () => {
    unsupported = await saveLayersModel((tf) =>
      tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 2, kernelSize: 3 }), tf.layers.upSampling2d({ name: 'grow' }), tf.layers.globalAveragePooling2d({})] }),
    );
  });

  test('auto falls back to TensorFlow.js with one warning naming the op, and records why', async () => {
    const warnings: string[] = [];
    const { model } = await loadEngine(preset, unsupported, { engine: 'auto', backend: 'wasm', threads: 2, batchSize: 2, warn: (m) => warnings.push(m), tf: rt });
    expect(model.engine.name).toBe('tfjs');
    expect(warnings).toEqual([expect.stringMatching(/^engine: ONNX Runtime cannot run odd \(unsupported UpSampling2D: layer 'grow' .*\); running it on TensorFlow\.js instead$/)]);
    expect(model.engine.fallback).toMatch(/^unsupported UpSampling2D/);
    model.dispose();
  });

  test('onnx stops with an error naming the op and the way out', async () => {
    const error = await loadEngine(preset, unsupported, { engine: 'onnx', backend: 'wasm', threads: 2, batchSize: 2, warn: () => undefined, tf: rt }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OrchardError);
    expect(error).toMatchObject({ code: 'ERR_ENGINE', exitCode: 1 });
    expect((error as Error).message).toMatch(/^--engine onnx cannot run odd: unsupported UpSampling2D: layer 'grow' .*Fix: use --engine tfjs \(or auto\)$/);
  });
});

describe('the compiled-graph cache', () => {
  test('compiles once, then reads the graph back; a damaged copy is compiled again and replaced', async () => {
    const preset = PRESETS.mobilenet_v2_offline!;
    const files = await readModelFiles(preset.source);
    const cache = new LocalStorage(tempDir());
    const options = { inputSize: 224, normalization: UNIT_RANGE, featureLayer: 'flatten_1' };
    const tf = async () => rt.tf;
    const first = await loadOrCompileGraph(tf, files, options, cache);
    const second = await loadOrCompileGraph(tf, files, options, cache);
    expect([first.cached, second.cached]).toEqual([false, true]);
    expect(second.graph.sha256).toBe(first.graph.sha256);
    expect(Buffer.from(second.graph.bytes).equals(Buffer.from(first.graph.bytes))).toBe(true);

    const keys: string[] = [];
    for await (const object of cache.list()) keys.push(object.key);
    const graphKey = keys.find((key) => key.endsWith('.onnx'))!;
    expect(graphKey).toBe(`onnx/${files.weightsSha256}/v1-224-flatten_1-${graphKey.slice(-13, -5)}.onnx`);
    await cache.put(graphKey, Buffer.from('not a graph'));
    const third = await loadOrCompileGraph(tf, files, options, cache);
    expect(third.cached).toBe(false);
    expect(third.graph.sha256).toBe(first.graph.sha256);
    expect((await cache.get(graphKey)).length).toBe(first.graph.bytes.length);
  });

  test('gives the same bytes for the same weights (the graph is a pure function of them)', () => {
    const files = readModelFiles(PRESETS.mobilenet_v2_offline!.source);
    return files.then((f) => {
      const a = compileToOnnx(rt.tf, f, { inputSize: 224, normalization: UNIT_RANGE, featureLayer: 'flatten_1' });
      const b = compileToOnnx(rt.tf, f, { inputSize: 224, normalization: UNIT_RANGE, featureLayer: 'flatten_1' });
      expect(a.sha256).toBe(b.sha256);
      const c = compileToOnnx(rt.tf, f, { inputSize: 224, normalization: UNIT_RANGE, featureLayer: 'block_16_project_BN' });
      expect(c.featureDim).toBe(7 * 7 * 320);
      expect(c.sha256).not.toBe(a.sha256);
      const d = compileToOnnx(rt.tf, f, { inputSize: 224, normalization: SIGNED_RANGE, featureLayer: 'flatten_1' });
      expect(d.sha256).not.toBe(a.sha256);
    });
  });
});

describe('normalisation, done by the engine on the bytes it is given', () => {
  test.each([
    ['[0, 1]', UNIT_RANGE],
    ['[-1, 1]', SIGNED_RANGE],
  ] as [string, Normalization][])('maps byte v to v·scale + offset in %s, on both engines', async (_name, normalization) => {
    // A model whose features are the mean of each input channel: a flat image of v gives v·scale + offset.
    const files = await saveLayersModel((tf) => tf.sequential({ layers: [tf.layers.globalAveragePooling2d({ inputShape: [4, 4, 3] })] }));
    const preset: ModelPreset = { name: 'mean', description: '', source: { kind: 'uri', uri: '' }, inputSize: 4, normalization };
    const { onnx, tfjs } = await bothEngines(preset, files);
    const pixels = new Uint8Array(3 * 48);
    [0, 128, 255].forEach((v, i) => pixels.fill(v, i * 48, (i + 1) * 48));
    for (const model of [onnx, tfjs]) {
      const out = Array.from(await model.predict(pixels, 3));
      const expected = [0, 128, 255].flatMap((v) => [v, v, v].map((x) => x * normalization.scale + normalization.offset));
      out.forEach((value, i) => expect(value).toBeCloseTo(expected[i]!, 6));
      model.dispose();
    }
  });
});
