import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { LocalStorage } from '../runtime/storage';
import { S3_ENV, orchard, orchardProcess, type Captured } from './helpers/cli';
import { startTestS3, tempDir } from './helpers/s3';
import { saveTinyModel } from './helpers/tiny-model';

const lines = (text: string) => text.split('\n').filter((line) => line.trim() !== '');

let modelDir: string;
let imagesDir: string;

beforeAll(async () => {
  const tf = await initTf('wasm');
  modelDir = tempDir();
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  imagesDir = tempDir();
  await generateSampleImages(imagesDir, { perClass: 4, seed: 5, classes: ['Apple Braeburn', 'Banana', 'Kiwi'] });
});

/** The flags of a fast run over the generated images with the tiny model. */
const tinyRun = (output: string, runId: string) => [
  'run',
  '--input', imagesDir,
  '--output', output,
  '--model', modelDir,
  '--feature-layer', 'features',
  '--input-size', '32',
  '--backend', 'wasm',
  '-k', '3',
  '--json-logs',
  '--run-id', runId,
  '--shard-size', '5',
];

describe('help', () => {
  it('run --help lists the run options and the exit-status table, and exits 0', async () => {
    const result = await orchard('run', '--help');
    expect(result.code).toBe(0);
    for (const option of ['--input', '--output', '--variance', '--components', '--run-id', '--max-error-rate', '--label-from', '--keep-features', '--endpoint', '--shard-size', '--backend']) {
      expect(result.out).toContain(option);
    }
    expect(result.out).toContain('Exit status:');
    expect(result.out).toMatch(/^\s+130\s+interrupted/m);
    expect(result.out).toMatch(/^\s+3\s+finished, but too many images failed .* or too few images were\s+readable for PCA/m);
  });

  it('demo --help lists the demo options and exits 0', async () => {
    const result = await orchard('demo', '--help');
    expect(result.code).toBe(0);
    for (const option of ['--output', '--per-class', '--batch-size', '--model', '--endpoint', '--json-logs']) expect(result.out).toContain(option);
  });

  it('report --help lists the report argument and options and exits 0', async () => {
    const result = await orchard('report', '--help');
    expect(result.code).toBe(0);
    for (const option of ['<run-uri>', '--input', '--endpoint']) expect(result.out).toContain(option);
  });

  it('upload --help lists the upload arguments and options and exits 0', async () => {
    const result = await orchard('upload', '--help');
    expect(result.code).toBe(0);
    for (const option of ['<dir>', '<s3-uri>', '--concurrency', '--endpoint', '--region']) expect(result.out).toContain(option);
  });
});

describe('usage errors exit 2 with a message naming the option', () => {
  const output = tempDir();

  it('a missing --output', async () => {
    const result = await orchard('run', '--input', imagesDir);
    expect(result.code).toBe(2);
    expect(result.err).toContain('--output');
  });

  it('--variance 2', async () => {
    const result = await orchard('run', '--input', imagesDir, '--output', output, '--variance', '2');
    expect(result.code).toBe(2);
    expect(result.err).toContain('--variance');
  });

  it('a demo bigger than its embedded S3 server can list (--per-class 126: 1,008 images)', async () => {
    const result = await orchard('demo', '--output', output, '--per-class', '126');
    expect(result.code).toBe(2);
    expect(result.err).toContain('at most 125 for --per-class');
  });

  it('--components 0', async () => {
    const result = await orchard('run', '--input', imagesDir, '--output', output, '--components', '0');
    expect(result.code).toBe(2);
    expect(result.err).toContain('--components');
  });

  it('--components and --variance together', async () => {
    const result = await orchard('run', '--input', imagesDir, '--output', output, '--components', '3', '--variance', '0.9');
    expect(result.code).toBe(2);
    expect(result.err).toContain('--components');
    expect(result.err).toContain('--variance');
    expect(result.err).toMatch(/cannot be used with/);
  });

  it('--label-from folder', async () => {
    const result = await orchard('run', '--input', imagesDir, '--output', output, '--label-from', 'folder');
    expect(result.code).toBe(2);
    expect(result.err).toContain('--label-from');
    expect(result.err).toContain('folder');
  });

  it('--run-id "../x"', async () => {
    const result = await orchard('run', '--input', imagesDir, '--output', output, '--run-id', '../x');
    expect(result.code).toBe(2);
    expect(result.err).toContain('--run-id');
  });

  it('--endpoint not-a-url', async () => {
    const result = await orchard('run', '--input', imagesDir, '--output', output, '--endpoint', 'not-a-url');
    expect(result.code).toBe(2);
    expect(result.err).toContain('--endpoint');
    expect(result.err).toContain('"not-a-url"');
  });

  it('upload to a URI that is not s3://', async () => {
    const result = await orchard('upload', imagesDir, tempDir());
    expect(result.code).toBe(2);
    expect(result.err).toMatch(/^orchard: .*s3:\/\/.*<s3-uri>/);
  });

  it('writes nothing to stdout and nothing under --output', async () => {
    const result = await orchard('run', '--input', imagesDir, '--output', output, '--variance', '2');
    expect(result.out).toBe('');
    expect(fs.readdirSync(output)).toEqual([]);
  });
});

describe('a fatal error', () => {
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  beforeAll(async () => {
    s3 = await startTestS3(['cli-test']);
  });
  afterAll(() => s3.close());

  it('exits 1 with one line on stderr, starting "orchard: " and naming the missing input bucket', async () => {
    const result = await orchardProcess(
      ['run', '--input', 's3://no-such-bucket/images/', '--output', tempDir(), '--run-id', 'f1', '--backend', 'wasm', '--endpoint', s3.endpoint],
      S3_ENV,
    );
    expect(result.code).toBe(1);
    expect(lines(result.err)).toHaveLength(1);
    expect(result.err).toMatch(/^orchard: .*no-such-bucket/);
    expect(result.out).toBe('');
  });
});

