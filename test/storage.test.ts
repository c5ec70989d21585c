import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { S3Storage, createS3Client, openStorage, parseLocation, LocalStorage, NotFoundError, type Storage } from '../runtime/storage';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { OrchardError } from '../runtime/errors';
import { plainGetTarget } from '../runtime/storage/embedded-s3';
import { startTestS3, tempDir } from './helpers/s3';

const KEYS = ['Apple Braeburn/1_100.jpg', 'Pêche de vigne/2 100.jpg', 'b/c/é ü 中.txt'];

describe('parseLocation', () => {
  it('normalises an S3 prefix to end with a slash', () => {
    expect(parseLocation('s3://bucket/images')).toEqual({ kind: 's3', bucket: 'bucket', prefix: 'images/' });
    expect(parseLocation('s3://bucket')).toEqual({ kind: 's3', bucket: 'bucket', prefix: '' });
  });
  it('rejects other schemes with a message naming the parameter', () => {
    expect(() => parseLocation('http://x/y', '--input')).toThrow(/--input/);
  });
});

describe.each(['local', 's3'])('%s storage', (kind) => {
  let storage: Storage;
  let close = async () => {};
  beforeAll(async () => {
    if (kind === 'local') {
      storage = new LocalStorage(tempDir());
    } else {
      const s3 = await startTestS3(['storage-test']);
      close = s3.close;
      storage = new S3Storage(createS3Client(s3.options), 'storage-test', 'root/');
    }
    for (const key of KEYS) await storage.put(key, `content of ${key}`);
  });
  afterAll(() => close());

  it('lists every key below the root, unicode and spaces intact', async () => {
    const keys: string[] = [];
    for await (const item of storage.list()) keys.push(item.key);
    expect(keys.sort()).toEqual([...KEYS].sort());
  });

  it('lists below a sub-prefix only', async () => {
    const keys: string[] = [];
    for await (const item of storage.list('b/')) keys.push(item.key);
    expect(keys).toEqual(['b/c/é ü 中.txt']);
  });

  it('reads back what it wrote, and reports sizes', async () => {
    expect((await storage.get(KEYS[1])).toString()).toBe(`content of ${KEYS[1]}`);
    expect((await storage.head(KEYS[1]))?.size).toBe(Buffer.byteLength(`content of ${KEYS[1]}`));
  });

  it('streams an object back', async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of await storage.getStream(KEYS[2])) chunks.push(Buffer.from(chunk as Uint8Array));
    expect(Buffer.concat(chunks).toString()).toBe(`content of ${KEYS[2]}`);
  });

  it('raises NotFoundError for a missing key and head() gives undefined', async () => {
    await expect(storage.get('nope/missing.jpg')).rejects.toBeInstanceOf(NotFoundError);
    await expect(storage.getStream('nope/missing.jpg')).rejects.toBeInstanceOf(NotFoundError);
    expect(await storage.head('nope/missing.jpg')).toBeUndefined();
  });

  it('deletes a whole prefix and nothing else', async () => {
    await storage.put('tmp/x/1', 'a');
    await storage.put('tmp/2', 'b');
    await storage.deletePrefix('tmp/');
    const keys: string[] = [];
    for await (const item of storage.list()) keys.push(item.key);
    expect(keys.sort()).toEqual([...KEYS].sort());
  });
});

describe('S3 errors', () => {
  it('names a missing bucket in a fatal error', async () => {
    const s3 = await startTestS3(['exists']);
    try {
      const storage = openStorage(parseLocation('s3://does-not-exist/x/'), s3.options);
      const error = await storage.check().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OrchardError);
      expect((error as OrchardError).code).toBe('ERR_NO_SUCH_BUCKET');
      expect((error as OrchardError).message).toContain('does-not-exist');
    } finally {
      await s3.close();
    }
  });
});

