/**
 * The scale path run locally: the state machine definition synthesized by the OrchardScale stack, executed by
 * aws-local-stepfunctions (its Distributed Maps by test/helpers/local-sfn.ts, which reads the item files plan
 * and fit wrote, batches them and writes the map results as the service does), with every Lambda Task replaced
 * by the real stage handler (runtime/lambda/handler.ts) called in this process against the real S3 server.
 * 70 one-image shards make two merge groups, so the split fit runs too. The outputs must equal `orchard run`'s.
 */
import { definitionOf } from './helpers/definition';
import { S3_ENV, orchard } from './helpers/cli';
import { runLocally, type LocalTask, type MapRunRecord } from './helpers/local-sfn';
import { startTestS3, tempDir } from './helpers/s3';
import { saveTinyModel } from './helpers/tiny-model';
import { fakeBundle, synthOrchard } from './infra/app';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { functionMachine, handler, stageS3Options } from '../runtime/lambda/handler';
import { MERGE_GROUP } from '../runtime/pipeline/fit';
import { S3Storage, createS3Client, type Storage } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import type { StageEvent } from '../runtime/contracts/scale';
import { loadScaledBudget } from './helpers/budget';

// aws-local-stepfunctions 3 calls Promise.withResolvers (Node 22); Node 20 runs the tests too.
(Promise as unknown as { withResolvers?: unknown }).withResolvers ??= function withResolvers<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

// Real work (70 stage invocations, two reference runs): a budget against hangs, scaled to the machine's load.
jest.setTimeout(loadScaledBudget(120));

const BUCKET = 'scale-local';
const IMAGES = 70;
const SHARDS_PER_TASK = 4;

let s3: Awaited<ReturnType<typeof startTestS3>>;
let definition: Record<string, any>;
let bucket: Storage;
const runSettings = {
  model: `s3://${BUCKET}/models/tiny/`,
  featureLayer: 'features',
  inputSize: 32,
  components: 3,
  shardSize: 1,
};

/** Every stage invocation, in order: the stage and what it was given. */
const calls: StageEvent[] = [];
const stage: LocalTask = async (event: StageEvent) => {
  calls.push(event);
  return handler(event);
};
const tasks = { Plan: stage, ExtractShards: stage, MergeGroup: stage, Fit: stage, ProjectShards: stage, Publish: stage };

async function execute(runId: string, overrides: Partial<Record<keyof typeof tasks, LocalTask>> = {}, input = 'images/', settings: Record<string, unknown> = {}) {
  const mapRuns: MapRunRecord[] = [];
  const output = await runLocally(
    definition,
    { run: { input: `s3://${BUCKET}/${input}`, output: `s3://${BUCKET}/results/`, runId, ...runSettings, ...settings }, shardsPerTask: SHARDS_PER_TASK, maxConcurrency: 3 },
    { tasks: { ...tasks, ...overrides }, bucket: (name) => new S3Storage(createS3Client(s3.options), name, ''), onMapRun: (run) => mapRuns.push(run) },
  );
  return { output: output as Record<string, any>, mapRuns };
}

const read = (key: string) => bucket.get(key);

