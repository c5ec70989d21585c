/**
 * `orchard doctor`: real checks against a real S3 server on loopback (s3rver), the tiny seeded CNN saved to a
 * temp folder and loaded through the same code as a run, and sharp decoding real generated images.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { main, type CliIo } from '../runtime/cli';
import { checkNodeVersion, formatCheck, runDoctor, type DoctorConfig } from '../runtime/doctor';
import { initTf } from '../runtime/model/backend';
import { cacheSlug } from '../runtime/model/artifacts';
import { LocalStorage, openStorage } from '../runtime/storage';
import { startTestS3, tempDir } from './helpers/s3';
import { TINY_FEATURES, TINY_INPUT, saveTinyModel } from './helpers/tiny-model';

const BUCKET = 'orchard-test';

let s3: Awaited<ReturnType<typeof startTestS3>>;
let modelDir: string;

beforeAll(async () => {
  const tf = await initTf('wasm');
  modelDir = tempDir();
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  s3 = await startTestS3([BUCKET]);
  await openStorage({ kind: 's3', bucket: BUCKET, prefix: 'images/' }, s3.options).put('Kiwi/0_100.jpg', Buffer.from('not looked at'));
});

afterAll(async () => {
  await s3?.close();
  fs.rmSync(modelDir, { recursive: true, force: true });
});

/** The tiny model as a run would name it on the command line, a reachable bucket, the wasm backend. */
function config(overrides: Partial<DoctorConfig> = {}): DoctorConfig {
  return {
    model: { ref: modelDir, featureLayer: 'features', inputSize: TINY_INPUT },
    buckets: [{ kind: 's3', bucket: BUCKET, prefix: '' }],
    engine: 'auto',
    backend: 'wasm',
    s3: s3.options,
    ...overrides,
  };
}

const check = (report: Awaited<ReturnType<typeof runDoctor>>, name: string) => {
  const found = report.checks.find((c) => c.name === name);
  if (!found) throw new Error(`no ${name} check in ${report.checks.map((c) => c.name).join(', ')}`);
  return found;
};

