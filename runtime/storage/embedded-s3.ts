import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, fstat, readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import { validateHeaderName, validateHeaderValue, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { OrchardError, describeError } from '../errors';
import type { S3Options } from './s3';

/**
 * s3rver's fixed development credentials. They only open the embedded loopback server: they are no secret
 * and grant nothing on AWS.
 */
const EMBEDDED_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface EmbeddedS3 {
  readonly endpoint: string;
  /** Options for createS3Client/openStorage that reach this server. */
  readonly options: S3Options;
  close(): Promise<void>;
}

export interface EmbeddedS3Options {
  /**
   * Honour `If-None-Match: *` on a PUT as AWS S3 does (412 when the object exists), so that a lease is taken in
   * one request. False: the header is ignored, as s3rver itself and some S3-compatible servers do, and orchard
   * takes its read-back path (a write, 100 ms, a read). @default true
   */
  readonly conditionalWrites?: boolean;
}

/**
 * Starts a real S3 server (s3rver) on loopback, storing objects under `directory`, with the given buckets.
 * Used by `orchard demo` and by the tests: the same SDK calls as against AWS, no account needed.
 */
export async function startEmbeddedS3(directory: string, buckets: readonly string[], options: EmbeddedS3Options = {}): Promise<EmbeddedS3> {
  // Loaded lazily: only the demo and the tests need it, not a run on EC2.
  let S3rver: S3rverClass;
  let utils: S3rverUtils;
  let S3Object: S3ObjectClass;
  try {
    // Its utilities first: its file store takes `walk` from them as it loads.
    ({ default: utils } = (await import('s3rver/lib/utils.js')) as unknown as { default: S3rverUtils });
    walkWithoutStats(utils);
    ({ default: S3rver } = (await import('s3rver')) as unknown as { default: S3rverClass });
    ({ default: S3Object } = (await import('s3rver/lib/models/object.js')) as unknown as { default: S3ObjectClass });
  } catch (error) {
    // The instance bundle leaves s3rver out: the demo is for a clone of the repository.
    throw new OrchardError(
      `The embedded S3 server needs the s3rver npm package, which is not installed next to this orchard ` +
        `(${describeError(error)}). Fix: run the demo from a clone of the repository after npm ci`,
      'ERR_NO_EMBEDDED_S3',
    );
  }
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory,
    silent: true,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  makeAtomicPerObject(server.store);
  readMetadataAtOnce(server.store);
  dropRequestLogger(server);
  answerPlainGetsFirst(server, new Set(buckets), { capitalizeHeader: utils.capitalizeHeader, S3Object });
  if (options.conditionalWrites !== false) honourConditionalWrites(server);
  const address = (await server.run()) as AddressInfo;
  const endpoint = `http://127.0.0.1:${address.port}`;
  return {
    endpoint,
    options: { endpoint, credentials: EMBEDDED_CREDENTIALS, region: 'us-east-1' },
    close: () => server.close(),
  };
}

/**
 * s3rver's file store is not S3: a PUT writes the object file in place and answers before the bytes are on disk
 * (a GET right after it, from another process, can read half an object), and a DELETE removes emptied folders,
 * so a concurrent PUT below them fails with an unhandled ENOENT that kills the server's process. S3 itself is
 * atomic per object. Concurrent stage processes (the scale path's workers, the stage-command tests) need that,
 * so these operations are replaced: a PUT streams to a temporary file beside the object (listing ignores
 * names without s3rver's suffix) and renames it into place once it is on disk; a GET sends one version whole;
 * a DELETE tolerates the folder it empties being refilled or removed by a concurrent request.
 */
function makeAtomicPerObject(store: FilesystemStore): void {
  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    const temporary = `${objectPath}.${randomBytes(6).toString('hex')}.partial`;
    const md5 = createHash('md5');
    let size = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        md5.update(chunk);
        size += chunk.length;
        callback(null, chunk);
      },
    });
    const content: Readable | Buffer = object.content;
    try {
      await pipeline(Buffer.isBuffer(content) ? [content] : content, counted, await openInFolder(temporary));
      await fs.rename(temporary, objectPath);
    } catch (error) {
      await fs.rm(temporary, { force: true });
      throw error;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };

  // A GET takes the object's size from one stat and its bytes from a later open: a PUT renamed into place between
  // the two would send one version's length with the other's bytes. Such a pair is read again.
  const getObject = store.getObject.bind(store);
  store.getObject = async (bucket, key, options) => {
    for (let attempt = 1; ; attempt++) {
      const object = await getObject(bucket, key, options);
      if (!object?.content || attempt === 5) return object;
      const opened = await promisify(fstat)(object.content.fd);
      if (opened.size === Number(object.metadata['content-length'])) return object;
      object.content.destroy();
    }
  };

  store.deleteObject = async (bucket, key) => {
    const objectPath = store.getResourcePath(bucket, key, 'object');
    await Promise.all([objectPath, `${objectPath}.md5`, store.getResourcePath(bucket, key, 'metadata.json')].map((file) => fs.rm(file, { force: true })));
    // Remove the folders this delete emptied, as s3rver does, unless a concurrent PUT is filling them again.
    for (let folder = path.dirname(objectPath); folder !== store.getBucketPath(bucket) && folder.length > 1; folder = path.dirname(folder)) {
      try {
        await fs.rmdir(folder);
      } catch {
        return;
      }
    }
  };
}