beforeAll(async () => {
  Object.assign(process.env, S3_ENV);
  s3 = await startTestS3([BUCKET]);
  process.env.AWS_ENDPOINT_URL = s3.endpoint;
  bucket = new S3Storage(createS3Client(s3.options), BUCKET, '');
  const tf = await initTf('wasm');
  await saveTinyModel(tf.tf, new S3Storage(createS3Client(s3.options), BUCKET, 'models/tiny/'));
  const images = tempDir();
  await generateSampleImages(images, { perClass: 10, seed: 31, classes: ['Apple Braeburn', 'Banana', 'Kiwi', 'Lemon', 'Orange', 'Strawberry', 'Grape Blue'] });
  await uploadTree({ sourceDir: images, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/') });
  // A small input (8 one-image shards) for the failure cases, which need no merge groups.
  const small = tempDir();
  await generateSampleImages(small, { perClass: 4, seed: 32, classes: ['Kiwi', 'Lemon'] });
  await uploadTree({ sourceDir: small, target: new S3Storage(createS3Client(s3.options), BUCKET, 'small/') });
  // The definition does not depend on the code: stand-in bundles keep the synthesis fast.
  definition = definitionOf(synthOrchard({ runtimeDir: fakeBundle('runtime'), lambdaDir: fakeBundle('lambda') }).scaleTemplate);
  // The references: `orchard run` in one process, with the run ids the executions use (Parquet records the run id).
  for (const [input, runId] of [['images/', 'scaled'], ['small/', 'retried']]) {
    const reference = await orchard(
      'run', '-i', `s3://${BUCKET}/${input}`, '-o', `s3://${BUCKET}/reference/`, '--run-id', runId!, '--endpoint', s3.endpoint,
      '--model', runSettings.model, '--feature-layer', 'features', '--input-size', '32', '-k', '3', '--shard-size', '1',
    );
    expect(reference.code).toBe(0);
  }
});
afterAll(async () => {
  delete process.env.AWS_ENDPOINT_URL;
  await s3.close();
});

describe('a run through the state machine, each Lambda replaced by the real handler', () => {
  let result: Awaited<ReturnType<typeof execute>>;
  beforeAll(async () => {
    calls.length = 0;
    result = await execute('scaled');
  });

  test('ends with the run\'s result, as the trigger reads it', () => {
    expect(result.output).toMatchObject({
      status: 'succeeded',
      runUri: `s3://${BUCKET}/results/scaled/`,
      counts: { listed: IMAGES, processed: IMAGES, failed: 0, shards: IMAGES },
      components: 3,
    });
    expect(result.output.outputs.csv).toBe(`s3://${BUCKET}/results/scaled/pca.csv`);
  });

  test('writes pca.csv and pca.parquet byte for byte as orchard run does, and _SUCCESS', async () => {
    expect(await read('results/scaled/pca.csv')).toEqual(await read('reference/scaled/pca.csv'));
    expect(await read('results/scaled/pca.parquet')).toEqual(await read('reference/scaled/pca.parquet'));
    expect(await read('results/scaled/pca-model.json')).toBeDefined();
    expect((await bucket.head('results/scaled/_SUCCESS'))?.size).toBe(0);
  });

  test('maps over the item files plan and fit wrote, in batches with the run as BatchInput, results written to S3', async () => {
    expect(result.mapRuns.map((run) => [run.state, run.itemsKey, run.items, run.batches.length])).toEqual([
      ['Extract', 'results/scaled/_work/items/extract.json', IMAGES, Math.ceil(IMAGES / SHARDS_PER_TASK)],
      ['Project', 'results/scaled/_work/items/project.json', IMAGES, Math.ceil(IMAGES / SHARDS_PER_TASK)],
    ]);
    for (const run of result.mapRuns) {
      expect(run.batches[0]).toEqual({ BatchInput: { output: `s3://${BUCKET}/results/`, runId: 'scaled' }, Items: [{ shard: 0 }, { shard: 1 }, { shard: 2 }, { shard: 3 }] });
      expect(run.batches.flatMap((batch) => batch.Items)).toHaveLength(IMAGES);
      expect(run.resultKey).toMatch(/^map-results\/scaled\/.+\/manifest\.json$/);
    }
  });

  test('answers a Publish retried after it committed with the same result, instead of failing the run', async () => {
    // Step Functions retries a task whose answer was lost (Lambda.ClientExecutionTimeoutException) or redriven.
    const again = await handler({ stage: 'publish', output: `s3://${BUCKET}/results/`, runId: 'scaled' });
    expect(again).toEqual(result.output);
  });

  test('splits the fit past 64 shards: a merge task per group, then the fit over the groups', () => {
    const merges = calls.filter((call) => call.stage === 'merge');
    expect(merges.map((call) => (call as { group: number }).group).sort()).toEqual([0, 1]);
    expect(Math.ceil(IMAGES / MERGE_GROUP)).toBe(2);
    const order = calls.map((call) => call.stage).filter((name, i, all) => name !== all[i - 1]);
    expect(order).toEqual(['plan', 'extract', 'merge', 'fit', 'project', 'publish']);
  });
});

describe('a worker that fails once with a Lambda throttling error', () => {
  let result: Awaited<ReturnType<typeof execute>>;
  let attempts = 0;

  beforeAll(async () => {
    const flaky: LocalTask = async (event: StageEvent) => {
      if (event.stage === 'extract' && event.Items.some((item) => item.shard === 5) && attempts++ === 0) {
        throw Object.assign(new Error('Rate Exceeded.'), { name: 'Lambda.TooManyRequestsException' });
      }
      return stage(event);
    };
    result = await execute('retried', { ExtractShards: flaky }, 'small/');
  });

  test('is retried by the state machine\'s Retry, and the run ends the same', async () => {
    expect(attempts).toBe(2);
    expect(result.output.status).toBe('succeeded');
    expect(await read('results/retried/pca.csv')).toEqual(await read('reference/retried/pca.csv'));
  });
});

describe('an int8 run', () => {
  test('its Lambda workers run the graph plan stored: the same shards, byte for byte, as orchard run --precision int8', async () => {
    const reference = await orchard(
      'run', '-i', `s3://${BUCKET}/small/`, '-o', `s3://${BUCKET}/reference/`, '--run-id', 'int8', '--endpoint', s3.endpoint,
      '--model', runSettings.model, '--feature-layer', 'features', '--input-size', '32', '-k', '3', '--shard-size', '1', '--precision', 'int8', '--keep-features',
    );
    expect(reference.code).toBe(0);
    const result = await execute('int8', {}, 'small/', { precision: 'int8', keepFeatures: true });
    expect(result.output.status).toBe('succeeded');
    expect(await read('results/int8/_work/int8/graph.onnx')).toEqual(await read('reference/int8/_work/int8/graph.onnx'));
    const features = async (root: string, shard: number) => {
      const meta = JSON.parse((await read(`${root}/int8/_work/extract/0000${shard}.meta.json`)).toString('utf8')) as { attempt: string; engine: { precision: string } };
      expect(meta.engine.precision).toBe('int8');
      return read(`${root}/int8/_work/extract/0000${shard}/${meta.attempt}.features.f32`);
    };
    for (let shard = 0; shard < 8; shard++) expect(await features('results', shard)).toEqual(await features('reference', shard));
    expect(await read('results/int8/pca.csv')).toEqual(await read('reference/int8/pca.csv'));
  });
});

describe('a stage that fails for good', () => {
  test('fails the execution through RunFailed with the stage\'s error, keeping what was committed', async () => {
    const denied: LocalTask = async () => {
      throw Object.assign(new Error('Access denied to s3://scale-local/images/Kiwi/0_100.jpg'), { name: 'ERR_ACCESS_DENIED' });
    };
    // A child that fails past its retries fails the map (no failure is tolerated), which the Catch turns into RunFailed.
    await expect(execute('failing', { ProjectShards: denied }, 'small/')).rejects.toMatchObject({
      name: 'States.ExceedToleratedFailureThreshold',
      message: expect.stringMatching(/child executions failed: ERR_ACCESS_DENIED: Access denied/),
    });
    // Every shard extracted, the fit stored: a redrive or a rerun with the same id projects and publishes only.
    expect(await bucket.head('results/failing/_work/fit/pca.json')).toBeDefined();
    expect(await bucket.head('results/failing/_SUCCESS')).toBeUndefined();
  });
});

test('the handler refuses a run setting it does not know, naming it', async () => {
  await expect(handler({ stage: 'plan', run: { input: `s3://${BUCKET}/images/`, output: `s3://${BUCKET}/results/`, runId: 'x', varience: 0.9 } })).rejects.toMatchObject({
    name: 'ERR_INVALID_PARAMETER',
    message: expect.stringContaining('"varience"'),
  });
});

test('the stage function signs its S3 requests for the region it runs in', async () => {
  // Lambda sets AWS_REGION; a bucket in eu-west-1 refuses requests signed for the client's default us-east-1.
  const client = createS3Client(stageS3Options({ AWS_REGION: 'eu-west-1' }));
  expect(await client.config.region()).toBe('eu-west-1');
  expect(stageS3Options({ AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL: 'http://127.0.0.1:9' }).endpoint).toBe('http://127.0.0.1:9');
});

test('the stage function computes on the threads its stack sets from its memory (ORCHARD_THREADS), else on the cores it sees', () => {
  expect(functionMachine({ ORCHARD_THREADS: '2' })).toEqual({ threads: 2 });
  expect(functionMachine({})).toEqual({});
  expect(() => functionMachine({ ORCHARD_THREADS: '0' })).toThrow('Expected a whole number of at least 1 for ORCHARD_THREADS but got "0"');
});
