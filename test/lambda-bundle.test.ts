/**
 * The Lambda asset as the function gets it: copied out of the repository (so that nothing resolves from the
 * repository's node_modules), its handler run stage by stage in a child process against the real S3 server;
 * foreign binaries pruned by their ELF header; and an arm64 asset built on this x86-64 machine, as a Mac or an x86
 * laptop would build one, with sharp's Linux arm64 build fetched from the npm registry.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ELF_MACHINE, buildLambdaBundle, elfMachine, pruneForeignBinaries } from '../lib/lambda-bundle';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import { S3_ENV } from './helpers/cli';
import { startTestS3, tempDir } from './helpers/s3';
import { saveTinyModel } from './helpers/tiny-model';

const ROOT = path.resolve(__dirname, '..');
const ORT_BIN = path.join(ROOT, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux');

describe('pruneForeignBinaries', () => {
  test('keeps the Linux ELF files of the target machine, deletes the others and the folders they leave empty', () => {
    const dir = tempDir();
    for (const arch of ['x64', 'arm64']) {
      fs.mkdirSync(path.join(dir, 'linux', arch), { recursive: true });
      fs.copyFileSync(path.join(ORT_BIN, arch, 'onnxruntime_binding.node'), path.join(dir, 'linux', arch, 'binding.node'));
    }
    fs.mkdirSync(path.join(dir, 'darwin'));
    // A Mach-O 64-bit header, as a Mac's node_modules would hold.
    fs.writeFileSync(path.join(dir, 'darwin', 'binding.node'), Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1, ...Array(24).fill(0)]));
    fs.writeFileSync(path.join(dir, 'readme.txt'), 'kept');
    const removed = pruneForeignBinaries(dir, ELF_MACHINE.x64);
    expect(removed.sort()).toEqual([path.join('darwin', 'binding.node'), path.join('linux', 'arm64', 'binding.node')]);
    expect(fs.existsSync(path.join(dir, 'linux', 'x64', 'binding.node'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'darwin'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'readme.txt'))).toBe(true);
  });
});

describe('the x86-64 asset, outside the repository', () => {
  const BUCKET = 'lambda-bundle';
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  let results: Record<string, any>;
  let asset: string;

  beforeAll(async () => {
    s3 = await startTestS3([BUCKET]);
    const tf = await initTf('wasm');
    await saveTinyModel(tf.tf, new S3Storage(createS3Client(s3.options), BUCKET, 'models/tiny/'));
    const images = tempDir();
    await generateSampleImages(images, { perClass: 3, seed: 41, classes: ['Kiwi', 'Lemon'] });
    await uploadTree({ sourceDir: images, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/') });
    // Built into a folder outside the repository: require() finds only what the asset holds.
    asset = buildLambdaBundle({ arch: 'x64', outDir: path.join(tempDir('orchard-asset-'), 'asset') });
    results = await runStages(asset, s3.endpoint, {
      input: `s3://${BUCKET}/images/`,
      output: `s3://${BUCKET}/results/`,
      runId: 'from-asset',
      model: `s3://${BUCKET}/models/tiny/`,
      featureLayer: 'features',
      inputSize: 32,
      components: 2,
      shardSize: 4,
    });
  });
  afterAll(() => s3.close());

  test('runs every stage of a run from its handler: sharp, ONNX Runtime and Chart.js load from the asset', () => {
    expect(results.plan).toMatchObject({ images: 6, shards: 2, pending: 2, bucket: BUCKET, extractItems: 'results/from-asset/_work/items/extract.json' });
    expect(results.fit).toMatchObject({ fitted: true, components: 2 });
    expect(results.publish).toMatchObject({ status: 'succeeded', runUri: `s3://${BUCKET}/results/from-asset/`, counts: { processed: 6, failed: 0 } });
    expect(results.publish.outputs).toHaveProperty('report');
  });

  test('logs JSON lines that name the run and the stage', () => {
    const lines = (results.stdout as string).split('\n').filter((line) => line.startsWith('{'));
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ runId: 'from-asset', stage: expect.stringMatching(/^(plan|extract|fit|project|publish)$/) });
  });

  test('extracted on ONNX Runtime, loaded from the asset (no fallback to TensorFlow.js)', async () => {
    const manifest = JSON.parse((await new S3Storage(createS3Client(s3.options), BUCKET, 'results/from-asset/').get('manifest.json')).toString('utf8'));
    expect(manifest.engine).toMatchObject({ name: 'onnx' });
    expect(results.stdout).not.toContain('running it on TensorFlow.js instead');
  });

  test('runs --model mobilenet_v2_offline from the two files it carries, with no nsfwjs package in it', async () => {
    expect(fs.readdirSync(path.join(asset, 'models', 'mobilenet_v2_offline')).sort()).toEqual(['model.json', 'weights.bin']);
    expect(fs.existsSync(path.join(asset, 'node_modules', 'nsfwjs'))).toBe(false);
    const offline = await runStages(asset, s3.endpoint, { input: `s3://${BUCKET}/images/`, output: `s3://${BUCKET}/offline/`, runId: 'offline', model: 'mobilenet_v2_offline', components: 2, shardSize: 4 });
    expect(offline.publish).toMatchObject({ status: 'succeeded', counts: { processed: 6, failed: 0 } });
    const manifest = JSON.parse((await new S3Storage(createS3Client(s3.options), BUCKET, 'offline/offline/').get('manifest.json')).toString('utf8'));
    expect(manifest.model).toMatchObject({ loadedFrom: 'bundle:models/mobilenet_v2_offline', featureDim: 1280 });
  });
});

test('an arm64 asset built on this x86-64 machine holds arm64 binaries only, sharp\'s fetched from the registry', () => {
  const cache = tempDir('orchard-natives-');
  const asset = buildLambdaBundle({ arch: 'arm64', outDir: path.join(tempDir('orchard-asset-'), 'asset'), fetchCache: cache });
  const natives: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.(node|so(\.\d+)*)$/.test(entry.name)) natives.push(full);
    }
  };
  walk(asset);
  expect(natives.map((file) => path.relative(asset, file)).sort()).toEqual(
    expect.arrayContaining([
      'node_modules/onnxruntime-node/bin/napi-v6/linux/arm64/onnxruntime_binding.node',
      expect.stringMatching(/^node_modules\/@img\/sharp-linux-arm64\/lib\/sharp-linux-arm64-.+\.node$/),
      expect.stringMatching(/^node_modules\/@img\/sharp-libvips-linux-arm64\/lib\/libvips-cpp\.so/),
    ]),
  );
  for (const file of natives) expect({ file, machine: elfMachine(file) }).toEqual({ file, machine: ELF_MACHINE.arm64 });
  expect(fs.readdirSync(path.join(asset, 'node_modules', '@img')).filter((name) => name.includes('x64'))).toEqual([]);
}, 300_000);

/** Calls the asset's handler for each stage in order, in a child process with the embedded S3 server's endpoint. */
function runStages(asset: string, endpoint: string, run: Record<string, unknown>): Promise<Record<string, any>> {
  const driver = `
    const { handler } = require(${JSON.stringify(path.join(asset, 'index.js'))});
    (async () => {
      const run = ${JSON.stringify(run)};
      const ref = { output: run.output, runId: run.runId };
      const plan = await handler({ stage: 'plan', run });
      const items = Array.from({ length: plan.shards }, (_, shard) => ({ shard }));
      await handler({ stage: 'extract', BatchInput: ref, Items: items });
      const fit = await handler({ stage: 'fit', ...ref });
      await handler({ stage: 'project', BatchInput: ref, Items: items });
      const publish = await handler({ stage: 'publish', ...ref });
      process.stderr.write('RESULT' + JSON.stringify({ plan, fit, publish }) + '\\n');
    })().catch((error) => { process.stderr.write(String(error && error.stack || error)); process.exit(1); });`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', driver], {
      cwd: path.dirname(asset),
      // No NODE_PATH: modules resolve from the asset only.
      env: { PATH: process.env.PATH ?? '', HOME: tempDir(), ...S3_ENV, AWS_ENDPOINT_URL: endpoint, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = stderr.split('\n').find((text) => text.startsWith('RESULT'));
      if (code !== 0 || !line) reject(new Error(`the asset's handler exited ${code}:\n${stderr.slice(-3000)}`));
      else resolve({ ...(JSON.parse(line.slice('RESULT'.length)) as object), stdout });
    });
  });
}
