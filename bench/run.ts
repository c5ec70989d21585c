/**
 * `npm run bench -- [--images N] [--quick]`: orchard's speed and memory side by side with a PyTorch +
 * scikit-learn reference, on the same images on this machine. Prints a table against the targets of the
 * benchmark issues and writes bench-results.json. A script, not a test: the full run takes about 12 minutes on
 * 2 cores, the quick one about 3.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { positiveInt, wholeNumber } from '../runtime/cli-args';
import { generateSampleImages, SAMPLE_CLASSES } from '../runtime/images/generate';
import type { BackendPreference } from '../runtime/model/backend';
import { describeEngine, type EnginePreference } from '../runtime/model/feature-model';
import { PRESETS } from '../runtime/model/presets';
import { runSessions } from '../runtime/onnx/predict-pool';
import { loadOrt } from '../runtime/onnx/runtime';
import { ortProjector } from '../runtime/pca/ort-project';
import { projectInJs } from '../runtime/pca/project';
import { ortCoMoment } from '../runtime/stats/ort-comoment';
import { tensorCoMoment } from '../runtime/stats/tensor-comoment';
import { initTf } from '../runtime/model/backend';
import { DEFAULTS, defaultThreads } from '../runtime/pipeline/config';
import { S3Storage, createS3Client } from '../runtime/storage';
import { startEmbeddedS3, type EmbeddedS3 } from '../runtime/storage/embedded-s3';
import { uploadTree } from '../runtime/upload';
import { log } from './child';
import { cpuBreakdown, mainThreadProfile, PARTS } from './cpu-breakdown';
import { benchInt8Graph, devsetQuality, int8Rows } from './int8';
import { measureModel } from './model';
import { orchardRun } from './orchard-run';
import { measurePca, synthFeatures } from './pca';
import { runReference } from './reference';
import { formatTable } from './table';

const ROOT = path.resolve(__dirname, '..');
/** The preset that needs no download; its architecture and input size are those of mobilenet_v2. */
const MODEL = 'mobilenet_v2_offline';
const BUCKET = 'orchard-bench';
const FEATURE_DIM = 1280;

interface Options {
  readonly images: number;
  readonly quick: boolean;
  readonly rssImages: number;
  readonly hugeImages: number;
  readonly pcaRows: number;
  readonly modelImages: number;
  readonly tfjsImages: number;
  readonly output: string;
  readonly keep: boolean;
  readonly engine: EnginePreference;
  readonly backend: BackendPreference;
  readonly threads: number;
  readonly devset?: string;
}

function parseOptions(argv: readonly string[]): Options {
  const program = new Command('npm run bench --')
    .description('Measure orchard (model, pipeline, PCA, memory) against a PyTorch + scikit-learn reference on this machine')
    .option('--images <n>', 'images for the pipeline and reference runs (default 20000; 4000 with --quick)', positiveInt('--images'))
    .option('--quick', 'smaller sizes: finishes in about 3 minutes', false)
    .option('--rss-images <n>', 'images of the small memory run; the large one has 10x (default 2000; 400 with --quick)', positiveInt('--rss-images'))
    .option('--huge-images <n>', 'images of the long memory run, 0 for none (default 100000; none with --quick)', wholeNumber('--huge-images'))
    .option('--pca-rows <n>', 'rows of the feature matrix for the PCA comparison', positiveInt('--pca-rows'), 20_000)
    .option('--model-images <n>', 'images for the bare-model measure (default 2000; 1000 with --quick)', positiveInt('--model-images'))
    .option('--tfjs-images <n>', 'images for the TensorFlow.js engine\'s bare-model figure, for comparison (default 480; 160 with --quick)', positiveInt('--tfjs-images'))
    .addOption(new Option('--engine <name>', 'inference engine of every orchard measure').choices(['auto', 'onnx', 'tfjs']).default('auto'))
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend: auto picks tfjs-node where it is installed').choices(['auto', 'tensorflow', 'wasm']).default('auto'))
    .option('--threads <n>', 'threads of ONNX Runtime and of the PyTorch reference', positiveInt('--threads'), defaultThreads())
    .option('--output <file>', 'where to write the results', path.join(ROOT, 'bench-results.json'))
    .option('--keep', 'keep the scratch folder (images, runs) and print its path', false)
    .option('--devset <dir>', 'labelled photos (Class/image.jpg) for the int8 quality figures')
    .showHelpAfterError();
  program.parse(argv.filter((arg) => arg !== '--'), { from: 'user' });
  const o = program.opts<{
    images?: number; quick: boolean; rssImages?: number; hugeImages?: number; pcaRows: number; modelImages?: number; tfjsImages?: number;
    output: string; keep: boolean; engine: EnginePreference; backend: BackendPreference; threads: number; devset?: string;
  }>();
  return {
    images: o.images ?? (o.quick ? 4000 : 20_000),
    quick: o.quick,
    rssImages: o.rssImages ?? (o.quick ? 400 : 2000),
    hugeImages: o.hugeImages ?? (o.quick ? 0 : 100_000),
    pcaRows: o.pcaRows,
    modelImages: o.modelImages ?? (o.quick ? 1000 : 2000),
    tfjsImages: o.tfjsImages ?? (o.quick ? 160 : 480),
    output: path.resolve(o.output),
    keep: o.keep,
    engine: o.engine,
    backend: o.backend,
    threads: o.threads,
    devset: o.devset,
  };
}

