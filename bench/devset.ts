/**
 * `npm run bench:devset -- --images <dir>`: do the features stay the features? On a folder of real photos in
 * class folders (the project's dev set: 13 classes x 40 Fruits-360 JPEGs), the features of today's
 * preprocessing (the plain-JPEG fast path, then sharp for the rest) against those of the previous one (sharp for
 * every image): their mean cosine, and for each the 5-fold 1-NN accuracy of the labels from the PCA rows at the
 * chosen variance (scikit-learn's cross_val_score(KNeighborsClassifier(1), X, y, cv=5), reimplemented below).
 * On the onnx engine also the features with small images enlarged inside the engine, as the pipeline sends them
 * (images/enlarge-graph.ts), against those enlarged in JavaScript.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { positiveInt } from '../runtime/cli-args';
import { preprocessImage, preprocessWithSharp, type PreprocessOptions, type PreprocessedImage } from '../runtime/images/preprocess';
import { enlargeBilinear } from '../runtime/images/upscale';
import { readModelFiles } from '../runtime/model/artifacts';
import { loadEngine } from '../runtime/model/engine';
import type { FeatureModel } from '../runtime/model/feature-model';
import { PRESETS } from '../runtime/model/presets';
import { fitPca } from '../runtime/pca/fit';
import { projectRows } from '../runtime/pca/project';
import { DEFAULTS, defaultThreads } from '../runtime/pipeline/config';
import { momentsOf } from '../runtime/stats/moments';
import { log } from './child';
import { listDevset } from './int8';

type Preprocess = (data: Buffer, options: PreprocessOptions) => Promise<PreprocessedImage>;

async function features(model: FeatureModel, images: readonly Buffer[], preprocess: Preprocess, batchSize: number): Promise<Float32Array> {
  const { featureDim: dim, inputSize: size } = model.identity;
  const perImage = size * size * 3;
  const out = new Float32Array(images.length * dim);
  const batch = new Uint8Array(batchSize * perImage);
  for (let start = 0; start < images.length; start += batchSize) {
    const count = Math.min(batchSize, images.length - start);
    for (let i = 0; i < count; i++) batch.set((await preprocess(images[start + i]!, { size, maxPixels: DEFAULTS.maxPixels })).pixels, i * perImage);
    out.set(await model.predict(batch, count), start * dim);
  }
  return out;
}

/**
 * The features as the pipeline computes them on an engine that enlarges (predictEnlarged): a batch whose images
 * are all small and of one size goes un-enlarged (the dev set's 100×100 photos all do); any other is enlarged here.
 */
async function enlargedInEngine(model: FeatureModel, images: readonly Buffer[], batchSize: number): Promise<Float32Array> {
  const { featureDim: dim, inputSize: size } = model.identity;
  const out = new Float32Array(images.length * dim);
  for (let start = 0; start < images.length; start += batchSize) {
    const count = Math.min(batchSize, images.length - start);
    const batch = await Promise.all(images.slice(start, start + count).map((image) => preprocessImage(image, { size, maxPixels: DEFAULTS.maxPixels, enlarge: false })));
    const [first] = batch;
    if (batch.every((image) => image.ownSize && image.width === first!.width && image.height === first!.height)) {
      const pixels = new Uint8Array(count * first!.pixels.length);
      batch.forEach((image, i) => pixels.set(image.pixels, i * image.pixels.length));
      out.set((await model.predictEnlarged!(pixels, count, first!.height, first!.width)).features, start * dim);
    } else {
      const pixels = new Uint8Array(count * size * size * 3);
      batch.forEach((image, i) => {
        if (image.ownSize) enlargeBilinear(image.pixels, image.width, image.height, size, pixels, i * size * size * 3);
        else pixels.set(image.pixels, i * size * size * 3);
      });
      out.set(await model.predict(pixels, count), start * dim);
    }
  }
  return out;
}

function meanCosine(a: Float32Array, b: Float32Array, n: number, dim: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let j = i * dim; j < (i + 1) * dim; j++) {
      ab += a[j]! * b[j]!;
      aa += a[j]! * a[j]!;
      bb += b[j]! * b[j]!;
    }
    sum += aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
  }
  return sum / n;
}

/**
 * scikit-learn's StratifiedKFold(n_splits, shuffle=False) test folds: classes numbered by first appearance, the
 * sorted labels dealt round-robin to the folds, each class's rows then taking its folds' slots in order.
 */
export function stratifiedFolds(labels: readonly string[], splits: number): Int32Array {
  const order = new Map<string, number>();
  for (const label of labels) if (!order.has(label)) order.set(label, order.size);
  const encoded = labels.map((label) => order.get(label)!);
  const sorted = [...encoded].sort((a, b) => a - b);
  const allocation = Array.from({ length: splits }, () => new Array<number>(order.size).fill(0));
  sorted.forEach((cls, i) => (allocation[i % splits]![cls]! += 1));
  const folds = new Int32Array(labels.length);
  for (let cls = 0; cls < order.size; cls++) {
    const slots = allocation.flatMap((counts, fold) => new Array<number>(counts[cls]!).fill(fold));
    let next = 0;
    encoded.forEach((c, i) => {
      if (c === cls) folds[i] = slots[next++]!;
    });
  }
  return folds;
}