describe('the embedded S3 server', () => {
  // Concurrent stage processes rely on S3's per-object atomicity; s3rver alone gives neither of these.
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  let storage: Storage;
  beforeAll(async () => {
    s3 = await startTestS3(['atomic']);
    storage = new S3Storage(createS3Client(s3.options), 'atomic', '');
  });
  afterAll(() => s3.close());

  it('honours If-None-Match: * as AWS S3 does: one of several concurrent creates wins, and an existing key refuses', async () => {
    const s3Storage = storage as S3Storage;
    expect(await s3Storage.exclusiveCreate()).toBe(true);
    const won = await Promise.all(Array.from({ length: 6 }, (_, i) => s3Storage.putIfAbsent('conditional/one', `writer ${i}`)));
    expect(won.filter(Boolean)).toHaveLength(1);
    // The object is the winner's, whole.
    expect((await storage.get('conditional/one')).toString()).toBe(`writer ${won.indexOf(true)}`);
    expect(await s3Storage.putIfAbsent('conditional/one', 'late')).toBe(false);
    // A plain PUT still overwrites, and once the key is deleted a conditional one creates it again.
    await storage.put('conditional/one', 'plain');
    expect((await storage.get('conditional/one')).toString()).toBe('plain');
    await storage.delete('conditional/one');
    expect(await s3Storage.putIfAbsent('conditional/one', 'again')).toBe(true);
    // Refused writes leave the connection usable: the next request on it is answered.
    expect((await storage.get('conditional/one')).toString()).toBe('again');
  });

  it('lets later conditional writes of a key through after one aborted while it waited for its turn', async () => {
    const { port } = new URL(s3.endpoint);
    const key = 'conditional/aborted';
    const head = (length: number) => `PUT /atomic/${key} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nIf-None-Match: *\r\nContent-Length: ${length}\r\n\r\n`;
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const connect = () => net.connect(Number(port), '127.0.0.1').on('error', () => undefined);
    // A takes the key's turn and holds it: its body is not all sent yet.
    const a = connect();
    a.write(`${head(10)}abc`);
    await pause(200);
    // B waits behind A, and its client goes away meanwhile.
    const b = connect();
    b.write(head(5));
    await pause(200);
    b.destroy();
    await pause(100);
    a.end('defghij');
    // A created the key: the next conditional write is refused, not left waiting for B's turn to end.
    const next = (storage as S3Storage).putIfAbsent(key, 'late');
    const answer = await Promise.race([next, pause(5000).then(() => 'no answer in 5 s')]);
    expect(answer).toBe(false);
    expect((await storage.get(key)).toString()).toBe('abcdefghij');
    a.destroy();
  });

  it('checks the bucket named in the host as well (virtual-hosted-style requests)', async () => {
    const { port } = new URL(s3.endpoint);
    const put = () =>
      new Promise<number>((resolve, reject) => {
        const request = http.request(
          { host: '127.0.0.1', port, method: 'PUT', path: '/conditional/vhost', headers: { host: 'atomic.s3.amazonaws.com', 'if-none-match': '*', 'content-length': 2 } },
          (response) => response.resume().on('end', () => resolve(response.statusCode!)),
        );
        request.on('error', reject).end('ok');
      });
    expect(await put()).toBe(200);
    expect(await put()).toBe(412);
    expect((await storage.get('conditional/vhost')).toString()).toBe('ok');
  });

  it('ignores If-None-Match when asked to, as s3rver does (orchard then takes its read-back path)', async () => {
    const plain = await startTestS3(['plain'], { conditionalWrites: false });
    try {
      const s3Storage = new S3Storage(createS3Client(plain.options), 'plain', '');
      expect(await s3Storage.exclusiveCreate()).toBe(false);
      expect(await s3Storage.putIfAbsent('k', 'a')).toBe(true);
      expect(await s3Storage.putIfAbsent('k', 'b')).toBe(true);
      expect((await s3Storage.get('k')).toString()).toBe('b');
    } finally {
      await plain.close();
    }
  });

  it("answers HEAD, GET and listings with an object's stored metadata, MD5 and size, also before its MD5 file exists", async () => {
    const client = createS3Client(s3.options);
    const body = Buffer.from('metadata read at once');
    const md5 = `"${createHash('md5').update(body).digest('hex')}"`;
    await client.send(new PutObjectCommand({ Bucket: 'atomic', Key: 'meta/one.jpg', Body: body, ContentType: 'image/jpeg', Metadata: { origin: 'test' } }));
    const expectEverywhere = async () => {
      const head = await client.send(new HeadObjectCommand({ Bucket: 'atomic', Key: 'meta/one.jpg' }));
      expect([head.ETag, head.ContentLength, head.ContentType, head.Metadata]).toEqual([md5, body.length, 'image/jpeg', { origin: 'test' }]);
      const got = await client.send(new GetObjectCommand({ Bucket: 'atomic', Key: 'meta/one.jpg' }));
      expect([got.ETag, got.ContentType, Buffer.from(await got.Body!.transformToByteArray()).toString()]).toEqual([md5, 'image/jpeg', body.toString()]);
      const listed = await client.send(new ListObjectsV2Command({ Bucket: 'atomic', Prefix: 'meta/' }));
      expect(listed.Contents?.map((object) => [object.Key, object.ETag, object.Size])).toEqual([['meta/one.jpg', md5, body.length]]);
    };
    await expectEverywhere();
    // s3rver computes an MD5 file that is missing (an object copied in by hand): the same answers.
    const md5Files = fs.readdirSync(path.join(s3.dir, 'atomic', 'meta')).filter((name) => name.endsWith('.md5'));
    expect(md5Files).toHaveLength(1);
    fs.rmSync(path.join(s3.dir, 'atomic', 'meta', md5Files[0]!));
    await expectEverywhere();
    await expect(client.send(new HeadObjectCommand({ Bucket: 'atomic', Key: 'meta/none.jpg' }))).rejects.toMatchObject({ name: 'NotFound' });
  });

  it("answers a plain GET before s3rver's stack with s3rver's own answer: status, headers and bytes, odd keys included", async () => {
    const client = createS3Client(s3.options);
    const keys = ['plain/one.jpg', "plain/it's (a) test!*.jpg", 'plain/é ü 中/plus+%25 ~.txt', 'plain/copied in by hand'];
    for (const [i, key] of keys.entries()) {
      await client.send(new PutObjectCommand({ Bucket: 'atomic', Key: key, Body: Buffer.alloc(2000 + i, i + 1), ContentType: 'image/jpeg', Metadata: { origin: `test-${i}` } }));
    }
    // An object without its stored headers: s3rver answers with its default content type.
    fs.rmSync(path.join(s3.dir, 'atomic', 'plain', 'copied in by hand._S3rver_metadata.json'));
    const { port } = new URL(s3.endpoint);
    const amzDate = new Date().toISOString().replace(/[-:]|\.\d+/g, '');
    const authorization = `AWS4-HMAC-SHA256 Credential=S3RVER/${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0a`;
    const signed = { host: `127.0.0.1:${port}`, authorization, 'x-amz-date': amzDate, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
    const get = (url: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; headers: string[]; body: Buffer }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: url, headers: { ...signed, ...headers } }, (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => {
              // Every header as sent (their order means nothing), but for the clock's and the connection's.
              const pairs = response.rawHeaders.flatMap((value, i, all) => (i % 2 === 0 && !['date', 'connection', 'keep-alive'].includes(value.toLowerCase()) ? [`${value}: ${all[i + 1]}`] : []));
              resolve({ status: response.statusCode!, headers: pairs.sort(), body: Buffer.concat(chunks) });
            });
          })
          .on('error', reject);
      });
    // Which path answered: only the early answer reads an object's file whole (s3rver streams it).
    const realFs = require('node:fs') as typeof fs;
    const readFileSync = jest.spyOn(realFs, 'readFileSync');
    const objectFilesRead = () => readFileSync.mock.calls.filter(([file]) => String(file).endsWith('._S3rver_object')).length;
    for (const [i, key] of keys.entries()) {
      const url = `/atomic/${key.split('/').map(encodeURIComponent).join('/')}?x-id=GetObject`;
      expect(plainGetTarget({ url, headers: signed }, new Set(['atomic']))).toEqual({ bucket: 'atomic', key });
      readFileSync.mockClear();
      const first = await get(url);
      expect(objectFilesRead()).toBe(1);
      // A condition that holds sends the same request through s3rver's stack.
      const throughS3rver = await get(url, { 'if-modified-since': new Date(0).toUTCString() });
      expect(objectFilesRead()).toBe(1);
      expect(first).toEqual(throughS3rver);
      expect(first.status).toBe(200);
      expect(first.body.equals(Buffer.alloc(2000 + i, i + 1))).toBe(true);
      const contentType = i < 3 ? ['Content-Type: image/jpeg', `x-amz-meta-origin: test-${i}`] : ['Content-Type: binary/octet-stream'];
      expect(first.headers).toEqual(expect.arrayContaining([...contentType, `Content-Length: ${2000 + i}`]));
    }
    // An object over 1 MiB is streamed by s3rver.
    await client.send(new PutObjectCommand({ Bucket: 'atomic', Key: 'plain/large.bin', Body: Buffer.alloc((1 << 20) + 1, 7) }));
    readFileSync.mockClear();
    expect((await get('/atomic/plain/large.bin')).body.equals(Buffer.alloc((1 << 20) + 1, 7))).toBe(true);
    expect(objectFilesRead()).toBe(0);
    readFileSync.mockRestore();
    // What it leaves to s3rver: other requests, other credentials, conditions and ranges, other buckets, dot segments.
    const buckets = new Set(['atomic']);
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg?acl', headers: signed }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, authorization: authorization.replace('S3RVER', 'NOBODY') } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: {} }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, range: 'bytes=0-9' } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, 'x-amz-content-sha256': undefined } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, 'x-amz-content-sha256': 'abc' } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, 'x-amz-date': '20200101T000000Z' } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, 'x-amz-date': `${amzDate.slice(0, 9)}24${amzDate.slice(11)}` } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, authorization: authorization.replace('S3RVER/', 'S3RVER/a,b/') } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, host: 'atomic.s3.amazonaws.com' } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg', headers: { ...signed, host: `[::1]:${port}` } }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/one.jpg#x', headers: signed }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain//one.jpg', headers: signed }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic//one.jpg', headers: signed }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/', headers: signed }, buckets)).toEqual({ bucket: 'atomic', key: 'plain/' });
    expect(plainGetTarget({ url: '/other/plain/one.jpg', headers: signed }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/plain/../one.jpg', headers: signed }, buckets)).toBeUndefined();
    expect(plainGetTarget({ url: '/atomic/', headers: signed }, buckets)).toBeUndefined();
    // A missing key is s3rver's NoSuchKey.
    expect((await get('/atomic/plain/missing.jpg')).status).toBe(404);
  });

  it('lists without a stat per file: one per key, for its metadata', async () => {
    for (let i = 0; i < 30; i++) await storage.put(`walk/${String(i).padStart(2, '0')}.jpg`, 'x');
    // Node's and fs-extra's (which s3rver's walk calls): each its own function.
    const spies = [require('node:fs'), require('fs-extra')].map((module: typeof fs) => jest.spyOn(module, 'statSync'));
    const listed: string[] = [];
    for await (const item of storage.list('walk/')) listed.push(item.key);
    const stats = spies.reduce((sum, spy) => sum + spy.mock.calls.length, 0);
    spies.forEach((spy) => spy.mockRestore());
    expect(listed).toEqual(Array.from({ length: 30 }, (_, i) => `walk/${String(i).padStart(2, '0')}.jpg`));
    // s3rver's own walk stats the object's three files (and every file of the folders on the way) besides.
    expect(stats).toBe(30);
  });

  it('never shows a reader half of an object being written', async () => {
    // Each version its own length and fill: a whole one reads back as 'a' × 4 MiB, 'b' × 3 MiB, and so on.
    const versions = ['a', 'b', 'c', 'd'].map((fill, i) => Buffer.alloc((4 - i) << 20, fill));
    await storage.put('state/blob', versions[0]!);
    let writing = true;
    const seen = new Set<string>();
    const reader = (async () => {
      while (writing) {
        const body = await storage.get('state/blob');
        seen.add(`${body.length >> 20}:${String.fromCharCode(body[0]!)}${String.fromCharCode(body[body.length - 1]!)}:${body.length & 0xfffff}`);
      }
    })();
    for (let round = 0; round < 40; round++) await storage.put('state/blob', versions[round % versions.length]!);
    writing = false;
    await reader;
    expect([...seen].filter((entry) => !['4:aa:0', '3:bb:0', '2:cc:0', '1:dd:0'].includes(entry))).toEqual([]);
    expect(seen.size).toBeGreaterThan(1);
  });

  it('keeps writing into a folder that a concurrent delete empties', async () => {
    for (let round = 0; round < 60; round++) {
      await storage.put(`leases/only-${round}`, 'x');
      await Promise.all([storage.delete(`leases/only-${round}`), storage.put(`leases/next-${round}`, 'y')]);
      expect((await storage.get(`leases/next-${round}`)).toString()).toBe('y');
      await storage.delete(`leases/next-${round}`);
    }
    const left: string[] = [];
    for await (const item of storage.list('leases/')) left.push(item.key);
    expect(left).toEqual([]);
  });
});

