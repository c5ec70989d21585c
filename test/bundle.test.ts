/**
 * The runtime bundle (what the CDK asset holds) works on its own: built into a temp folder that holds only the
 * bundle and the dependencies its package.json declares, installed there by npm as the bootstrap installs them,
 * it prints its help, passes `orchard doctor` against a real S3 server, and runs the pipeline end to end.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { INSTANCE_DEPENDENCIES, INSTANCE_OPTIONAL_DEPENDENCIES } from '../lib/runtime-bundle';
import { generateSampleImages } from '../runtime/images/generate';
import { cacheSlug } from '../runtime/model/artifacts';
import { initTf } from '../runtime/model/backend';
import { KERAS_MOBILENET_V2 } from '../runtime/model/presets';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import { S3_CREDENTIALS_ENV, buildAndInstallBundle, installedPackages, isolatedEnv, run, type InstalledBundle } from './helpers/bundle';
import { startTestS3, tempDir } from './helpers/s3';
import { nsfwjsAsKerasLayers, writeKerasH5 } from './helpers/keras-h5';
import { TINY_FEATURES, TINY_INPUT, saveTinyModel } from './helpers/tiny-model';

const BUCKET = 'orchard-test';
const CLASSES = ['Apple Braeburn', 'Banana', 'Kiwi'];
const PER_CLASS = 4;

let bundle: InstalledBundle;
let s3: Awaited<ReturnType<typeof startTestS3>>;
let modelDir: string;
let work: string;

beforeAll(async () => {
  work = tempDir('orchard-bundle-');
  bundle = buildAndInstallBundle(path.join(work, 'orchard'));
  console.log(`bundle: built in ${bundle.buildSeconds.toFixed(1)} s, its dependencies installed in ${bundle.installSeconds.toFixed(1)} s`);
  const tf = await initTf('wasm');
  modelDir = path.join(work, 'tiny-model');
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  s3 = await startTestS3([BUCKET]);
  const images = path.join(work, 'images');
  await generateSampleImages(images, { perClass: PER_CLASS, seed: 3, classes: CLASSES });
  await uploadTree({ sourceDir: images, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/'), concurrency: 4 });
});

afterAll(async () => {
  await s3?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** `node orchard.cjs …` from the bundle folder, with nothing of the repository reachable. */
const orchard = (...args: string[]) => run(process.execPath, ['orchard.cjs', ...args], { cwd: bundle.dir, env: isolatedEnv(S3_CREDENTIALS_ENV) });
const tinyModel = () => ['--model', modelDir, '--feature-layer', 'features', '--input-size', String(TINY_INPUT)];

describe('the bundle folder', () => {
  test('holds the bundle, the wasm binaries, the instance scripts and a package.json of pinned dependencies', () => {
    const files = fs.readdirSync(bundle.dir);
    expect(files).toEqual(expect.arrayContaining(['orchard.cjs', 'package.json', '.npmrc', 'bootstrap.sh', 'run-pipeline.sh', 'tfjs-backend-wasm.wasm']));
    // onnxruntime-node's install script would otherwise download CUDA libraries on linux/x64.
    expect(fs.readFileSync(path.join(bundle.dir, '.npmrc'), 'utf8')).toBe('onnxruntime-node-install=skip\n');
    const manifest = bundle.manifest as Record<string, Record<string, string>>;
    expect(Object.keys(manifest.dependencies!).sort()).toEqual([...INSTANCE_DEPENDENCIES].sort());
    expect(Object.keys(manifest.optionalDependencies!)).toEqual([...INSTANCE_OPTIONAL_DEPENDENCIES]);
    for (const version of [...Object.values(manifest.dependencies!), ...Object.values(manifest.optionalDependencies!)]) {
      expect(version).toMatch(/^\d+\.\d+\.\d+$/);
    }
  });

  test('gets only the declared dependencies and theirs: nothing bundled, nothing left out on purpose', () => {
    const installed = installedPackages(bundle.dir);
    expect(installed).toEqual(expect.arrayContaining(['sharp', 'onnxruntime-node', 'chart.js']));
    for (const absent of ['nsfwjs', 's3rver', '@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', '@aws-sdk/client-s3', 'commander', 'tsx']) {
      expect(installed).not.toContain(absent);
    }
  });
});