/** Mean over the folds of the 1-nearest-neighbour accuracy (Euclidean; the first of equally near rows wins). */
export function oneNnAccuracy(rows: Float32Array, labels: readonly string[], dim: number, splits = 5): number {
  const folds = stratifiedFolds(labels, splits);
  let total = 0;
  for (let fold = 0; fold < splits; fold++) {
    let right = 0;
    let count = 0;
    for (let i = 0; i < labels.length; i++) {
      if (folds[i] !== fold) continue;
      let best = Infinity;
      let bestLabel = '';
      for (let j = 0; j < labels.length; j++) {
        if (folds[j] === fold) continue;
        let d = 0;
        for (let c = 0; c < dim; c++) {
          const diff = rows[i * dim + c]! - rows[j * dim + c]!;
          d += diff * diff;
        }
        if (d < best) {
          best = d;
          bestLabel = labels[j]!;
        }
      }
      count += 1;
      if (bestLabel === labels[i]) right += 1;
    }
    total += right / count;
  }
  return total / splits;
}

function pcaAccuracy(rows: Float32Array, labels: readonly string[], dim: number, variance: number): { k: number; accuracy: number } {
  const model = fitPca(momentsOf(rows, labels.length, dim), { kind: 'variance', fraction: variance });
  const projected = projectRows(rows, labels.length, model);
  return { k: model.nComponents, accuracy: oneNnAccuracy(projected, labels, model.nComponents) };
}

async function main(): Promise<void> {
  const program = new Command('npm run bench:devset --')
    .description('Features of the current preprocessing against sharp-only preprocessing on a folder of labelled photos')
    .requiredOption('--images <dir>', 'folder of class folders of images (e.g. ../shared/devset/images)')
    .option('--model <name>', 'model preset', 'mobilenet_v2_offline')
    .option('--variance <fraction>', 'explained variance of the PCA', Number, 0.95)
    .option('--threads <n>', 'ONNX Runtime threads', positiveInt('--threads'), defaultThreads())
    .showHelpAfterError();
  program.parse(process.argv.slice(2).filter((arg) => arg !== '--'), { from: 'user' });
  const o = program.opts<{ images: string; model: string; variance: number; threads: number }>();
  const preset = PRESETS[o.model];
  if (!preset) throw new Error(`unknown model preset ${o.model}: one of ${Object.keys(PRESETS).join(', ')}`);
  const { files, labels } = listDevset(path.resolve(o.images));
  if (files.length < 10) throw new Error(`${o.images}: expected class folders of images, found ${files.length} images`);
  const images = files.map((file) => fs.readFileSync(file));
  const batchSize = DEFAULTS.batchSize;
  const { model } = await loadEngine(preset, await readModelFiles(preset.source), { engine: 'auto', backend: 'auto', threads: o.threads, batchSize, warn: () => undefined });
  try {
    log(`${images.length} images in ${new Set(labels).size} classes; model ${o.model} on ${model.engine.name}`);
    const dim = model.identity.featureDim;
    const previous = await features(model, images, preprocessWithSharp, batchSize);
    const current = await features(model, images, preprocessImage, batchSize);
    const before = pcaAccuracy(previous, labels, dim, o.variance);
    const after = pcaAccuracy(current, labels, dim, o.variance);
    const result = {
      images: images.length,
      mean_cosine: meanCosine(current, previous, images.length, dim),
      previous: { k: before.k, one_nn_accuracy_5fold: before.accuracy },
      current: { k: after.k, one_nn_accuracy_5fold: after.accuracy },
    };
    console.log(`mean cosine (current vs previous features): ${result.mean_cosine.toFixed(6)}`);
    console.log(`5-fold 1-NN accuracy at ${o.variance} variance: previous ${before.accuracy.toFixed(4)} (k=${before.k}), current ${after.accuracy.toFixed(4)} (k=${after.k})`);
    let inEngine: { mean_cosine_to_current: number; identical_values: number; k: number; one_nn_accuracy_5fold: number } | undefined;
    if (model.predictEnlarged) {
      const engine = await enlargedInEngine(model, images, batchSize);
      const accuracy = pcaAccuracy(engine, labels, dim, o.variance);
      const identical = engine.reduce((same, value, i) => same + (Object.is(value, current[i]) ? 1 : 0), 0);
      inEngine = { mean_cosine_to_current: meanCosine(engine, current, images.length, dim), identical_values: identical, k: accuracy.k, one_nn_accuracy_5fold: accuracy.accuracy };
      console.log(
        `enlarged in the engine: mean cosine to current ${inEngine.mean_cosine_to_current.toFixed(6)} (${identical} of ${engine.length} values bit-identical), ` +
          `mean cosine to previous ${meanCosine(engine, previous, images.length, dim).toFixed(6)}, 5-fold 1-NN accuracy ${accuracy.accuracy.toFixed(4)} (k=${accuracy.k})`,
      );
    }
    console.log(JSON.stringify({ ...result, ...(inEngine ? { in_engine: inEngine } : {}) }));
  } finally {
    model.dispose();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