describe('local listing', () => {
  it('follows symbolic links to files and folders, lists a broken link, and does not loop', async () => {
    const dir = tempDir();
    const real = tempDir();
    fs.mkdirSync(path.join(real, 'Kiwi'));
    fs.writeFileSync(path.join(real, 'Kiwi', 'a.jpg'), 'a');
    fs.writeFileSync(path.join(real, 'b.jpg'), 'bb');
    fs.mkdirSync(path.join(dir, 'Lemon'));
    fs.symlinkSync(path.join(real, 'Kiwi'), path.join(dir, 'Kiwi'));
    fs.symlinkSync(path.join(real, 'b.jpg'), path.join(dir, 'Lemon', 'b.jpg'));
    fs.symlinkSync(path.join(real, 'missing.jpg'), path.join(dir, 'Lemon', 'broken.jpg'));
    fs.symlinkSync(dir, path.join(dir, 'Lemon', 'loop'));
    const listed: [string, number][] = [];
    for await (const item of new LocalStorage(dir).list()) listed.push([item.key, item.size]);
    expect(listed).toEqual([
      ['Kiwi/a.jpg', 1],
      ['Lemon/b.jpg', 2],
      ['Lemon/broken.jpg', 0],
    ]);
    await expect(new LocalStorage(dir).get('Lemon/broken.jpg')).rejects.toMatchObject({ name: 'UnreadableObjectError', reason: expect.stringContaining('symbolic link') });
  });

  it('keeps key order and sizes in folders of more files than it stats at once, sub-folders listed in place', async () => {
    const dir = tempDir();
    const want: [string, number][] = [];
    // 150 files (several windows of stats) with a sub-folder and a link to one among them, by name.
    for (let i = 0; i < 150; i++) {
      const name = `f${String(i).padStart(3, '0')}`;
      if (i % 50 === 25) {
        fs.mkdirSync(path.join(dir, name));
        for (let j = 0; j < 40; j++) {
          fs.writeFileSync(path.join(dir, name, `${j}.jpg`), Buffer.alloc(j + 1));
          want.push([`${name}/${j}.jpg`, j + 1]);
        }
        want.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      } else if (i === 99) {
        fs.symlinkSync(path.join(dir, 'f000.jpg'), path.join(dir, `${name}.jpg`));
        want.push([`${name}.jpg`, 1000]);
      } else {
        fs.writeFileSync(path.join(dir, `${name}.jpg`), Buffer.alloc(1000 + i));
        want.push([`${name}.jpg`, 1000 + i]);
      }
    }
    const listed: [string, number][] = [];
    for await (const item of new LocalStorage(dir).list()) listed.push([item.key, item.size]);
    expect(listed).toEqual(want);
  });
});

