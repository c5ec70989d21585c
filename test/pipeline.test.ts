import * as fs from 'node:fs';
import * as path from 'node:path';
import { parquetReadObjects } from 'hyparquet';
import { initTf, type TfRuntime } from '../runtime/model/backend';
import { generateSampleImages } from '../runtime/images/generate';
import type { RunConfig } from '../runtime/pipeline/config';
import { runPipeline } from '../runtime/pipeline/run';
import { RunFolder } from '../runtime/pipeline/run-folder';
import { pcaModelFromJson } from '../runtime/pca/model-json';
import { buildReport } from '../runtime/report/build';
import { silentReporter } from '../runtime/progress';
import { OrchardError } from '../runtime/errors';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import { makeTrickyInputs } from './helpers/bad-inputs';
import { startTestS3, tempDir } from './helpers/s3';
import { TINY_FEATURES, saveTinyModel, tinyRunConfig } from './helpers/tiny-model';

const BUCKET = 'pipeline-test';
let s3: Awaited<ReturnType<typeof startTestS3>>;
let tf: TfRuntime;
let modelDir: string;

beforeAll(async () => {
  s3 = await startTestS3([BUCKET]);
  tf = await initTf('wasm');
  modelDir = tempDir();
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
});
afterAll(() => s3.close());

function config(overrides: Partial<RunConfig> & Pick<RunConfig, 'input' | 'output' | 'runId'>): RunConfig {
  return tinyRunConfig(modelDir, s3.options, overrides);
}

async function uploadImages(prefix: string, build: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir();
  await build(dir);
  await uploadTree({ sourceDir: dir, target: new S3Storage(createS3Client(s3.options), BUCKET, prefix) });
}

function readCsv(file: string): string[][] {
  // The keys in these tests hold no commas or quotes, so a plain split is a faithful reader here.
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => line.split(','));
}