/**
 * s3rver reads an object's metadata (a stat, its metadata file, its MD5 file) through fs-extra's promises: nine
 * calls into libuv per object (each read is an open, a stat, a read and a close), for every GET, HEAD and every
 * key of a listing page. On a loopback test server the same reads done synchronously cost less, and hold its
 * event loop for tens of microseconds per object: the CPU of a small GET, client and server in one process, 8 at
 * once, 1.18–1.28 → 0.89–1.01 ms (two alternations; a listing is no faster). An object without its MD5 file yet
 * (s3rver then computes and stores it) goes the original way.
 */
function readMetadataAtOnce(store: FilesystemStore): void {
  const original = store.getMetadata.bind(store);
  // No object (its error), or no MD5 file yet: s3rver's own way.
  store.getMetadata = async (bucket, key) => metadataAtOnce(store, bucket, key)?.metadata ?? original(bucket, key);
}

/**
 * An object's metadata as s3rver's getMetadata gives it (stored headers, then ETag, Last-Modified, Content-Length)
 * and its size, read synchronously; undefined when the object or its MD5 file is missing. Throws for a stored
 * metadata file that cannot be read.
 */
function metadataAtOnce(store: FilesystemStore, bucket: string, key: string): { metadata: Record<string, unknown>; size: number } | undefined {
  const objectPath = store.getResourcePath(bucket, key, 'object');
  let stat: Stats;
  let md5: string;
  try {
    stat = statSync(objectPath);
    md5 = readFileSync(`${objectPath}.md5`, 'utf8');
  } catch {
    return undefined;
  }
  let stored: Record<string, unknown> | undefined;
  try {
    stored = JSON.parse(readFileSync(store.getResourcePath(bucket, key, 'metadata.json'), 'utf8')) as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return { metadata: { ...stored, etag: JSON.stringify(md5), 'last-modified': stat.mtime.toUTCString(), 'content-length': stat.size }, size: stat.size };
}

/**
 * s3rver lists a bucket by walking its folder and stats every entry to tell files from folders: three files per
 * object, and every page of 1,000 keys walks again the whole folder it starts in, so a listing of 20,000 keys in 8
 * folders made hundreds of thousands of stats. The folder entries' own types say the same without a stat (a
 * symbolic link, which s3rver itself never makes, is still followed by one). Same paths, same order.
 */
function walkWithoutStats(utils: S3rverUtils): void {
  utils.walk = function* walk(dir, recurseFilter): Generator<string> {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const filePath = path.posix.join(dir, entry.name);
      const isDirectory = entry.isSymbolicLink() ? statSync(filePath).isDirectory() : entry.isDirectory();
      if (!isDirectory) yield filePath;
      else if (!recurseFilter || recurseFilter(filePath)) yield* walk(filePath, recurseFilter);
    }
  };
}

