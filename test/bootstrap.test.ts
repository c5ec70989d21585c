/**
 * lib/scripts/bootstrap.sh, run here as far as it can run off the instance: everything but `dnf install` and the
 * shutdown (ORCHARD_SKIP_PACKAGES=1, ORCHARD_NO_SHUTDOWN=1), with this machine's node and npm standing in for
 * node-22 and npm-22, the current user for the `orchard` user, and a real S3 server on loopback for the bucket.
 * It installs the bundle's dependencies, writes the wrapper, and runs `orchard doctor`, which caches the model
 * (served over HTTP on loopback, as TF Hub serves the default one) into s3://<bucket>/models/.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { buildRuntimeBundle } from '../lib/runtime-bundle';
import { initTf } from '../runtime/model/backend';
import { MODEL_DOWNLOADS_OFF, ORT_TELEMETRY_OFF, PROCESS_ENV } from '../runtime/contracts/deployment';
import { cacheSlug } from '../runtime/model/artifacts';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { NO_LIBTENSORFLOW_ENV, S3_CREDENTIALS_ENV, installedPackages, isolatedEnv, run, type Finished } from './helpers/bundle';
import { startTestS3, tempDir } from './helpers/s3';
import { saveTinyModel } from './helpers/tiny-model';
import { loadScaledBudget } from './helpers/budget';

// A bundle, an npm install and the doctor in real processes: a budget against hangs, scaled to the machine's load.
jest.setTimeout(loadScaledBudget(120));

const BUCKET = 'orchard-test';
const REGION = 'eu-west-3';

let work: string;
let home: string;
let wrapper: string;
let s3: Awaited<ReturnType<typeof startTestS3>>;
let server: http.Server;
let modelUrl: string;
let first: Finished;

const user = spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();

/**
 * cfn-init runs the bootstrap with only the `env` its command declares (HOME), so no PATH: bash's default one
 * must do, and the script must export it for npm's install scripts. Reproduced when npm is where that default
 * PATH looks (it is, on the instance); elsewhere PATH is passed on.
 */
const BASH_DEFAULT_PATH = ['/usr/local/bin', '/usr/local/sbin', '/usr/bin', '/usr/sbin', '/bin', '/sbin'];
const withoutPath = BASH_DEFAULT_PATH.some((dir) => fs.existsSync(path.join(dir, 'npm')));
if (!withoutPath) console.warn('bootstrap.test.ts: npm is not on bash\'s default PATH here: the bootstrap runs with PATH set');

function bootstrap(args: string[]): Promise<Finished> {
  const env = isolatedEnv({
    ...S3_CREDENTIALS_ENV,
    ORCHARD_HOME: home,
    ORCHARD_NODE: process.execPath,
    ORCHARD_NPM: 'npm',
    ORCHARD_USER: user,
    ORCHARD_WRAPPER: wrapper,
    ORCHARD_MODEL: modelUrl,
    ORCHARD_SKIP_PACKAGES: '1',
    ORCHARD_NO_SHUTDOWN: '1',
    AWS_ENDPOINT_URL: s3.endpoint,
    // tfjs-node's install script fails at once (as without internet) instead of downloading libtensorflow.
    ...NO_LIBTENSORFLOW_ENV,
    // The cache `npm ci` filled answers without asking the registry (the instance starts with no cache).
    npm_config_prefer_offline: 'true',
  });
  if (withoutPath) delete env.PATH;
  return run('/bin/bash', [path.join(home, 'bootstrap.sh'), ...args], { cwd: work, env });
}