describe('an end-to-end run on S3 with keys holding spaces and unicode', () => {
  const output = tempDir();
  let result: Awaited<ReturnType<typeof runPipeline>>;
  let keys: string[];

  beforeAll(async () => {
    await uploadImages('fruits/', async (dir) => {
      keys = await generateSampleImages(dir, { perClass: 5, seed: 3, classes: ['Apple Braeburn', 'Banana', 'Pêche de vigne', 'Kiwi'] });
    });
    result = await runPipeline(
      config({ input: { kind: 's3', bucket: BUCKET, prefix: 'fruits/' }, output: { kind: 'local', dir: output }, runId: 'e2e', keepFeatures: true }),
      { reporter: silentReporter(), tf },
    );
  });

  it('succeeds and writes the outputs, _SUCCESS among them, and one Parquet part per shard', () => {
    expect(result.status).toBe('succeeded');
    const files = fs.readdirSync(path.join(output, 'e2e')).sort();
    expect(files).toEqual(['_SUCCESS', '_work', 'errors.csv', 'manifest.json', 'pca', 'pca-model.json', 'pca.csv', 'pca.parquet', 'report.html'].sort());
    expect(fs.readdirSync(path.join(output, 'e2e', 'pca'))).toEqual(['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']);
  });

  it('lists the report among the outputs of the manifest', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(output, 'e2e', 'manifest.json'), 'utf8'));
    expect(manifest.outputs.report).toBe(path.join(output, 'e2e', 'report.html'));
  });

  it('plots in its report the points a report built from pca.csv plots (publish samples them as it writes the file)', async () => {
    const points = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8').match(/<script type="application\/json" id="report-data">(.*?)<\/script>/s)![1]!).classes;
    const published = points(path.join(output, 'e2e', 'report.html'));
    // Built again from the published files alone: the points are read back from pca.csv.
    await buildReport(new LocalStorage(path.join(output, 'e2e')));
    expect(published.length).toBe(4);
    expect(published).toEqual(points(path.join(output, 'e2e', 'report.html')));
  });

  it('writes one CSV row per image with its key, its folder as label and k PC columns', () => {
    const rows = readCsv(path.join(output, 'e2e', 'pca.csv'));
    expect(rows[0]).toEqual(['key', 'label', 'pc_1', 'pc_2', 'pc_3', 'pc_4']);
    expect(rows.slice(1).map((row) => row[0]).sort()).toEqual([...keys].sort());
    for (const row of rows.slice(1)) {
      expect(row[1]).toBe(row[0].split('/')[0]);
      expect(row.slice(2).every((value) => Number.isFinite(Number(value)))).toBe(true);
    }
  });

  it('writes the same rows to Parquet as to CSV', async () => {
    const file = fs.readFileSync(path.join(output, 'e2e', 'pca.parquet'));
    const arrayBuffer = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength);
    const records = (await parquetReadObjects({ file: arrayBuffer })) as Record<string, unknown>[];
    const csv = readCsv(path.join(output, 'e2e', 'pca.csv')).slice(1);
    expect(records).toHaveLength(csv.length);
    records.forEach((record, i) => {
      expect(record.key).toBe(csv[i][0]);
      expect(record.label).toBe(csv[i][1]);
      expect(Math.fround(record.pc_3 as number)).toBe(Math.fround(Number(csv[i][4])));
    });
  });

  it('writes Parquet that DuckDB reads with string keys and float PCs, matching the CSV', async () => {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:');
    const connection = await db.connect();
    const file = path.join(output, 'e2e', 'pca.parquet').replace(/'/g, "''");
    const types = (await connection.runAndReadAll(`describe select * from read_parquet('${file}')`)).getRowObjects();
    expect(types.map((t) => `${t.column_name}:${t.column_type}`)).toEqual(['key:VARCHAR', 'label:VARCHAR', 'pc_1:FLOAT', 'pc_2:FLOAT', 'pc_3:FLOAT', 'pc_4:FLOAT']);
    const rows = (await connection.runAndReadAll(`select key, label, pc_2 from read_parquet('${file}')`)).getRowObjects();
    const csv = new Map(readCsv(path.join(output, 'e2e', 'pca.csv')).slice(1).map((row) => [row[0], row]));
    expect(rows).toHaveLength(csv.size);
    for (const row of rows) {
      expect(row.label).toBe(csv.get(row.key as string)![1]);
      expect(Math.fround(row.pc_2 as number)).toBe(Math.fround(Number(csv.get(row.key as string)![3])));
    }
    connection.closeSync();
  });

  it('projects the kept features onto the published model: CSV values = (x − mean) · components', async () => {
    const model = pcaModelFromJson(JSON.parse(fs.readFileSync(path.join(output, 'e2e', 'pca-model.json'), 'utf8')));
    const folder = new RunFolder(new LocalStorage(path.join(output, 'e2e')));
    const meta = await folder.requireExtracted(1);
    const features = await folder.readFeatures(meta);
    const csv = new Map(readCsv(path.join(output, 'e2e', 'pca.csv')).slice(1).map((row) => [row[0], row.slice(2).map(Number)]));
    meta.rows.forEach((row: { key: string }, i: number) => {
      for (let c = 0; c < model.nComponents; c++) {
        let dot = 0;
        for (let j = 0; j < TINY_FEATURES; j++) dot += (features[i * TINY_FEATURES + j] - model.mean[j]) * model.components[c * TINY_FEATURES + j];
        expect(csv.get(row.key)![c]).toBeCloseTo(dot, 4);
      }
    });
  });

  it('records counts, timings, engine, model and versions in the manifest', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(output, 'e2e', 'manifest.json'), 'utf8'));
    expect(manifest.counts).toMatchObject({ listed: 20, processed: 20, failed: 0, shards: 3 });
    expect(manifest.engine).toMatchObject({ name: 'onnx', version: require('onnxruntime-node/package.json').version, threads: 2, batchSize: 4 });
    expect(manifest.engine.graph.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(manifest.model).toMatchObject({ featureDim: TINY_FEATURES, format: 'layers-model', featureLayer: 'features' });
    expect(manifest.model.weightsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(manifest.timings)).toEqual(expect.arrayContaining(['list', 'extract', 'fit', 'publish', 'total']));
    expect(manifest.versions['onnxruntime-node']).toBe(manifest.engine.version);
    expect(manifest.pca.components).toBe(4);
  });

  it('never overwrites a completed run', async () => {
    const again = runPipeline(
      config({ input: { kind: 's3', bucket: BUCKET, prefix: 'fruits/' }, output: { kind: 'local', dir: output }, runId: 'e2e' }),
      { reporter: silentReporter(), tf },
    );
    await expect(again).rejects.toMatchObject({ code: 'ERR_RUN_EXISTS' });
  });

  it('writes to S3 output too, deleting the intermediate shards after success', async () => {
    const run = await runPipeline(
      config({
        input: { kind: 's3', bucket: BUCKET, prefix: 'fruits/' },
        output: { kind: 's3', bucket: BUCKET, prefix: 'results/' },
        runId: 'to-s3',
        components: { kind: 'variance', fraction: 0.9 },
      }),
      { reporter: silentReporter(), tf },
    );
    const listed: string[] = [];
    for await (const item of new S3Storage(createS3Client(s3.options), BUCKET, 'results/to-s3/').list()) listed.push(item.key);
    expect(listed.sort()).toEqual(['_SUCCESS', 'errors.csv', 'manifest.json', 'pca-model.json', 'pca.csv', 'pca.parquet', 'pca/part-00000.parquet', 'pca/part-00001.parquet', 'pca/part-00002.parquet', 'report.html']);
    expect(run.manifest.pca!.explainedVariance).toBeGreaterThan(0.9);
  });
});