describe('runDoctor', () => {
  let report: Awaited<ReturnType<typeof runDoctor>>;
  beforeAll(async () => {
    report = await runDoctor(config());
  });

  test('passes, with exit status 0, when every check passes', () => {
    expect(report.checks.filter((c) => c.status === 'FAIL')).toEqual([]);
    expect(report.passed).toBe(true);
    expect(report.exitCode).toBe(0);
  });

  test('checks node, sharp, ONNX Runtime, the backend, S3 and the model, in that order', () => {
    expect(report.checks.map((c) => c.name)).toEqual(['node', 'sharp', 'onnx', 'backend', 's3', 'model']);
  });

  test('names the onnxruntime-node version that loads and the threads runs use', () => {
    expect(check(report, 'onnx').detail).toMatch(/^onnxruntime-node 1\.\d+\.\d+ loads \(linux\/(x64|arm64)\); runs use \d+ threads$/);
  });

  test('loads the model on the engine a run uses (onnx), and caches its compiled graph in <bucket>/models/onnx/', async () => {
    expect(check(report, 'model').detail).toMatch(/on the onnx engine \(onnxruntime-node /);
    const graphs: string[] = [];
    for await (const object of openStorage({ kind: 's3', bucket: BUCKET, prefix: 'models/onnx/' }, s3.options).list()) graphs.push(object.key);
    expect(graphs.some((key) => /^[0-9a-f]{64}\/v\d+-32-features-[0-9a-f]{8}\.onnx$/.test(key))).toBe(true);
  });

  test('names the TensorFlow.js backend that initialised', () => {
    expect(check(report, 'backend').detail).toMatch(/^wasm \(tfjs-core 4\.22\.0; chosen with --backend wasm\)$/);
  });

  test('gives the feature length of a warm-up predict of the model', () => {
    expect(check(report, 'model').detail).toContain(`gives ${TINY_FEATURES} features per image (layers-model, ${TINY_INPUT}×${TINY_INPUT} input, layer features)`);
    expect(check(report, 'model').detail).toContain(`from ${path.join(modelDir, 'model.json')}`);
  });

  test('decodes generated images with sharp', () => {
    expect(check(report, 'sharp').detail).toMatch(/^sharp 0\.\d+\.\d+ \(libvips [\d.]+\) decoded generated JPEG, PNG, WebP images to 224×224 RGB$/);
  });

  test('lists one object of the bucket', () => {
    expect(check(report, 's3').detail).toBe(`s3://${BUCKET}/ is reachable through ${s3.endpoint}: lists s3://${BUCKET}/images/Kiwi/0_100.jpg`);
  });

  test('checks each S3 location by listing under its prefix, and caches into the first one\'s models/', async () => {
    const prefixes = await runDoctor(
      config({ buckets: [{ kind: 's3', bucket: BUCKET, prefix: 'images/' }, { kind: 's3', bucket: BUCKET, prefix: 'results/' }] }),
    );
    expect(prefixes.checks.filter((c) => c.name === 's3').map(formatCheck)).toEqual([
      `ok s3: s3://${BUCKET}/images/ is reachable through ${s3.endpoint}: lists s3://${BUCKET}/images/Kiwi/0_100.jpg`,
      `ok s3: s3://${BUCKET}/results/ is reachable through ${s3.endpoint}: no objects under it yet`,
    ]);
  });

  test('leaves S3 out without a bucket', async () => {
    const withoutBucket = await runDoctor(config({ buckets: [] }));
    expect(withoutBucket.checks.map((c) => c.name)).toEqual(['node', 'sharp', 'onnx', 'backend', 'model']);
    expect(withoutBucket.passed).toBe(true);
  });
});

describe('Node.js version', () => {
  test('Node.js 22 is ok', () => {
    expect(checkNodeVersion('v22.11.0')).toEqual({ status: 'ok', detail: 'Node.js v22.11.0' });
  });

  test.each(['v20.19.5', 'v23.0.0', 'v24.1.0'])('%s is a warning that names the version the instance runs', (version) => {
    const result = checkNodeVersion(version);
    expect(result.status).toBe('warn');
    expect(result.detail).toContain(`Node.js ${version}: the instance runs Node.js 22`);
  });

  test('a warning does not fail the doctor', async () => {
    const report = await runDoctor(config({ buckets: [] }), { nodeVersion: 'v20.19.5' });
    expect(check(report, 'node').status).toBe('warn');
    expect(report.exitCode).toBe(0);
  });
});

describe('model cache', () => {
  test('caches a web model into <bucket>/models/, and the next doctor loads it from there without the web', async () => {
    // A real HTTP server on loopback plays the model's web host (TF Hub on the instance).
    const server = http.createServer((request, response) => {
      const file = path.join(modelDir, path.basename(new URL(request.url ?? '/', 'http://x').pathname));
      if (!fs.existsSync(file)) return void response.writeHead(404).end();
      response.writeHead(200).end(fs.readFileSync(file));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tiny`;
    const model = { ref: url, featureLayer: 'features', inputSize: TINY_INPUT };
    const cached = `s3://${BUCKET}/models/${cacheSlug(url)}/model.json`;
    try {
      const first = await runDoctor(config({ model }));
      expect(check(first, 'model').status).toBe('ok');
      expect(check(first, 'model').detail).toContain(`from ${cached}`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    const models = openStorage({ kind: 's3', bucket: BUCKET, prefix: `models/${cacheSlug(url)}/` }, s3.options);
    expect(await models.head('weights.bin')).toBeDefined();
    const second = await runDoctor(config({ model }));
    expect(check(second, 'model').status).toBe('ok');
    expect(check(second, 'model').detail).toContain(`from ${cached}`);
  });
});

describe('failing checks', () => {
  test('a missing bucket fails the s3 check, naming the bucket, with exit status 1', async () => {
    const report = await runDoctor(config({ buckets: [{ kind: 's3', bucket: 'no-such-bucket', prefix: '' }] }));
    expect(formatCheck(check(report, 's3'))).toBe('FAIL s3: Bucket no-such-bucket does not exist (s3://no-such-bucket/)');
    expect(report.passed).toBe(false);
    expect(report.exitCode).toBe(1);
  });

  test('a model that is not there fails the model check, naming where it looked', async () => {
    const missing = path.join(modelDir, 'nothing-here');
    const report = await runDoctor(config({ model: { ref: missing }, buckets: [] }));
    expect(formatCheck(check(report, 'model'))).toMatch(new RegExp(`^FAIL model: No tfjs model at ${missing}: .*model\\.json does not exist`));
    expect(report.exitCode).toBe(1);
  });

  test('a wrong feature layer fails the model check, naming the layer', async () => {
    const report = await runDoctor(config({ model: { ref: modelDir, featureLayer: 'no_such_layer', inputSize: TINY_INPUT }, buckets: [] }));
    expect(formatCheck(check(report, 'model'))).toMatch(/^FAIL model: Model has no layer named 'no_such_layer'/);
  });

  const tfjsNodeInstalled = (() => {
    try {
      require.resolve('@tensorflow/tfjs-node');
      return true;
    } catch {
      return false;
    }
  })();
  (tfjsNodeInstalled ? test.skip : test)('--engine tfjs --backend tensorflow without tfjs-node fails the backend check, and the model is not checked', async () => {
    const report = await runDoctor(config({ engine: 'tfjs', backend: 'tensorflow', buckets: [] }));
    expect(formatCheck(check(report, 'backend'))).toMatch(/^FAIL backend: Cannot load @tensorflow\/tfjs-node: /);
    expect(formatCheck(check(report, 'model'))).toBe('FAIL model: not checked: no TensorFlow.js backend (see the backend check)');
    expect(report.exitCode).toBe(1);
  });
});

describe('orchard doctor (CLI)', () => {
  async function orchard(...args: string[]) {
    const captured = { code: undefined as number | undefined, out: '', err: '' };
    const io: CliIo = {
      out: (text) => void (captured.out += text),
      err: (text) => void (captured.err += text),
      exit: (code) => void (captured.code ??= code),
      isTty: false,
    };
    await main(['node', 'orchard', ...args], io);
    return { ...captured, lines: captured.out.split('\n').filter((line) => line !== '') };
  }
  const tiny = ['--backend', 'wasm', '--model', '', '--feature-layer', 'features', '--input-size', String(TINY_INPUT)];
  const tinyArgs = () => tiny.map((arg) => (arg === '' ? modelDir : arg));

  test('prints one "ok|warn|FAIL <check>: <detail>" line per check, then a summary, and exits 0', async () => {
    const result = await orchard('doctor', ...tinyArgs());
    expect(result.code).toBe(0);
    expect(result.lines.slice(0, -1).map((line) => /^(ok|warn|FAIL) (\w+): ./.exec(line)?.[2])).toEqual(['node', 'sharp', 'onnx', 'backend', 'model']);
    expect(result.lines.at(-1)).toMatch(/^doctor: passed \(5 checks/);
  });

  test('exits 1 with a FAIL line naming the cause when a check fails', async () => {
    const result = await orchard('doctor', ...tinyArgs(), '--model', '/nonexistent/model');
    expect(result.code).toBe(1);
    expect(result.lines).toContain('FAIL model: No tfjs model at /nonexistent/model: /nonexistent/model/model.json does not exist. ' +
      'Fix: give --model a preset name, or a URL, s3:// URI or folder holding model.json and its weight files');
    expect(result.lines.at(-1)).toBe('doctor: failed: model (1 of 5 checks)');
  });

  test('--json-logs prints one JSON object per check and a summary object', async () => {
    const result = await orchard('doctor', ...tinyArgs(), '--json-logs');
    const objects = result.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(objects.slice(0, -1).map((o) => o.check)).toEqual(['node', 'sharp', 'onnx', 'backend', 'model']);
    expect(objects[3]).toMatchObject({ check: 'backend', status: 'ok', detail: expect.stringMatching(/^wasm /) });
    expect(objects.at(-1)).toEqual({ doctor: 'passed', failed: [] });
  });

  test('--bucket must be an s3:// URI (exit 2)', async () => {
    const result = await orchard('doctor', ...tinyArgs(), '--bucket', './somewhere');
    expect(result.code).toBe(2);
    expect(result.err).toContain('Expected an s3:// URI for --bucket but got "./somewhere"');
  });

  test('orchard --help lists the doctor', async () => {
    const result = await orchard('--help');
    expect(result.out).toMatch(/^\s+doctor \[options\]\s+Check that this machine can run orchard/m);
  });
});