/**
 * s3rver formats two coloured log lines for every request (koa-logger, then chalk) even when it is silent, and
 * only then throws them away: a third of its CPU per GET on the project's machine (0.84 → 0.54 ms per small
 * GET on average, three alternations in one process). A silent server leaves that middleware out.
 */
function dropRequestLogger(server: { middleware: { name: string }[] }): void {
  const at = server.middleware.findIndex((middleware) => middleware.name === 'logger');
  if (at >= 0) server.middleware.splice(at, 1);
}

/**
 * A plain GET of a whole small object (path style to an address, signed with the embedded credentials, no query but the SDK's
 * `x-id`, no range or condition): a run's one read per image. Answered from the object's files before s3rver's
 * Koa stack, whose routing, context and response machinery cost more than the client and the image's decoding
 * together. The server's CPU per small GET, the client in another process, 8 at once: 0.61–0.74 → 0.08–0.10 ms;
 * a 20,000-image run through it on 2 cores 188.5–188.9 → 192.9–193.4 images/s (two alternations). The answer is
 * s3rver's: the same files, headers and status. Anything else, and any object not found here, goes to s3rver.
 */
function answerPlainGetsFirst(server: S3rverApp, buckets: ReadonlySet<string>, s3rver: S3rverModels): void {
  const callback = server.callback.bind(server);
  server.callback = () => {
    const koa = callback();
    return (request, response) => {
      const object = request.method === 'GET' ? plainGetTarget(request, buckets) : undefined;
      const found = object && readWholeObject(server.store, object.bucket, object.key, s3rver);
      if (!found) return koa(request, response);
      response.writeHead(200, { 'Accept-Ranges': 'bytes', ...found.headers });
      response.end(found.body);
    };
  };
}