describe('a report that cannot be built', () => {
  const output = tempDir();
  const warnings: string[] = [];
  let result: Awaited<ReturnType<typeof runPipeline>>;

  beforeAll(async () => {
    // A directory where report.html should go: writing the report fails for real.
    fs.mkdirSync(path.join(output, 'no-report', 'report.html'), { recursive: true });
    await uploadImages('no-report/', async (dir) => {
      await generateSampleImages(dir, { perClass: 4, seed: 4, classes: ['Kiwi', 'Lemon'] });
    });
    result = await runPipeline(
      config({ input: { kind: 's3', bucket: BUCKET, prefix: 'no-report/' }, output: { kind: 'local', dir: output }, runId: 'no-report' }),
      { reporter: { ...silentReporter(), warn: (message) => warnings.push(message) }, tf },
    );
  });

  it('does not fail the run', () => {
    expect(result.status).toBe('succeeded');
    expect(fs.existsSync(path.join(output, 'no-report', '_SUCCESS'))).toBe(true);
  });

  it('warns, naming the report', () => {
    expect(warnings).toEqual([expect.stringMatching(/^report: could not build .*report\.html/)]);
  });

  it('leaves the report out of the outputs of the manifest', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(output, 'no-report', 'manifest.json'), 'utf8'));
    expect(Object.keys(manifest.outputs)).not.toContain('report');
    expect(result.outputs.report).toBeUndefined();
  });
});

describe('a run over bad inputs', () => {
  const output = tempDir();
  let tricky: Awaited<ReturnType<typeof makeTrickyInputs>>;

  beforeAll(async () => {
    tricky = await makeTrickyInputs();
    await uploadImages('tricky/', async (dir) => {
      fs.mkdirSync(path.join(dir, 'mixed'));
      for (const input of tricky) fs.writeFileSync(path.join(dir, 'mixed', input.name), input.data);
      // Enough good images that PCA has data to fit.
      await generateSampleImages(dir, { perClass: 3, seed: 9, classes: ['Lemon', 'Orange'] });
    });
  });

  it('lists every bad file in errors.csv with a reason, processes the rest, and does not stop', async () => {
    const result = await runPipeline(
      config({ input: { kind: 's3', bucket: BUCKET, prefix: 'tricky/' }, output: { kind: 'local', dir: output }, runId: 'tolerant', maxErrorRate: 1 }),
      { reporter: silentReporter(), tf },
    );
    expect(result.status).toBe('succeeded');
    const errors = readCsv(path.join(output, 'tolerant', 'errors.csv'));
    expect(errors[0]).toEqual(['key', 'reason']);
    const failedKeys = errors.slice(1).map((row) => row[0]).sort();
    const expectedFailures = tricky.filter((t) => t.expect === 'error').map((t) => `mixed/${t.name}`).sort();
    expect(failedKeys).toEqual(expectedFailures);
    for (const row of errors.slice(1)) expect(row.slice(1).join(',').length).toBeGreaterThan(5);
    const processed = readCsv(path.join(output, 'tolerant', 'pca.csv')).slice(1).map((row) => row[0]);
    for (const ok of tricky.filter((t) => t.expect === 'ok')) expect(processed).toContain(`mixed/${ok.name}`);
    expect(result.manifest.counts.failed).toBe(expectedFailures.length);
  });

  it('exits with the too-many-errors status, without _SUCCESS, when the error rate is above the limit', async () => {
    const result = await runPipeline(
      config({ input: { kind: 's3', bucket: BUCKET, prefix: 'tricky/' }, output: { kind: 'local', dir: output }, runId: 'strict', maxErrorRate: 0.01 }),
      { reporter: silentReporter(), tf },
    );
    expect(result.status).toBe('too_many_errors');
    expect(result.exitCode).toBe(3);
    expect(fs.existsSync(path.join(output, 'strict', '_SUCCESS'))).toBe(false);
    expect(fs.existsSync(path.join(output, 'strict', 'errors.csv'))).toBe(true);
    // The outputs listed (summary and manifest) are the files written: no _SUCCESS among them.
    expect(result.outputs.success).toBeUndefined();
    expect(Object.keys(result.manifest.outputs)).not.toContain('success');
  });
});

