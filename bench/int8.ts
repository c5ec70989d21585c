/**
 * `npm run bench:int8 -- --devset <dir>`: the int8 graph against the float one on real photos: the bare model's
 * images/s of both (alternated, best of each, in one process), and the quality figures (cosine to fp32, nearest
 * neighbour agreement, 5-fold 1-NN accuracy of both on the PCA rows) from bench/reference.py. `npm run bench`
 * reports the same figures (the quality ones with --devset).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { preprocessImage } from '../runtime/images/preprocess';
import { readModelFiles } from '../runtime/model/artifacts';
import { tfForWeights } from '../runtime/model/backend';
import { loadEngine } from '../runtime/model/engine';
import { buildInt8Graph, type Int8Graph } from '../runtime/model/int8';
import { PRESETS, type ModelPreset } from '../runtime/model/presets';
import { loadOrCompileGraph } from '../runtime/model/to-onnx/cache';
import { detectInt8Support } from '../runtime/onnx/cpu';
import { loadOrt } from '../runtime/onnx/runtime';
import { DEFAULTS, defaultThreads } from '../runtime/pipeline/config';
import { calibrationPositions } from '../runtime/pipeline/int8-graph';
import { log } from './child';
import { measureModel, type ModelBenchOptions } from './model';
import { runReference } from './reference';
import { formatTable, type Row } from './table';

export interface Int8Quality {
  readonly images: number;
  readonly cosine_mean: number;
  readonly cosine_min: number;
  readonly nn_agreement: number;
  readonly accuracy_fp32: number;
  readonly accuracy_int8: number;
}

const decode = async (file: string, size: number) => (await preprocessImage(await fs.promises.readFile(file), { size, maxPixels: DEFAULTS.maxPixels })).pixels;

/** The int8 graph of `preset` as plan makes it: calibrated on images spread evenly over `files`, weight range from this CPU. */
export async function benchInt8Graph(preset: ModelPreset, files: readonly string[], threads: number, weightBits?: 7 | 8): Promise<Int8Graph> {
  const modelFiles = await readModelFiles(preset.source);
  const { graph } = await loadOrCompileGraph(tfForWeights, modelFiles, preset);
  const images = await Promise.all(calibrationPositions(files.length).map((i) => decode(files[i]!, preset.inputSize)));
  const support = weightBits === undefined ? detectInt8Support() : { weightBits, reason: `--weight-bits ${weightBits}` };
  return buildInt8Graph(loadOrt(), graph, images, { inputSize: preset.inputSize, threads, support });
}

/** Every file's features (rows in the files' order) from the bare model. */
async function featuresOf(files: readonly string[], preset: ModelPreset, options: ModelBenchOptions): Promise<Float32Array> {
  const { model } = await loadEngine(preset, await readModelFiles(preset.source), { ...options, warn: () => undefined });
  try {
    const dim = model.identity.featureDim;
    const perImage = preset.inputSize ** 2 * 3;
    const out = new Float32Array(files.length * dim);
    for (let start = 0; start < files.length; start += options.batchSize) {
      const batch = files.slice(start, start + options.batchSize);
      const pixels = new Uint8Array(batch.length * perImage);
      for (const [i, file] of batch.entries()) pixels.set(await decode(file, preset.inputSize), i * perImage);
      out.set(await model.predict(pixels, batch.length), start * dim);
    }
    return out;
  } finally {
    model.dispose();
  }
}

/** The dev set's images (Class/image.jpg), in key order as orchard lists them, and their classes. */
export function listDevset(dir: string): { files: string[]; labels: string[] } {
  const keys = (fs.readdirSync(dir, { recursive: true }) as string[])
    .map((key) => key.split(path.sep).join('/'))
    .filter((key) => /\.(jpe?g|png|webp)$/i.test(key))
    .sort();
  return { files: keys.map((key) => path.join(dir, key)), labels: keys.map((key) => key.split('/').slice(-2, -1)[0] ?? '') };
}

/** int8 features against fp32 on a labelled image folder; null with the reason when Python's sklearn is missing. */
export async function devsetQuality(dir: string, preset: ModelPreset, options: ModelBenchOptions, given?: Int8Graph): Promise<Int8Quality | { unavailable: string }> {
  const { files, labels } = listDevset(dir);
  const int8 = given ?? (await benchInt8Graph(preset, files, options.threads));
  const fp32 = await featuresOf(files, preset, options);
  const quantized = await featuresOf(files, preset, { ...options, engine: 'onnx', int8 });
  const scratch = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'orchard-int8-'));
  try {
    const write = async (name: string, data: Float32Array | string) => {
      const file = path.join(scratch, name);
      await fs.promises.writeFile(file, typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return file;
    };
    const result = await runReference([
      'quality',
      '--fp32', await write('fp32.f32', fp32),
      '--int8', await write('int8.f32', quantized),
      '--labels', await write('labels.txt', labels.join('\n') + '\n'),
      '--dim', String(fp32.length / files.length),
      '--threads', String(options.threads),
    ]);
    return result.ok ? (result.json as unknown as Int8Quality) : { unavailable: result.message };
  } finally {
    await fs.promises.rm(scratch, { recursive: true, force: true });
  }
}