const PLAIN_QUERY = new Set(['', '?x-id=GetObject']);
/** Headers s3rver acts on in a GET: a range, conditions, CORS, a website redirect (which it refuses on a GET). */
const LEFT_TO_S3RVER = ['range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'origin', 'x-amz-website-redirect-location'];
/** Larger objects (a run's feature shards, models) are streamed by s3rver rather than read whole at once. */
const MAX_PLAIN_GET_BYTES = 1 << 20;

/** The bucket and key of a GET that answerPlainGetsFirst answers itself; undefined for one s3rver should. */
export function plainGetTarget(request: Pick<IncomingMessage, 'url' | 'headers'>, buckets: ReadonlySet<string>): { bucket: string; key: string } | undefined {
  const url = request.url ?? '';
  // s3rver's URL parser drops a fragment; its router matches no empty path segment: its answers, not ours.
  if (url.includes('#')) return undefined;
  const queryAt = url.indexOf('?');
  const pathname = queryAt < 0 ? url : url.slice(0, queryAt);
  if (!PLAIN_QUERY.has(queryAt < 0 ? '' : url.slice(queryAt))) return undefined;
  // A host name other than an address is s3rver's virtual-hosted style (the bucket in the name).
  // (Koa keeps an IPv6 address's brackets, which s3rver then takes for a host name: IPv4 only here.)
  const host = (request.headers.host ?? '').split(':', 1)[0]!;
  if (isIP(host) !== 4 && host !== 'localhost') return undefined;
  if (!signedByEmbeddedCredentials(request.headers)) return undefined;
  if (LEFT_TO_S3RVER.some((header) => request.headers[header] !== undefined)) return undefined;
  const match = /^\/([^/]+)\/(.+)$/.exec(pathname);
  if (!match) return undefined;
  let bucket: string;
  let key: string;
  try {
    [bucket, key] = [decodeURIComponent(match[1]!), decodeURIComponent(match[2]!)];
  } catch {
    return undefined;
  }
  const parts = key.split('/');
  if (!buckets.has(bucket) || parts.some((part, i) => part === '.' || part === '..' || (part === '' && i < parts.length - 1))) return undefined;
  return { bucket, key };
}

/**
 * A SigV4 header with the embedded access key, a payload hash and a date within s3rver's 15 minutes: what s3rver
 * accepts (it checks no V4 signature). Whatever it would refuse goes to it, for its error.
 */
function signedByEmbeddedCredentials(headers: IncomingHttpHeaders): boolean {
  if (!SIGV4_HEADER.test(headers.authorization ?? '') || !PAYLOAD_HASH.test(String(headers['x-amz-content-sha256']))) return false;
  const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(String(headers['x-amz-date']));
  if (!date) return false;
  const [year, month, day, hour, minute, second] = date.slice(1).map(Number) as [number, number, number, number, number, number];
  const time = Date.UTC(year, month - 1, day, hour, minute, second);
  // Out-of-range fields (hour 24, day 32), which Date.UTC would roll over, s3rver refuses.
  if (new Date(time).toISOString().replace(/[-:]|\.\d+/g, '') !== headers['x-amz-date']) return false;
  return Math.abs(Date.now() - time) <= 15 * 60_000;
}

const SIGV4_HEADER = new RegExp(`^AWS4-HMAC-SHA256 Credential=${EMBEDDED_CREDENTIALS.accessKeyId}/[^,]*, ?SignedHeaders=[^,]+, ?Signature=\\w+$`);
const PAYLOAD_HASH = /^(UNSIGNED-PAYLOAD|STREAMING-AWS4-HMAC-SHA256-PAYLOAD|[0-9A-Fa-f]{64})$/;

/**
 * A small object's bytes and s3rver's headers for it (through its own object model: the headers it keeps, its
 * default content type), read at once; undefined when it is not there whole, its bucket has a CORS or website
 * configuration (s3rver's answer then depends on them), or a stored header is not one Node can send.
 */
function readWholeObject(store: FilesystemStore, bucket: string, key: string, s3rver: S3rverModels): { headers: Record<string, string>; body: Buffer } | undefined {
  try {
    if (['cors.xml', 'website.xml'].some((resource) => existsSync(store.getResourcePath(bucket, undefined, resource)))) return undefined;
    const found = metadataAtOnce(store, bucket, key);
    if (!found || found.size > MAX_PLAIN_GET_BYTES) return undefined;
    const body = readFileSync(store.getResourcePath(bucket, key, 'object'));
    // A PUT renamed into place between the stat and the read: s3rver's path reads it again.
    if (body.length !== found.size) return undefined;
    const { metadata } = new s3rver.S3Object(bucket, key, null, found.metadata);
    const headers = Object.entries(metadata).map(([name, value]) => [s3rver.capitalizeHeader(name), String(value)] as const);
    // A hand-edited metadata file could hold what writeHead would throw on, outside any handler.
    for (const [name, value] of headers) {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    }
    return { headers: Object.fromEntries(headers), body };
  } catch {
    return undefined;
  }
}

const PRECONDITION_FAILED =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition></Error>';

/**
 * s3rver ignores `If-None-Match: *` and overwrites. AWS S3 refuses the write with 412 when the object exists
 * (since 2024), and orchard's leases use that: without it, each lease costs a write, a 100 ms wait and a read
 * (lease.ts), per shard and stage. Conditional PUTs of one key are taken one at a time (the check and the write
 * would race otherwise); a refused one's body is read and dropped, so that the connection stays usable.
 */
function honourConditionalWrites(server: S3rverApp): void {
  const turns = new Map<string, Promise<void>>();
  const conditional = async (ctx: KoaContext, next: () => Promise<void>): Promise<void> => {
    const match = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
    // A multipart part (uploadId) is not the object: only a whole-object PUT is conditional.
    if (ctx.method !== 'PUT' || ctx.get('if-none-match') !== '*' || ctx.query.uploadId !== undefined || !match) return next();
    const [bucket, key] = [decodeURIComponent(match[1]!), decodeURIComponent(match[2]!)];
    const id = `${bucket}/${key}`;
    const previous = turns.get(id) ?? Promise.resolve();
    let done!: () => void;
    const turn = previous.then(() => new Promise<void>((resolve) => (done = resolve)));
    turns.set(id, turn);
    await previous;
    try {
      const found = await fs.stat(server.store.getResourcePath(bucket, key, 'object')).then(
        () => true,
        () => false,
      );
      if (!found) return await next();
      // `finished` also settles for a request already ended or aborted (while it waited for its turn): a listener
      // for 'end' would then wait for ever, and so would every later conditional write of the key.
      ctx.req.resume();
      await finished(ctx.req).catch(() => undefined);
      ctx.status = 412;
      ctx.type = 'application/xml';
      ctx.body = PRECONDITION_FAILED;
    } finally {
      done();
      if (turns.get(id) === turn) turns.delete(id);
    }
  };
  // After s3rver's virtual-host middleware (which rewrites a bucket named in the host into the path), before its
  // router.
  const at = server.middleware.findIndex((middleware) => middleware.name === 'vhost');
  if (at < 0) throw new Error("s3rver's middleware has changed: no 'vhost' to put the conditional-write check after");
  server.middleware.splice(at + 1, 0, conditional as unknown as { name: string });
}

/** Opens a file for writing, creating its folder, again if a concurrent DELETE removes the folder meanwhile. */
async function openInFolder(file: string): Promise<NodeJS.WritableStream> {
  for (let attempt = 1; ; attempt++) {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const stream = createWriteStream(file);
    try {
      await new Promise<void>((resolve, reject) => stream.once('open', () => resolve()).once('error', reject));
      return stream;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 5) throw error;
    }
  }
}