describe('an output folder inside the input folder', () => {
  it('is refused before anything is written (16.1), and hidden folders are skipped', async () => {
    const input = tempDir();
    await generateSampleImages(input, { perClass: 4, seed: 5, classes: ['Kiwi', 'Lemon'] });
    fs.mkdirSync(path.join(input, 'Kiwi', '.ipynb_checkpoints'));
    fs.copyFileSync(path.join(input, 'Kiwi', '0_100.jpg'), path.join(input, 'Kiwi', '.ipynb_checkpoints', '0_100.jpg'));
    const inside = runPipeline(config({ input: { kind: 'local', dir: input }, output: { kind: 'local', dir: path.join(input, 'results') }, runId: 'one' }), {
      reporter: silentReporter(),
      tf,
    });
    await expect(inside).rejects.toMatchObject({ code: 'ERR_INVALID_PARAMETER', message: expect.stringContaining('lies inside the --input') });
    expect(fs.existsSync(path.join(input, 'results'))).toBe(false);
    const outside = await runPipeline(config({ input: { kind: 'local', dir: input }, output: { kind: 'local', dir: tempDir() }, runId: 'two' }), { reporter: silentReporter(), tf });
    expect(outside.manifest.counts).toMatchObject({ listed: 8, failed: 0 });
  });

  it('may not be the input folder itself', async () => {
    const input = tempDir();
    const run = runPipeline(config({ input: { kind: 'local', dir: input }, output: { kind: 'local', dir: input }, runId: 'x' }), {
      reporter: silentReporter(),
      tf,
    });
    await expect(run).rejects.toMatchObject({ code: 'ERR_INVALID_PARAMETER', message: expect.stringContaining('lies inside the --input') });
  });
});

describe('resuming with other model weights', () => {
  it('is refused instead of merging features of two networks', async () => {
    const input = tempDir();
    await generateSampleImages(input, { perClass: 2, seed: 6, classes: ['Kiwi', 'Lemon'] });
    const output = tempDir();
    fs.mkdirSync(path.join(output, 'm', '_work'), { recursive: true });
    fs.writeFileSync(path.join(output, 'm', '_work', 'model.json'), JSON.stringify({ name: 'tiny', weightsSha256: '0'.repeat(64), featureDim: TINY_FEATURES }));
    const run = runPipeline(config({ input: { kind: 'local', dir: input }, output: { kind: 'local', dir: output }, runId: 'm' }), {
      reporter: silentReporter(),
      tf,
    });
    await expect(run).rejects.toMatchObject({ code: 'ERR_RESUME_MISMATCH', message: expect.stringContaining('other model weights') });
  });
});

describe('a run whose plan expired while shards remain', () => {
  it('is refused instead of cutting new shards that would not match the old ones', async () => {
    const input = tempDir();
    await generateSampleImages(input, { perClass: 2, seed: 8, classes: ['Kiwi', 'Lemon'] });
    const output = tempDir();
    fs.mkdirSync(path.join(output, 'p', '_work', 'extract'), { recursive: true });
    fs.writeFileSync(path.join(output, 'p', '_work', 'extract', '00000.meta.json'), '{}');
    const run = runPipeline(config({ input: { kind: 'local', dir: input }, output: { kind: 'local', dir: output }, runId: 'p' }), {
      reporter: silentReporter(),
      tf,
    });
    await expect(run).rejects.toMatchObject({ code: 'ERR_RESUME_MISMATCH', message: expect.stringContaining('no _work/plan.json') });
  });
});

describe('fatal errors', () => {
  it('names a missing input bucket', async () => {
    const run = runPipeline(
      config({ input: { kind: 's3', bucket: 'no-such-bucket', prefix: '' }, output: { kind: 'local', dir: tempDir() }, runId: 'x' }),
      { reporter: silentReporter(), tf },
    );
    await expect(run).rejects.toBeInstanceOf(OrchardError);
    await expect(run).rejects.toMatchObject({ code: 'ERR_NO_SUCH_BUCKET', message: expect.stringContaining('no-such-bucket') });
  });

  it('refuses an empty input', async () => {
    const run = runPipeline(
      config({ input: { kind: 'local', dir: tempDir() }, output: { kind: 'local', dir: tempDir() }, runId: 'x' }),
      { reporter: silentReporter(), tf },
    );
    await expect(run).rejects.toMatchObject({ code: 'ERR_NO_INPUT' });
  });
});
