import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ExitCode, OrchardError } from '../runtime/errors';
import { S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree, type UploadProgress } from '../runtime/upload';
import { startTestS3, tempDir } from './helpers/s3';

const BUCKET = 'upload-test';
const SMALL = ['Apple Braeburn/1_100.jpg', 'Apple Braeburn/2_100.jpg', 'Pêche de vigne/0_100.jpg', 'Banana/r_3 1_100.png'];
const BIG = 'Big/9mib.jpg';
const BIG_SIZE = 9 * 1024 * 1024;

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');

function write(root: string, key: string, data: Buffer): void {
  const file = path.join(root, ...key.split('/'));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
}

/** Counts the commands a client sends, by name; optionally fails PutObject for chosen keys. */
function instrument(client: S3Client, failKeys: Set<string>): Map<string, number> {
  const calls = new Map<string, number>();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? '?';
      calls.set(name, (calls.get(name) ?? 0) + 1);
      const key = (args.input as { Key?: string }).Key;
      if (name === 'PutObjectCommand' && key && failKeys.has(key)) {
        throw Object.assign(new Error(`injected failure for ${key}\nsecond line`), { $fault: 'client' });
      }
      return next(args);
    },
    { step: 'initialize', name: 'countCalls' },
  );
  return calls;
}

/**
 * s3rver gives a multipart object the plain MD5 of its bytes as ETag; AWS gives `<md5 of part md5s>-<parts>`.
 * This rewrites listed ETags of objects above one part into the AWS form, so the metadata path is exercised.
 */
function awsMultipartEtags(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (context.commandName === 'ListObjectsV2Command') {
        const output = result.output as { Contents?: { Size?: number; ETag?: string }[] };
        for (const item of output.Contents ?? []) {
          if ((item.Size ?? 0) > 8 * 1024 * 1024) item.ETag = `"${'0'.repeat(32)}-2"`;
        }
      }
      return result;
    },
    { step: 'initialize', name: 'awsMultipartEtags' },
  );
}