/** The parts of s3rver's FilesystemStore that makeAtomicPerObject uses or replaces. */
interface FilesystemStore {
  getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  getBucketPath(bucket: string): string;
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
  putObject(object: { bucket: string; key: string; content: Readable | Buffer; metadata: unknown }): Promise<{ size: number; md5: string }>;
  /** The content is a read stream, already open, of the object's file; null content for an unsatisfiable range. */
  getObject(bucket: string, key: string, options: unknown): Promise<{ content: (Readable & { readonly fd: number }) | null; metadata: Record<string, string | number> } | null>;
  deleteObject(bucket: string, key: string): Promise<void>;
  /** An object's stored metadata with its ETag, Last-Modified and Content-Length; ENOENT when it does not exist. */
  getMetadata(bucket: string, key: string): Promise<Record<string, unknown>>;
}

interface S3rverApp {
  readonly store: FilesystemStore;
  /** Koa's middleware stack (s3rver is a Koa application). */
  readonly middleware: { name: string }[];
  /** Koa's request listener, which s3rver's run() gives the HTTP server. */
  callback(): (request: IncomingMessage, response: ServerResponse) => void;
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}

/** The parts of s3rver's lib/utils.js used here. */
interface S3rverUtils {
  /** Its header spelling, so that an answer given before its stack reads as its own. */
  capitalizeHeader(name: string): string;
  /** Every file below a folder, depth first in readdir order, entering the folders `recurseFilter` accepts. */
  walk(dir: string, recurseFilter?: (dirPath: string) => boolean): Iterable<string>;
}

/** s3rver's object model (lib/models/object.js): the metadata it answers with, from what is stored. */
type S3ObjectClass = new (bucket: string, key: string, content: null, metadata: Record<string, unknown>) => { readonly metadata: Record<string, unknown> };

/** What an answer given before s3rver's stack takes from s3rver, so that it reads as its own. */
interface S3rverModels {
  readonly capitalizeHeader: (name: string) => string;
  readonly S3Object: S3ObjectClass;
}

type S3rverClass = new (options: Record<string, unknown>) => S3rverApp;

/** The parts of Koa's context the conditional-write middleware uses. */
interface KoaContext {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string | string[] | undefined>;
  readonly req: Readable;
  get(header: string): string;
  status: number;
  type: string;
  body: unknown;
}
