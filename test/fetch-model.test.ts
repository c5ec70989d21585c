import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cacheSlug } from '../runtime/model/artifacts';
import { fetchModel, handler, type FetchModelEvent } from '../runtime/lambda/fetch-model';
import { S3Storage, createS3Client } from '../runtime/storage';
import { S3_ENV } from './helpers/cli';
import { startTestS3 } from './helpers/s3';

/**
 * The data stack's custom resource, run against a real S3 server and a web server on loopback: it brings the model
 * into models/ once, pins it by SHA-256, and fails fast (with the URL and the manual command) when it cannot.
 */
const BUCKET = 'fetch-model';
const FILE = Buffer.from('pretend these are 14 MB of Keras weights');
let s3: Awaited<ReturnType<typeof startTestS3>>;
let server: http.Server;
let base: string;
let answer: (res: http.ServerResponse) => void;
let requests = 0;

beforeAll(async () => {
  Object.assign(process.env, S3_ENV);
  s3 = await startTestS3([BUCKET]);
  server = http.createServer((_req, res) => {
    requests++;
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await s3.close();
});

const event = (url: string, type: FetchModelEvent['RequestType'] = 'Create'): FetchModelEvent => ({
  RequestType: type,
  ResourceProperties: { Bucket: BUCKET, Prefix: 'models/', Url: url },
});
const bucket = () => new S3Storage(createS3Client(s3.options), BUCKET, 'models/');

test('downloads the file into models/ once, records its SHA-256 beside it, and reports it', async () => {
  answer = (res) => res.end(FILE);
  const url = `${base}/keras/weights_no_top.h5`;
  const sha = createHash('sha256').update(FILE).digest('hex');
  const created = await fetchModel(event(url), { endpoint: s3.endpoint, region: 'us-east-1' });
  expect(created.Data).toEqual({ Sha256: sha, Key: `models/${cacheSlug(url)}` });
  expect((await bucket().get(cacheSlug(url))).equals(FILE)).toBe(true);
  expect((await bucket().get(`${cacheSlug(url)}.sha256`)).toString('utf8')).toBe(`${sha}  ${cacheSlug(url)}\n`);
  // A later deploy finds it in the bucket: no download, even when the web has changed its answer.
  answer = (res) => res.writeHead(403).end('SignatureDoesNotMatch');
  const updated = await fetchModel(event(url, 'Update'), { endpoint: s3.endpoint, region: 'us-east-1' });
  expect(updated.Data?.Sha256).toBe(sha);
  expect(requests).toBe(1);
});

test('a download refused fails at once, naming the URL and the command that places the file by hand', async () => {
  answer = (res) => res.writeHead(403).end('SignatureDoesNotMatch');
  const url = `${base}/refused.h5`;
  await expect(fetchModel(event(url), { endpoint: s3.endpoint, region: 'us-east-1' })).rejects.toThrow(
    `HTTP 403`,
  );
  await expect(fetchModel(event(url), { endpoint: s3.endpoint, region: 'us-east-1' })).rejects.toThrow(
    `curl -fLo model.h5 '${url}' && aws s3 cp model.h5 's3://${BUCKET}/models/${cacheSlug(url)}', then run cdk deploy again`,
  );
  expect(await bucket().head(cacheSlug(url))).toBeUndefined();
});

test('a server that never answers fails within the timeout, not after CloudFormation\'s hour', async () => {
  answer = () => undefined; // accepts, reads the request, never answers
  const started = Date.now();
  await expect(fetchModel(event(`${base}/silent.h5`), { endpoint: s3.endpoint, region: 'us-east-1', timeoutMs: 500 })).rejects.toThrow('downloads time out after 0.5 s');
  expect(Date.now() - started).toBeLessThan(10_000);
});

test('a delete leaves the model in the bucket', async () => {
  const url = `${base}/keras/weights_no_top.h5`;
  expect(await fetchModel({ ...event(url, 'Delete'), PhysicalResourceId: 'x' })).toEqual({ PhysicalResourceId: 'x' });
  expect(await bucket().head(cacheSlug(url))).toBeDefined();
});

test('the function answers CloudFormation at the response URL, with the reason when it failed', async () => {
  const responses: { url: string; body: Record<string, unknown> }[] = [];
  const cfn = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      responses.push({ url: req.url!, body: JSON.parse(body) });
      res.end();
    });
  });
  await new Promise<void>((resolve) => cfn.listen(0, '127.0.0.1', resolve));
  const responseUrl = `http://127.0.0.1:${(cfn.address() as AddressInfo).port}/signed?x=1`;
  const ids = { ResponseURL: responseUrl, StackId: 'stack', RequestId: 'req', LogicalResourceId: 'Model' };
  try {
    answer = (res) => res.end(FILE);
    await handler({ ...event(`${base}/answered.h5`), ...ids }, { endpoint: s3.endpoint, region: 'us-east-1' });
    answer = (res) => res.writeHead(403).end();
    await handler({ ...event(`${base}/refused-again.h5`), ...ids }, { endpoint: s3.endpoint, region: 'us-east-1' });
  } finally {
    await new Promise((resolve) => cfn.close(resolve));
  }
  expect(responses.map((r) => r.url)).toEqual(['/signed?x=1', '/signed?x=1']);
  expect(responses[0]!.body).toMatchObject({ Status: 'SUCCESS', RequestId: 'req', LogicalResourceId: 'Model', Data: { Sha256: createHash('sha256').update(FILE).digest('hex') } });
  expect(responses[1]!.body).toMatchObject({ Status: 'FAILED', Reason: expect.stringContaining(`${base}/refused-again.h5`), PhysicalResourceId: 'Model' });
});