/** The int8 rows of a bench table: speed against the float model's, measured in the same process, and quality. */
export function int8Rows(fp32ImgPerS: number, int8ImgPerS: number, info: Int8Graph['info'], quality: Int8Quality | { unavailable: string } | undefined): Row[] {
  const q = quality && !('unavailable' in quality) ? quality : undefined;
  const why = quality === undefined ? 'give --devset <dir> (labelled photos)' : q ? undefined : (quality as { unavailable: string }).unavailable;
  return [
    { name: 'int8_model_img_per_s', value: Math.round(int8ImgPerS * 10) / 10, note: `--precision int8, ${info.weightBits}-bit weights (${info.cpu})` },
    { name: 'int8_speedup', value: Math.round((int8ImgPerS / fp32ImgPerS) * 100) / 100, target: { op: '>=', limit: 1.6 }, note: 'int8 / fp32 bare predict' },
    { name: 'int8_cosine_mean', value: q?.cosine_mean ?? null, digits: 4, target: { op: '>=', limit: 0.997 }, note: why ?? `${q!.images} dev-set images, cosine to fp32` },
    { name: 'int8_cosine_min', value: q?.cosine_min ?? null, digits: 4, target: { op: '>=', limit: 0.97 } },
    { name: 'int8_nn_agreement', value: q?.nn_agreement ?? null, digits: 4, target: { op: '>=', limit: 0.8 }, note: 'same nearest neighbour as fp32' },
    { name: 'fp32_1nn_accuracy', value: q?.accuracy_fp32 ?? null, digits: 4, note: '5-fold 1-NN on the PCA rows (95 % of variance)' },
    { name: 'int8_1nn_accuracy', value: q?.accuracy_int8 ?? null, digits: 4, note: q ? `difference ${(q.accuracy_int8 - q.accuracy_fp32).toFixed(4)} (target within 0.005)` : undefined },
  ];
}

async function main(): Promise<void> {
  const program = new Command('bench:int8')
    .requiredOption('--devset <dir>', 'labelled photos (Class/image.jpg): speed and quality are measured on them')
    .option('--model <preset>', 'model preset', 'mobilenet_v2_offline')
    .option('--rounds <n>', 'alternated fp32/int8 speed measures (the best of each counts)', (v) => Number.parseInt(v, 10), 2)
    .addOption(new Option('--weight-bits <n>', 'weight range instead of the one this CPU chooses (7 measures the graph a CPU without VNNI gets)').choices(['7', '8']));
  program.parse(process.argv.slice(2).filter((arg) => arg !== '--'), { from: 'user' });
  const o = program.opts<{ devset: string; model: string; rounds: number; weightBits?: '7' | '8' }>();
  const preset = PRESETS[o.model];
  if (!preset) throw new Error(`unknown preset ${o.model}`);
  const options: ModelBenchOptions = { engine: 'onnx', backend: 'auto', threads: defaultThreads(), batchSize: DEFAULTS.batchSize };
  const { files } = listDevset(o.devset);
  const started = performance.now();
  const int8 = await benchInt8Graph(preset, files, options.threads, o.weightBits === undefined ? undefined : (Number(o.weightBits) as 7 | 8));
  log(`int8 graph: ${int8.info.weightBits}-bit weights (${int8.info.cpu}), calibrated on ${int8.info.calibrationImages} images in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  let fp32 = 0;
  let quantized = 0;
  for (let round = 0; round < o.rounds; round++) {
    fp32 = Math.max(fp32, (await measureModel(files, preset, options)).imgPerS);
    quantized = Math.max(quantized, (await measureModel(files, preset, { ...options, int8 })).imgPerS);
    log(`round ${round + 1}: fp32 best ${fp32.toFixed(1)}, int8 best ${quantized.toFixed(1)} images/s`);
  }
  const quality = await devsetQuality(o.devset, preset, options, int8);
  console.log(`\norchard bench:int8: ${preset.name}, ${files.length} images of ${o.devset}, ${options.threads} threads, batch ${options.batchSize}, ${os.cpus()[0]?.model ?? ''}\n`);
  console.log(formatTable([{ name: 'model_img_per_s', value: Math.round(fp32 * 10) / 10, note: 'fp32, bare predict' }, ...int8Rows(fp32, quantized, int8.info, quality)]));
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