describe('node orchard.cjs from the isolated folder', () => {
  test('--help lists the commands', async () => {
    const result = await orchard('--help');
    expect(result.code).toBe(0);
    for (const command of ['run', 'plan', 'extract', 'fit', 'project', 'publish', 'doctor', 'upload', 'report']) expect(result.out).toMatch(new RegExp(`^\\s+${command} `, 'm'));
  });

  test('doctor passes every check against the S3 server, with the tiny model on the wasm backend', async () => {
    const result = await orchard('doctor', '--backend', 'wasm', ...tinyModel(), '--bucket', `s3://${BUCKET}/`, '--endpoint', s3.endpoint);
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    const lines = result.out.trim().split('\n');
    expect(lines.filter((line) => line.startsWith('FAIL'))).toEqual([]);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^ok sharp: sharp /),
        expect.stringMatching(/^ok onnx: onnxruntime-node \d+\.\d+\.\d+ loads /),
        expect.stringMatching(/^ok backend: wasm /),
        expect.stringMatching(new RegExp(`^ok s3: s3://${BUCKET}/ is reachable`)),
        expect.stringMatching(new RegExp(`^ok model: .* gives ${TINY_FEATURES} features per image`)),
      ]),
    );
  });

  test('runs --model mobilenet_v2_offline from the two files it carries, with no nsfwjs package anywhere', async () => {
    expect(fs.readdirSync(path.join(bundle.dir, 'models', 'mobilenet_v2_offline')).sort()).toEqual(['model.json', 'weights.bin']);
    expect(installedPackages(bundle.dir)).not.toContain('nsfwjs');
    const result = await orchard(
      'run', '--input', `s3://${BUCKET}/images/`, '--output', `s3://${BUCKET}/offline/`, '--model', 'mobilenet_v2_offline',
      '-k', '3', '--run-id', 'offline', '--endpoint', s3.endpoint,
    );
    expect({ code: result.code, err: result.err }).toEqual({ code: 0, err: expect.not.stringMatching(/nsfwjs|^orchard: /im) });
    const manifest = JSON.parse((await new S3Storage(createS3Client(s3.options), BUCKET, 'offline/offline/').get('manifest.json')).toString('utf8'));
    expect(manifest.model).toMatchObject({ name: 'mobilenet_v2_offline', loadedFrom: 'bundle:models/mobilenet_v2_offline', featureDim: 1280 });
  });

  test("its default model is Keras's MobileNetV2 .h5, read from the model cache where the deployment puts it, not TF Hub", async () => {
    const cache = path.join(work, 'model-cache');
    fs.mkdirSync(cache);
    writeKerasH5(path.join(cache, cacheSlug(KERAS_MOBILENET_V2)), await nsfwjsAsKerasLayers());
    const result = await orchard('doctor', '--backend', 'wasm', '--model-cache', cache);
    expect(result.out).toMatch(new RegExp(`^ok model: .* gives 1280 features per image .* from ${path.join(cache, cacheSlug(KERAS_MOBILENET_V2)).replace(/[.]/g, '\\.')}`, 'm'));
    expect(result.out).not.toContain('tfhub');
  });

  test('run processes the images in S3 and writes pca.csv, the report and _SUCCESS there', async () => {
    const result = await orchard(
      'run', '--input', `s3://${BUCKET}/images/`, '--output', `s3://${BUCKET}/results/`, ...tinyModel(),
      '--backend', 'wasm', '-k', '3', '--run-id', 'bundle-run', '--endpoint', s3.endpoint,
    );
    expect(result.code).toBe(0);
    expect(result.out).toMatch(new RegExp(`^done: ${CLASSES.length * PER_CLASS} images, 0 failed, k=3 `, 'm'));
    const runFolder = new S3Storage(createS3Client(s3.options), BUCKET, 'results/bundle-run/');
    expect(await runFolder.head('_SUCCESS')).toBeDefined();
    expect(await runFolder.head('report.html')).toBeDefined();
    const csv = (await runFolder.get('pca.csv')).toString('utf8').trim().split('\n');
    expect(csv[0]).toBe('key,label,pc_1,pc_2,pc_3');
    expect(csv).toHaveLength(1 + CLASSES.length * PER_CLASS);
    const manifest = JSON.parse((await runFolder.get('manifest.json')).toString('utf8')) as { engine: { name: string } };
    expect(manifest.engine.name).toBe('onnx');
  });
});

describe('a run split into stage tasks, from the isolated folder', () => {
  test('plan, two extract tasks, fit, project, publish: _SUCCESS, the tables and one Parquet part per shard', async () => {
    const where = ['--output', `s3://${BUCKET}/staged/`, '--run-id', 'staged', '--endpoint', s3.endpoint];
    const planned = await orchard('plan', '--input', `s3://${BUCKET}/images/`, ...where, ...tinyModel(), '-k', '3', '--shard-size', '5', '--json-logs');
    expect(planned.code).toBe(0);
    expect(JSON.parse(planned.out.trim().split('\n').pop()!)).toMatchObject({ images: CLASSES.length * PER_CLASS, shards: 3, pending: 3 });
    const extracted = await Promise.all([orchard('extract', ...where, '--shards', '0-1'), orchard('extract', ...where, '--shards', '2')]);
    expect(extracted.map((result) => result.code)).toEqual([0, 0]);
    for (const step of [['fit'], ['project', '--shards', 'all'], ['publish']]) expect((await orchard(step[0]!, ...where, ...step.slice(1))).code).toBe(0);
    const runFolder = new S3Storage(createS3Client(s3.options), BUCKET, 'staged/staged/');
    const listed: string[] = [];
    for await (const object of runFolder.list()) listed.push(object.key);
    expect(listed).toEqual(expect.arrayContaining(['_SUCCESS', 'pca.csv', 'pca.parquet', 'pca/part-00000.parquet', 'pca/part-00001.parquet', 'pca/part-00002.parquet']));
    expect(listed.some((key) => key.startsWith('_work/'))).toBe(false);
  });
});

describe('without its dependencies installed', () => {
  test('--help still works, and doctor names sharp as the cause', async () => {
    const bare = path.join(work, 'bare');
    fs.mkdirSync(bare);
    for (const file of fs.readdirSync(bundle.dir).filter((name) => name === 'orchard.cjs' || name.endsWith('.wasm'))) {
      fs.copyFileSync(path.join(bundle.dir, file), path.join(bare, file));
    }
    const env = isolatedEnv(S3_CREDENTIALS_ENV);
    expect((await run(process.execPath, ['orchard.cjs', '--help'], { cwd: bare, env })).code).toBe(0);
    const result = await run(process.execPath, ['orchard.cjs', 'doctor', '--backend', 'wasm', ...tinyModel()], { cwd: bare, env });
    expect(result.code).toBe(1);
    expect(result.out).toMatch(/^FAIL sharp: cannot load sharp: Cannot find module 'sharp'/m);
    expect(result.out).toMatch(/^ok backend: wasm /m);
  });
});