/** s3rver's continuation tokens use DES, which OpenSSL 3 keeps in its legacy provider: without it no listing pages past 1000 keys. */
function desAvailable(): boolean {
  try {
    crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
    return true;
  } catch {
    return false;
  }
}

/** Images of the profiled pipeline run, which gives the CPU breakdown its proportions. */
const PROFILED_IMAGES = 2000;

/** Hard links to some of the images under `dir`, in their class folders: a smaller input made of the same files. */
async function linkSubset(imagesDir: string, files: readonly string[], dir: string): Promise<string> {
  for (const file of files) {
    const target = path.join(dir, path.relative(imagesDir, file));
    await fs.promises.mkdir(path.dirname(target), { recursive: true });
    await fs.promises.link(file, target);
  }
  return dir;
}

/** `count` images (rounded up to a multiple of the 8 classes) under dir; their absolute paths. */
async function makeImages(dir: string, count: number, seed: number): Promise<string[]> {
  const keys = await generateSampleImages(dir, { perClass: Math.ceil(count / SAMPLE_CLASSES.length), seed });
  return keys.map((key) => path.join(dir, key));
}

const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;
const ratio = (a: number | null, b: number | null, digits = 3) => (a === null || b === null ? null : round(a / b, digits));

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  // As in runtime/orchard.cjs: the SDK's "future releases need Node 22" notice says nothing about this run.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  if (!desAvailable()) {
    throw new Error('Run the benchmark with `npm run bench` (node --openssl-legacy-provider): s3rver needs DES to page listings');
  }
  const started = performance.now();
  const cpus = os.availableParallelism();
  const { threads } = options;
  const batchSize = DEFAULTS.batchSize;
  const preset = PRESETS[MODEL]!;
  const scratch = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'orchard-bench-'));
  let s3: EmbeddedS3 | undefined;
  log(`${options.quick ? 'quick' : 'full'} run: ${options.images} images, ${cpus} cpus, ${threads} threads, batch ${batchSize}; scratch ${scratch}`);
  try {
    // 1. The images, generated once; every measurement reads these files.
    const imagesDir = path.join(scratch, 'images');
    const files = await makeImages(imagesDir, options.images, 0);
    log(`generated ${files.length} images`);

    // 2. The bare model, on the engine every orchard measure uses; then TensorFlow.js's, for comparison.
    const engineOptions = { engine: options.engine, backend: options.backend, threads, batchSize };
    const model = await measureModel(files.slice(0, options.modelImages), preset, engineOptions);
    log(`model: ${model.imgPerS.toFixed(2)} images/s over ${model.images} images on the ${describeEngine(model.engine)}`);
    // The same on the layout a run uses (two one-thread sessions side by side on the onnx engine): the model's
    // CPU per image in the pipeline's breakdown, and a second reading of the ratios.
    const sessions = model.engine.name === 'onnx' ? runSessions(threads) : 1;
    const modelRun = sessions > 1 ? await measureModel(files.slice(0, options.modelImages), preset, { ...engineOptions, engine: 'onnx', sessions }) : model;
    if (modelRun !== model) log(`model, ${sessions} sessions: ${modelRun.imgPerS.toFixed(2)} images/s on the ${describeEngine(modelRun.engine)}`);
    const tfjs =
      model.engine.name === 'tfjs' ? model : await measureModel(files.slice(0, options.tfjsImages), preset, { ...engineOptions, engine: 'tfjs' });
    log(`tfjs model: ${tfjs.imgPerS.toFixed(2)} images/s over ${tfjs.images} images on the ${describeEngine(tfjs.engine)}`);
    // The int8 graph (--precision int8), calibrated as plan does, on the same images; its quality on --devset.
    const int8Graph = await benchInt8Graph(preset, files.slice(0, options.modelImages), threads);
    const int8 = await measureModel(files.slice(0, options.modelImages), preset, { ...engineOptions, engine: 'onnx', int8: int8Graph });
    log(`int8 model: ${int8.imgPerS.toFixed(2)} images/s (${(int8.imgPerS / model.imgPerS).toFixed(2)}x)`);
    const int8Quality = options.devset ? await devsetQuality(options.devset, preset, { ...engineOptions, engine: 'onnx' }) : undefined;

    // 3. The whole pipeline against the embedded S3 server (s3rver on loopback).
    s3 = await startEmbeddedS3(path.join(scratch, 's3'), [BUCKET]);
    const uploaded = await uploadTree({ sourceDir: imagesDir, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/') });
    log(`uploaded ${uploaded.uploaded} images to s3://${BUCKET}/images/`);
    // The engine the model measurement resolved to, so that `auto` cannot differ between the two.
    const run = { model: MODEL, engine: model.engine.name, backend: model.engine.backend ?? options.backend, threads };
    const pipeline = await orchardRun({ ...run, input: `s3://${BUCKET}/images/`, output: `s3://${BUCKET}/results/`, runId: 'bench', images: files.length, s3 });
    const k = pipeline.manifest.pca.components;
    const t = pipeline.manifest.timings;
    const pipelineImgPerS = files.length / t.total!;
    log(`pipeline: ${pipelineImgPerS.toFixed(2)} images/s, k=${k}, timings ${JSON.stringify(t)}`);
    // Where its CPU goes: the timed run's process CPU, shared out by the proportions of a second, profiled run
    // (node --cpu-prof) on some of the same images. Not the timed run itself: the sampling profiler slowed it by
    // a third on this machine (its CPU per image 9.4–10.5 ms unprofiled, 12.4 ms profiled, in one sitting).
    const profiled = files.slice(0, Math.min(files.length, PROFILED_IMAGES));
    await uploadTree({ sourceDir: await linkSubset(imagesDir, profiled, path.join(scratch, 'profiled')), target: new S3Storage(createS3Client(s3.options), BUCKET, 'profiled/') });
    const profileDir = path.join(scratch, 'cpu-profile');
    await orchardRun({ ...run, input: `s3://${BUCKET}/profiled/`, output: `s3://${BUCKET}/results/`, runId: 'bench-profiled', images: profiled.length, s3, cpuProfileDir: profileDir });
    // The model's CPU per image when it runs alone (measured, not threads / model_img_per_s: on a loaded
    // machine wall time overstates it).
    const modelMs = modelRun.cpuMsPerImage;
    const cpu = pipeline.cpuS === null ? null : cpuBreakdown(mainThreadProfile(profileDir), pipeline.cpuS, files.length, modelMs, t.enlarge ?? 0);
    if (cpu) log(`pipeline CPU per image: ${cpu.totalMs.toFixed(2)} ms, model ${modelMs.toFixed(2)} ms, ${PARTS.map((part) => `${part} ${cpu.parts[part].toFixed(2)}`).join(', ')}`);

    // 4. The Python reference on the same files from disk, same thread count, batch size and k.
    const listFile = path.join(scratch, 'images.txt');
    await fs.promises.writeFile(listFile, files.join('\n') + '\n');
    const py = await runReference(['images', '--list', listFile, '--k', String(k), '--threads', String(threads), '--batch-size', String(batchSize)]);
    const pyImgPerS = py.ok ? Number(py.json.img_per_s) : null;
    log(py.ok ? `python: ${pyImgPerS!.toFixed(2)} images/s (its model alone ${Number(py.json.model_img_per_s).toFixed(2)})` : `python reference unavailable: ${py.message}`);

    // 5. PCA on one N x 1280 matrix: ours as the pipeline computes it, then scikit-learn on the same values.
    const featuresFile = path.join(scratch, 'features.f32');
    const matrix = synthFeatures(options.pcaRows, FEATURE_DIM, featuresFile);
    const kernels =
      model.engine.name === 'onnx'
        ? { coMoment: ortCoMoment(loadOrt(), threads), project: ortProjector(loadOrt(), threads) }
        : { coMoment: tensorCoMoment((await initTf(model.engine.backend ?? 'auto')).tf), project: projectInJs };
    const ours = await measurePca(kernels, matrix, options.pcaRows, FEATURE_DIM, k, DEFAULTS.shardSize, threads);
    log(`orchard PCA: ${ours.seconds.toFixed(2)} s (moments ${ours.momentsS.toFixed(2)}, fit ${ours.fitS.toFixed(2)}, project ${ours.projectS.toFixed(2)})`);
    const pyPca = await runReference(['pca', '--features', featuresFile, '--rows', String(options.pcaRows), '--dim', String(FEATURE_DIM), '--k', String(k), '--threads', String(threads)]);
    const sklearnS = pyPca.ok ? Number(pyPca.json.sklearn_pca_s) : null;
    log(pyPca.ok ? `scikit-learn PCA: ${sklearnS!.toFixed(2)} s` : `scikit-learn PCA unavailable: ${pyPca.message}`);
    await fs.promises.rm(featuresFile, { force: true });

    // 6. Peak memory at N and 10 N images. Local folders: generating and uploading 10 N images to s3rver
    // would cost more than the runs, and memory does not depend on where the bytes come from.
    const smallDir = path.join(scratch, 'rss-small');
    const smallFiles = await makeImages(smallDir, options.rssImages, 1);
    const results = path.join(scratch, 'results');
    const small = await orchardRun({ ...run, input: smallDir, output: results, runId: 'rss-small', images: smallFiles.length });
    log(`peak RSS ${small.peakRssMb?.toFixed(0)} MB at ${smallFiles.length} images`);
    const largeDir = path.join(scratch, 'rss-large');
    const largeFiles = await makeImages(largeDir, smallFiles.length * 10, 2);
    log(`generated ${largeFiles.length} images for the large run`);
    const large = await orchardRun({ ...run, input: largeDir, output: results, runId: 'rss-large', images: largeFiles.length });
    const lt = large.manifest.timings;
    // The same pipeline on a local folder: no S3 server sharing the cores.
    const localImgPerS = largeFiles.length / lt.total!;
    log(`peak RSS ${large.peakRssMb?.toFixed(0)} MB at ${largeFiles.length} images, ${localImgPerS.toFixed(2)} images/s`);
    // 7. A long run (full bench only): the resident set must stay flat, not grow with the images.
    let huge: { images: number; peakRssMb: number | null; wallS: number; imgPerS: number; generateS: number } | undefined;
    if (options.hugeImages > 0) {
      await fs.promises.rm(smallDir, { recursive: true, force: true });
      await fs.promises.rm(largeDir, { recursive: true, force: true });
      const generateStarted = performance.now();
      const hugeDir = path.join(scratch, 'rss-huge');
      const hugeFiles = await makeImages(hugeDir, options.hugeImages, 3);
      const generateS = (performance.now() - generateStarted) / 1000;
      log(`generated ${hugeFiles.length} images for the long run in ${generateS.toFixed(0)} s`);
      const measured = await orchardRun({ ...run, input: hugeDir, output: results, runId: 'rss-huge', images: hugeFiles.length });
      huge = { images: hugeFiles.length, peakRssMb: measured.peakRssMb, wallS: measured.wallS, imgPerS: hugeFiles.length / measured.manifest.timings.total!, generateS };
      log(`peak RSS ${measured.peakRssMb?.toFixed(0)} MB at ${hugeFiles.length} images, ${measured.wallS.toFixed(0)} s (${huge.imgPerS.toFixed(1)} images/s)`);
      await fs.promises.rm(hugeDir, { recursive: true, force: true });
    }
    // PCA's work in a run: the shards' statistics (inside extract), the fit, the projection and publish (writing).
    const pcaShare = ((lt.moments ?? 0) + (lt.fit ?? 0) + (lt.project ?? 0) + (lt.publish ?? 0)) / lt.total!;

    const out = {
      model_img_per_s: round(model.imgPerS),
      model_sessions_img_per_s: round(modelRun.imgPerS),
      tfjs_model_img_per_s: round(tfjs.imgPerS),
      int8_model_img_per_s: round(int8.imgPerS),
      int8_speedup: round(int8.imgPerS / model.imgPerS),
      pipeline_img_per_s: round(pipelineImgPerS),
      pipeline_vs_model: round(pipelineImgPerS / model.imgPerS),
      pipeline_vs_model_sessions: round(pipelineImgPerS / modelRun.imgPerS),
      pipeline_local_img_per_s: round(localImgPerS),
      pipeline_local_vs_model: round(localImgPerS / model.imgPerS),
      pipeline_local_vs_model_sessions: round(localImgPerS / modelRun.imgPerS),
      cpu_ms_per_image: cpu && {
        total: round(cpu.totalMs, 2),
        model: round(cpu.modelMs, 2),
        ...Object.fromEntries(PARTS.map((part) => [part, round(cpu.parts[part], 2)])),
      },
      cpu_share_of_model: cpu && Object.fromEntries(PARTS.map((part) => [part, round(cpu.parts[part] / cpu.modelMs)])),
      python_img_per_s: pyImgPerS === null ? null : round(pyImgPerS),
      speedup_vs_python: ratio(pipelineImgPerS, pyImgPerS),
      pca_s: round(ours.seconds),
      sklearn_pca_s: sklearnS === null ? null : round(sklearnS),
      pca_vs_sklearn: ratio(ours.seconds, sklearnS),
      pca_share: round(pcaShare, 4),
      rss_small_mb: small.peakRssMb === null ? null : round(small.peakRssMb, 1),
      rss_large_mb: large.peakRssMb === null ? null : round(large.peakRssMb, 1),
      rss_growth: ratio(large.peakRssMb, small.peakRssMb),
      rss_huge_mb: huge?.peakRssMb == null ? null : round(huge.peakRssMb, 1),
      engine: model.engine.name,
      engine_version: model.engine.version,
      threads: model.engine.threads,
      batch_size: batchSize,
      cpus,
      node: process.version,
      images: files.length,
      details: {
        quick: options.quick,
        cpu_model: os.cpus()[0]?.model ?? 'unknown',
        model: MODEL,
        model_images: model.images,
        tfjs_engine: describeEngine(tfjs.engine),
        tfjs_model_images: tfjs.images,
        int8: { ...int8Graph.info, quality: int8Quality ?? null },
        pipeline_input: 's3 (embedded s3rver on loopback)',
        pipeline_local_input: `local folder, the ${largeFiles.length}-image memory run`,
        cpu_breakdown_method: `process CPU (GNU time %U + %S) per image of the timed pipeline run; model = the bare model's process CPU per image on the run's layout (model_sessions_img_per_s); the rest shared out among the parts in proportion to the main thread's --cpu-prof samples of a separate profiled run on ${profiled.length} of the images (the profiler slows what it samples, and its samples are wall time on a loaded machine, so only their proportions are used); resize includes the onnx engine's in-graph enlargement, its worker thread's CPU as the timed run's timings.enlarge records it`,
        pipeline_k: k,
        pipeline_timings: t,
        pipeline_extract_img_per_s: round(files.length / t.extract!),
        python: py.ok ? py.json : { unavailable: py.message },
        pca_rows: options.pcaRows,
        pca_dim: FEATURE_DIM,
        pca_breakdown: ours,
        sklearn: pyPca.ok ? pyPca.json : { unavailable: pyPca.message },
        rss_small_images: smallFiles.length,
        rss_large_images: largeFiles.length,
        rss_input: 'local folder',
        rss_large_timings: lt,
        rss_large_img_per_s: round(largeFiles.length / lt.total!),
        ...(huge ? { rss_huge_images: huge.images, rss_huge_wall_s: round(huge.wallS, 1), rss_huge_img_per_s: round(huge.imgPerS), rss_huge_generate_s: round(huge.generateS, 1) } : {}),
        bench_wall_s: round((performance.now() - started) / 1000, 1),
      },
    };
    await fs.promises.writeFile(options.output, JSON.stringify(out, null, 2) + '\n');

    console.log(`\norchard bench (${options.quick ? 'quick' : 'full'}): ${cpus} cpus (${out.details.cpu_model}), ${describeEngine(model.engine)}, node ${process.version}`);
    console.log(`${files.length} images through s3rver, k=${k}; PCA on ${options.pcaRows} x ${FEATURE_DIM}; peak RSS at ${smallFiles.length} and ${largeFiles.length} images\n`);
    console.log(
      formatTable([
        { name: 'model_img_per_s', value: out.model_img_per_s, note: `bare predict, ${model.images} images, ${model.engine.name} engine` },
        ...(modelRun === model ? [] : [{ name: 'model_sessions_img_per_s', value: out.model_sessions_img_per_s, note: `bare predict on a run's layout: ${describeEngine(modelRun.engine)}` }]),
        { name: 'tfjs_model_img_per_s', value: out.tfjs_model_img_per_s, note: `bare predict, ${tfjs.images} images, ${describeEngine(tfjs.engine)}` },
        ...int8Rows(model.imgPerS, int8.imgPerS, int8Graph.info, int8Quality),
        { name: 'pipeline_img_per_s', value: out.pipeline_img_per_s, note: `orchard run; extract alone ${out.details.pipeline_extract_img_per_s} images/s` },
        { name: 'pipeline_vs_model', value: out.pipeline_vs_model, target: { op: '>=', limit: 0.75 } },
        ...(modelRun === model ? [] : [{ name: 'pipeline_vs_model_sessions', value: out.pipeline_vs_model_sessions, note: 'over model_sessions_img_per_s' }]),
        { name: 'pipeline_local_img_per_s', value: out.pipeline_local_img_per_s, note: `orchard run on a local folder, ${largeFiles.length} images` },
        { name: 'pipeline_local_vs_model', value: out.pipeline_local_vs_model, target: { op: '>=', limit: 0.85 } },
        ...(modelRun === model ? [] : [{ name: 'pipeline_local_vs_model_sessions', value: out.pipeline_local_vs_model_sessions, note: 'over model_sessions_img_per_s' }]),
        { name: 'python_img_per_s', value: out.python_img_per_s, note: py.ok ? `torch ${String(py.json.torch)}, ${threads} threads` : py.message },
        { name: 'speedup_vs_python', value: out.speedup_vs_python, target: { op: '>=', limit: 2.5 } },
        { name: 'pca_s', value: out.pca_s, note: `moments ${ours.momentsS.toFixed(2)} s, fit ${ours.fitS.toFixed(2)} s, project ${ours.projectS.toFixed(2)} s` },
        { name: 'sklearn_pca_s', value: out.sklearn_pca_s, note: pyPca.ok ? `svd_solver='full', k=${k}` : pyPca.message },
        { name: 'pca_vs_sklearn', value: out.pca_vs_sklearn, target: { op: '<=', limit: 1 } },
        { name: 'pca_share', value: out.pca_share, target: { op: '<=', limit: 0.03 }, note: `(moments + fit + project + publish) / total, ${largeFiles.length}-image run` },
        { name: 'rss_small_mb', value: out.rss_small_mb, note: `${smallFiles.length} images` },
        { name: 'rss_large_mb', value: out.rss_large_mb, target: { op: '<=', limit: 1024 }, note: `${largeFiles.length} images` },
        { name: 'rss_growth', value: out.rss_growth, target: { op: '<=', limit: 1.15 } },
        ...(huge ? [{ name: 'rss_huge_mb', value: out.rss_huge_mb, target: { op: '<=' as const, limit: 1024 }, note: `${huge.images} images, ${huge.wallS.toFixed(0)} s` }] : []),
      ]),
    );
    if (cpu) {
      console.log(`\nCPU per image of the pipeline run (${files.length} images through s3rver): ${cpu.totalMs.toFixed(2)} ms, of which the model ${cpu.modelMs.toFixed(2)} ms\n`);
      console.log(formatTable(PARTS.map((part) => ({ name: part, value: round(cpu.parts[part], 2), note: `${((100 * cpu.parts[part]) / cpu.modelMs).toFixed(0)} % of the model's` }))));
    }
    console.log(`\nwrote ${options.output} (the benchmark took ${out.details.bench_wall_s} s)`);
  } finally {
    await s3?.close().catch(() => undefined);
    if (options.keep) log(`kept ${scratch}`);
    else await fs.promises.rm(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