describe('orchard upload, a whole process', () => {
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  beforeAll(async () => {
    s3 = await startTestS3(['cli-upload']);
  });
  afterAll(() => s3.close());

  it('uploads more files than Node allows abort listeners by default (16 at once) without warning of a leak', async () => {
    const result = await orchardProcess(['upload', imagesDir, 's3://cli-upload/images/', '--endpoint', s3.endpoint], S3_ENV);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^uploaded (\d+), skipped 0 unchanged, failed 0 of \1 files/);
    expect(Number(/^uploaded (\d+)/.exec(result.out)![1])).toBeGreaterThan(11);
    expect(result.err).not.toContain('MaxListenersExceededWarning');
  });
});

describe('a run through the command line', () => {
  const output = tempDir();
  let first: Captured;

  beforeAll(async () => {
    first = await orchard(...tinyRun(output, 'r1'));
  });

  it('exits 0', () => {
    expect(first.code).toBe(0);
  });

  it('logs through the CliIo, as JSON lines with level and message under --json-logs', () => {
    const logged = lines(first.err).map((line) => JSON.parse(line));
    expect(logged.length).toBeGreaterThan(2);
    for (const entry of logged) expect(entry).toEqual(expect.objectContaining({ level: 'info', message: expect.any(String) }));
    expect(logged.map((entry) => entry.message)).toContainEqual(expect.stringMatching(/^fit: k=3 /));
  });

  it('prints one JSON result line on stdout with status succeeded and the output URIs', () => {
    expect(lines(first.out)).toHaveLength(1);
    const result = JSON.parse(first.out);
    expect(result.status).toBe('succeeded');
    expect(result.runUri).toBe(path.join(output, 'r1'));
    expect(result.counts).toMatchObject({ listed: 12, processed: 12, failed: 0, shards: 3 });
    expect(result.pca.components).toBe(3);
    for (const [name, file] of Object.entries({ csv: 'pca.csv', parquet: 'pca.parquet', model: 'pca-model.json', errors: 'errors.csv', manifest: 'manifest.json', success: '_SUCCESS' })) {
      expect(result.outputs[name]).toBe(path.join(output, 'r1', file));
    }
  });

  it('writes _SUCCESS in the run folder', () => {
    expect(fs.existsSync(path.join(output, 'r1', '_SUCCESS'))).toBe(true);
  });

  it('refuses to run the same --run-id again with exit 2, leaving the run untouched', async () => {
    const manifest = fs.readFileSync(path.join(output, 'r1', 'manifest.json'), 'utf8');
    const again = await orchard(...tinyRun(output, 'r1'));
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/^orchard: .*r1.*never overwritten/);
    expect(fs.readFileSync(path.join(output, 'r1', 'manifest.json'), 'utf8')).toBe(manifest);
  });
});

describe('orchard demo --keep-images', () => {
  it('runs the whole demo and leaves its generated images in a folder that orchard run takes as input', async () => {
    const images = path.join(tempDir(), 'images');
    const result = await orchard('demo', '--output', tempDir(), '--per-class', '2', '--keep-images', images, '-q');
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^orchard demo: succeeded/);
    expect(result.out).toContain(`images kept    ${images}  (next: npx orchard run -i ${images} `);
    const kept = fs.readdirSync(images, { recursive: true }).map(String).filter((name) => name.endsWith('.jpg'));
    expect(kept).toHaveLength(16);
  });
});

describe('orchard report', () => {
  const output = tempDir();
  let report: Captured;

  beforeAll(async () => {
    await orchard(...tinyRun(output, 'rep'));
    fs.rmSync(path.join(output, 'rep', 'report.html'));
    report = await orchard('report', path.join(output, 'rep'));
  });

  it('regenerates report.html for a finished run, exits 0 and prints its path', () => {
    expect(report.code).toBe(0);
    expect(report.out).toBe(`report  ${path.join(output, 'rep', 'report.html')}  (open in a browser)\n`);
    expect(fs.readFileSync(path.join(output, 'rep', 'report.html'), 'utf8')).toMatch(/^<!doctype html>/);
  });

  it('takes the thumbnails from the input recorded in the manifest', () => {
    const html = fs.readFileSync(path.join(output, 'rep', 'report.html'), 'utf8');
    expect(html.match(/<img src="data:image\/jpeg;base64,/g)).toHaveLength(12);
  });

  it('exits 2, naming the folder, when it holds no finished run', async () => {
    const result = await orchard('report', tempDir());
    expect(result.code).toBe(2);
    expect(result.err).toMatch(/^orchard: .*no manifest\.json/);
  });
});

describe('--json-logs in a real process', () => {
  let result: Captured;

  beforeAll(async () => {
    result = await orchardProcess(tinyRun(tempDir(), 'j1'));
  });

  it('exits 0 and prints only the JSON result on stdout', () => {
    expect(result.code).toBe(0);
    expect(lines(result.out)).toHaveLength(1);
    expect(JSON.parse(result.out).status).toBe('succeeded');
  });

  it('writes stderr lines that are each a JSON object with level and message', () => {
    const logged = lines(result.err);
    expect(logged.length).toBeGreaterThan(2);
    for (const line of logged) {
      let entry: unknown;
      expect(() => (entry = JSON.parse(line))).not.toThrow();
      expect(entry).toEqual(expect.objectContaining({ level: expect.stringMatching(/^(info|warn)$/), message: expect.any(String) }));
    }
  });
});
