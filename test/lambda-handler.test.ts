/**
 * The stage function's event, checked at the edge (issue 16, defect 6): whatever Step Functions or a person with
 * `aws lambda invoke` sends, the handler answers ERR_INVALID_PARAMETER naming the field, before it reads or writes
 * anything. The endpoint is a closed loopback port: a handler that reached S3 would fail with another error.
 */
import { handler } from '../runtime/lambda/handler';
import type { StageEvent } from '../runtime/contracts/scale';

const OUTPUT = 's3://bucket/results/';
const invoke = (event: unknown) => handler(event as StageEvent);
const refused = (field: string) => ({ name: 'ERR_INVALID_PARAMETER', message: expect.stringContaining(field) });

beforeAll(() => {
  process.env.AWS_ENDPOINT_URL = 'http://127.0.0.1:9';
});
afterAll(() => {
  delete process.env.AWS_ENDPOINT_URL;
});

describe('16.6 the lambda handler validates every event with the CLI\'s rules', () => {
  test('16.6 lambda handler rejects a non-object event', async () => {
    await expect(invoke('plan')).rejects.toMatchObject(refused('event'));
    await expect(invoke(42)).rejects.toMatchObject(refused('event'));
    await expect(invoke(null)).rejects.toMatchObject(refused('event'));
    await expect(invoke({ stage: 'nap', output: OUTPUT, runId: 'r1' })).rejects.toMatchObject(refused('stage'));
  });

  test('16.6 lambda handler rejects an extract or project batch without BatchInput', async () => {
    await expect(invoke({ stage: 'extract', Items: [{ shard: 0 }] })).rejects.toMatchObject(refused('BatchInput'));
    await expect(invoke({ stage: 'project', BatchInput: { output: OUTPUT }, Items: [{ shard: 0 }] })).rejects.toMatchObject(refused('BatchInput.runId'));
    await expect(invoke({ stage: 'extract', BatchInput: { output: OUTPUT, runId: 'r1' }, Items: [{ shard: -1 }] })).rejects.toMatchObject(refused('Items'));
  });

  test('16.6 lambda handler checks the run id on every stage', async () => {
    for (const stage of ['fit', 'publish', 'merge'] as const) {
      await expect(invoke({ stage, output: OUTPUT, runId: '../other/run', group: 0 })).rejects.toMatchObject(refused('runId'));
      await expect(invoke({ stage, output: OUTPUT, group: 0 })).rejects.toMatchObject(refused('runId'));
    }
    await expect(invoke({ stage: 'extract', BatchInput: { output: OUTPUT, runId: 'a/b' }, Items: [{ shard: 0 }] })).rejects.toMatchObject(refused('BatchInput.runId'));
  });

  test('16.6 lambda handler checks the output of every stage', async () => {
    await expect(invoke({ stage: 'fit', runId: 'r1' })).rejects.toMatchObject(refused('output'));
    await expect(invoke({ stage: 'publish', output: '/tmp/results', runId: 'r1' })).rejects.toMatchObject(refused('output'));
  });

  test('16.6 lambda handler checks a merge group\'s bounds', async () => {
    await expect(invoke({ stage: 'merge', output: OUTPUT, runId: 'r1', group: -1 })).rejects.toMatchObject(refused('group'));
    await expect(invoke({ stage: 'merge', output: OUTPUT, runId: 'r1', group: 1.5 })).rejects.toMatchObject(refused('group'));
    await expect(invoke({ stage: 'merge', output: OUTPUT, runId: 'r1' })).rejects.toMatchObject(refused('group'));
  });

  test('16.6 lambda handler rejects a plan without a run request object', async () => {
    await expect(invoke({ stage: 'plan' })).rejects.toMatchObject(refused('run'));
    await expect(invoke({ stage: 'plan', run: 'x' })).rejects.toMatchObject(refused('run'));
  });
});