describe('uploadTree', () => {
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  let client: S3Client;
  let target: S3Storage;
  let calls: Map<string, number>;
  const failKeys = new Set<string>();
  const source = tempDir('orchard-upload-');
  const contents = new Map<string, Buffer>();

  beforeAll(async () => {
    s3 = await startTestS3([BUCKET]);
    client = createS3Client(s3.options);
    calls = instrument(client, failKeys);
    awsMultipartEtags(client);
    target = new S3Storage(client, BUCKET, 'images/Test/');
    for (const key of SMALL) contents.set(key, randomBytes(2000 + Math.floor(Math.random() * 3000)));
    contents.set(BIG, randomBytes(BIG_SIZE));
    for (const [key, data] of contents) write(source, key, data);
    // Hidden files and folders stay home.
    write(source, '.DS_Store', randomBytes(10));
    write(source, '.cache/x.jpg', randomBytes(10));
    write(source, 'Banana/.hidden.jpg', randomBytes(10));
  });
  afterAll(async () => {
    await s3?.close();
    fs.rmSync(source, { recursive: true, force: true });
  });

  async function remoteKeys(): Promise<string[]> {
    const keys: string[] = [];
    for await (const item of target.list()) keys.push(item.key);
    return keys.sort();
  }

  it('uploads the tree with spaces and unicode in keys, multipart for big files, with md5 metadata', async () => {
    calls.clear();
    const progress: UploadProgress[] = [];
    const summary = await uploadTree({ sourceDir: source, target, concurrency: 4, onProgress: (p) => progress.push(p) });

    expect(summary).toMatchObject({ total: 5, uploaded: 5, skipped: 0, failed: [] });
    expect(summary.bytes).toBe([...contents.values()].reduce((sum, data) => sum + data.length, 0));
    expect(summary.seconds).toBeGreaterThan(0);
    expect(calls.get('ListObjectsV2Command')).toBe(1);
    expect(calls.get('HeadObjectCommand')).toBeUndefined();
    expect(calls.get('CreateMultipartUploadCommand')).toBe(1); // the 9 MiB file only
    expect(calls.get('UploadPartCommand')).toBe(2); // 8 MiB + 1 MiB
    expect(calls.get('PutObjectCommand')).toBe(SMALL.length);

    expect(await remoteKeys()).toEqual([...contents.keys()].sort());
    for (const [key, data] of contents) expect(md5(await target.get(key))).toBe(md5(data));

    const jpeg = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `images/Test/${SMALL[2]}` }));
    expect(jpeg.ContentType).toBe('image/jpeg');
    expect(jpeg.Metadata?.['orchard-md5']).toBe(md5(contents.get(SMALL[2])!));
    const png = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `images/Test/${SMALL[3]}` }));
    expect(png.ContentType).toBe('image/png');
    const big = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `images/Test/${BIG}` }));
    expect(big.Metadata?.['orchard-md5']).toBe(md5(contents.get(BIG)!));
    expect(big.ContentLength).toBe(BIG_SIZE);

    expect(progress[0]).toEqual({ done: 0, total: 5, bytes: 0, skipped: 0, uploaded: 0, failed: 0 });
    expect(progress.at(-1)).toEqual({ done: 5, total: 5, bytes: summary.bytes, skipped: 0, uploaded: 5, failed: 0 });
  });

  it('skips everything on a second run, with one listing and one HEAD (the multipart object) only', async () => {
    calls.clear();
    const summary = await uploadTree({ sourceDir: source, target });
    expect(summary).toMatchObject({ total: 5, uploaded: 0, skipped: 5, failed: [], bytes: 0 });
    expect(Object.fromEntries(calls)).toEqual({ ListObjectsV2Command: 1, HeadObjectCommand: 1 });
  });

  it('re-uploads exactly the files whose content changed, same size or not', async () => {
    const small = randomBytes(contents.get(SMALL[0])!.length); // same size, new bytes: the ETag tells
    const big = randomBytes(BIG_SIZE); // same size, multipart: the orchard-md5 metadata tells
    contents.set(SMALL[0], small);
    contents.set(BIG, big);
    write(source, SMALL[0], small);
    write(source, BIG, big);

    const summary = await uploadTree({ sourceDir: source, target });
    expect(summary).toMatchObject({ total: 5, uploaded: 2, skipped: 3, failed: [], bytes: small.length + big.length });
    expect(md5(await target.get(SMALL[0]))).toBe(md5(small));
    expect(md5(await target.get(BIG))).toBe(md5(big));

    const again = await uploadTree({ sourceDir: source, target });
    expect(again).toMatchObject({ uploaded: 0, skipped: 5 });
  });

  it('records a failed file with a one-line reason and uploads the rest', async () => {
    const added = ['Kiwi/0_100.jpg', 'Kiwi/1_100.jpg', 'Kiwi/2_100.jpg'];
    for (const key of added) write(source, key, randomBytes(500));
    failKeys.add(`images/Test/${added[1]}`);
    try {
      const summary = await uploadTree({ sourceDir: source, target });
      expect(summary).toMatchObject({ total: 8, uploaded: 2, skipped: 5 });
      expect(summary.failed).toEqual([{ key: added[1], reason: expect.stringContaining('injected failure') }]);
      expect(summary.failed[0].reason).not.toContain('\n');
      expect(await remoteKeys()).toEqual(expect.arrayContaining([added[0], added[2]]));
      expect(await remoteKeys()).not.toContain(added[1]);
    } finally {
      failKeys.clear();
    }
    expect(await uploadTree({ sourceDir: source, target })).toMatchObject({ uploaded: 1, skipped: 7, failed: [] });
  });

  it('rejects with an interruption error when aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(uploadTree({ sourceDir: source, target, signal: controller.signal })).rejects.toMatchObject({
      exitCode: ExitCode.Interrupted,
    });
  });

  it('fails with a usage error naming the path when the source is missing or not a directory', async () => {
    const missing = path.join(source, 'no such dir');
    const error = await uploadTree({ sourceDir: missing, target }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OrchardError);
    expect(error).toMatchObject({ exitCode: ExitCode.Usage });
    expect((error as Error).message).toContain(missing);

    const file = path.join(source, 'Banana', 'r_3 1_100.png');
    await expect(uploadTree({ sourceDir: file, target })).rejects.toMatchObject({
      exitCode: ExitCode.Usage,
      message: expect.stringContaining(file),
    });
  });
});