describe('S3 reads without the SDK (direct signed GET)', () => {
  const ODD_KEYS = [...KEYS, "it's (a) test!*.jpg", 'plus+and%percent/~tilde.jpg'];
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  beforeAll(async () => {
    s3 = await startTestS3(['direct-get']);
  });
  afterAll(() => s3.close());

  it('reads every key, odd characters included, without a GetObject through the SDK', async () => {
    const client = createS3Client(s3.options);
    const storage = new S3Storage(client, 'direct-get', 'in put/');
    for (const [i, key] of ODD_KEYS.entries()) await storage.put(key, Buffer.alloc(3000 + i, i + 1));
    const send = jest.spyOn(client, 'send');
    for (const [i, key] of ODD_KEYS.entries()) expect((await storage.get(key)).equals(Buffer.alloc(3000 + i, i + 1))).toBe(true);
    expect(send).not.toHaveBeenCalled();
    // What the direct path does not answer (a missing key) goes through the SDK, which says what is wrong.
    await expect(storage.get('missing.jpg')).rejects.toBeInstanceOf(NotFoundError);
    expect(send).toHaveBeenCalledTimes(1);
    send.mockRestore();
  });

  it('sends a read again at once when a connection that sat idle is reset before any answer; a busy one is a retry', async () => {
    // A server that resets every connection on its second request: after a second in the pool, as a connection the
    // server closed while idle; right after the first, as a fault.
    const requests = new Map<net.Socket, number>();
    const server = http.createServer((request, response) => {
      const count = (requests.get(request.socket) ?? 0) + 1;
      requests.set(request.socket, count);
      if (count > 1) request.socket.resetAndDestroy();
      else response.end(`bytes of ${request.url}`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const client = createS3Client({ ...s3.options, endpoint: `http://127.0.0.1:${port}` });
      const storage = new S3Storage(client, 'direct-get', '');
      const send = jest.spyOn(client, 'send');
      expect((await storage.get('a.jpg')).toString()).toBe('bytes of /direct-get/a.jpg');
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect((await storage.get('b.jpg')).toString()).toBe('bytes of /direct-get/b.jpg');
      expect(send).not.toHaveBeenCalled();
      // Two connections: the idle one was reset and the read sent again on a new one.
      expect(requests.size).toBe(2);
      // The new one at once: a reset of a connection just used goes to the SDK, as a retry.
      expect((await storage.get('c.jpg')).toString()).toBe('bytes of /direct-get/c.jpg?x-id=GetObject');
      expect(send).toHaveBeenCalledTimes(1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('hands a refused read (an unknown access key) to the SDK, whose fatal error stops the run as before', async () => {
    const storage = new S3Storage(createS3Client({ ...s3.options, credentials: { accessKeyId: 'NOBODY', secretAccessKey: 'x' } }), 'direct-get', 'in put/');
    await expect(storage.get(KEYS[0])).rejects.toBeInstanceOf(OrchardError);
  });
});