beforeAll(async () => {
  work = tempDir('orchard-bootstrap-');
  home = path.join(work, 'opt-orchard');
  wrapper = path.join(work, 'bin', 'orchard');
  // The asset's content, as cfn-init extracts it to /opt/orchard.
  buildRuntimeBundle(home);
  s3 = await startTestS3([BUCKET]);
  // A model whose output is its features and whose input is 224 pixels: it runs with orchard's defaults, as
  // the default preset does, and is served over HTTP so that the doctor downloads it and caches it.
  const tf = await initTf('wasm');
  const modelDir = path.join(work, 'model');
  await saveTinyModel(tf.tf, new LocalStorage(modelDir), '', { inputSize: 224, head: false });
  server = http.createServer((request, response) => {
    const file = path.join(modelDir, path.basename(new URL(request.url ?? '/', 'http://x').pathname));
    if (!fs.existsSync(file)) return void response.writeHead(404).end();
    response.writeHead(200).end(fs.readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  modelUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mobilenet`;
  first = await bootstrap([BUCKET, REGION]);
});

afterAll(async () => {
  if (server) await new Promise((resolve) => server.close(resolve));
  await s3?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('succeeds, ending with the doctor passing', () => {
  expect(first.code).toBe(0);
  expect(first.out).toMatch(/^doctor: passed/m);
  expect(first.out.trim()).toMatch(/bootstrap: \d\d:\d\d:\d\d done$/);
});

test('installs the pinned dependencies next to the bundle', () => {
  expect(installedPackages(home)).toEqual(expect.arrayContaining(['sharp', 'onnxruntime-node', 'chart.js']));
});

test("keeps onnxruntime-node's binaries for this machine only, and says the onnx engine will run", () => {
  const bin = path.join(home, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6');
  const kept = fs.readdirSync(bin).flatMap((os) => fs.readdirSync(path.join(bin, os)).map((arch) => `${os}/${arch}`));
  expect(kept).toEqual([`${process.platform}/${process.arch}`]);
  expect(first.out).toMatch(new RegExp(`engine: onnx \\(onnxruntime-node \\d+\\.\\d+\\.\\d+ for ${process.platform}/${process.arch}\\)`));
});

test('says which TensorFlow.js backend will run when tfjs-node cannot be installed, and why it could not', () => {
  expect(first.out).toContain('backend: wasm (@tensorflow/tfjs-node is not installed: npm could not install it');
  // npm --foreground-scripts puts the install script's own failure in the log. That the script ran at all shows
  // that its plain `node` was found, with no PATH given (as under cfn-init).
  expect(first.out + first.err).toContain('Downloading libtensorflow');
  expect(installedPackages(home)).not.toContain('@tensorflow/tfjs-node');
});

test('writes an orchard wrapper that runs the bundle with the region and the malloc setting of PROCESS_ENV', async () => {
  const lines = fs.readFileSync(wrapper, 'utf8').trim().split('\n');
  expect(lines).toEqual([
    '#!/bin/bash',
    `export AWS_REGION="\${AWS_REGION:-${REGION}}"`,
    `export MALLOC_MMAP_THRESHOLD_="\${MALLOC_MMAP_THRESHOLD_:-${PROCESS_ENV.MALLOC_MMAP_THRESHOLD_}}"`,
    `export ${Object.entries(ORT_TELEMETRY_OFF).map(([name, value]) => `${name}=${value}`).join(' ')}`,
    `export ${Object.entries(MODEL_DOWNLOADS_OFF).map(([name, value]) => `${name}=${value}`).join(' ')}`,
    `exec ${process.execPath} ${path.join(home, 'orchard.cjs')} "$@"`,
  ]);
  expect(fs.statSync(wrapper).mode & 0o777).toBe(0o755);
  const version = await run(wrapper, ['--version'], { cwd: work, env: isolatedEnv() });
  expect(version.out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
});

test('runs the doctor against the images/ and results/ prefixes and caches the model into s3://<bucket>/models/', async () => {
  expect(first.out).toContain(`ok s3: s3://${BUCKET}/images/ is reachable`);
  expect(first.out).toContain(`ok s3: s3://${BUCKET}/results/ is reachable`);
  const cached = `s3://${BUCKET}/models/${cacheSlug(modelUrl)}/model.json`;
  expect(first.out).toMatch(new RegExp(`^ok model: .* gives 12 features per image .* from ${cached.replace(/[.]/g, '\\.')}`, 'm'));
  const models = new S3Storage(createS3Client(s3.options), BUCKET, `models/${cacheSlug(modelUrl)}/`);
  expect(await models.head('model.json')).toBeDefined();
  expect(await models.head('weights.bin')).toBeDefined();
  // The graph the onnx engine runs is compiled once, here, and cached beside the weights for every run.
  expect(first.out).toMatch(/^ok model: .* on the onnx engine \(onnxruntime-node /m);
  const graphs: string[] = [];
  for await (const object of new S3Storage(createS3Client(s3.options), BUCKET, 'models/onnx/').list()) graphs.push(object.key);
  expect(graphs.filter((key) => key.endsWith('.onnx'))).toHaveLength(1);
});

test('does not schedule a shutdown when told not to', () => {
  expect(first.out).toContain('not scheduling a shutdown (ORCHARD_NO_SHUTDOWN=1)');
});

test('runs again on the same instance (cfn-init reruns it on update) and succeeds again', async () => {
  const wrapperBefore = fs.readFileSync(wrapper, 'utf8');
  const again = await bootstrap([BUCKET, REGION]);
  expect(again.code).toBe(0);
  expect(again.out).toContain(`user ${user} exists`);
  expect(again.out).toContain('dependencies already installed for this package.json');
  expect(again.out).toContain('backend: wasm');
  expect(again.out).toMatch(/^doctor: passed/m);
  expect(fs.readFileSync(wrapper, 'utf8')).toBe(wrapperBefore);
  expect(fs.readdirSync(path.dirname(wrapper))).toEqual(['orchard']);
});

test.each([
  ['no arguments', []],
  ['one argument', [BUCKET]],
  ['an invalid bucket name', ['Bad_Bucket;reboot', REGION]],
  ['an invalid region', [BUCKET, 'eu-west-3; reboot']],
])('stops with a usage message (exit 2) on %s', async (_name, args) => {
  const result = await bootstrap(args);
  expect(result.code).toBe(2);
  expect(result.err).toContain('usage: bootstrap.sh <bucket-name> <region>');
  expect(result.out).toBe('');
});
