import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ExitCode, OrchardError, describeError } from '../errors';
import { NotFoundError, type ObjectInfo, type PutOptions, type Storage } from './storage';
import { DirectGet } from './s3-direct-get';
import { retryCounterOf, type S3RetryCounter } from './s3-retries';
import type { Location } from './uri';

export interface S3Options {
  /** Any S3-compatible endpoint (a local server, MinIO, …); path-style addressing is used with it. */
  readonly endpoint?: string;
  readonly region?: string;
  /** Explicit credentials (the embedded server's fixed ones); otherwise the SDK's default provider chain. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Where retried requests are counted (and reported): a process-wide sink, not a setting of the run. */
  readonly retries?: S3RetryCounter;
  /**
   * Seconds a request may wait for its connection, and then for each sign of life from the server (socket
   * inactivity), before it fails and is retried. @default S3_TIMEOUT_SECONDS
   */
  readonly timeoutSeconds?: number;
}

/**
 * Long enough for S3 under load (its first byte comes in well under a second), short enough that an endpoint
 * that accepts connections and never answers fails a run in under 2 minutes instead of hanging it: S3_ATTEMPTS ×
 * (15 s + 3 s) + backoff (the SDK's handler starts an inactivity timer of 6 s or more 3 s after the request).
 */
export const S3_TIMEOUT_SECONDS = 15;
/** Attempts per request (the SDK's retry loop: throttling, 5xx, resets, timeouts). */
export const S3_ATTEMPTS = 5;

/** What an error message says about a client: the endpoint it talks to and its timeout. */
const clientFacts = new WeakMap<S3Client, { readonly endpoint: string; readonly timeoutSeconds: number }>();

/** Where exclusiveCreate's probe object goes, below the storage's prefix (inside a run folder: `_work/`). */
const PROBE_PREFIX = '_work/.conditional-write-probe-';

/** Parts of 16 MiB, four in flight: big result files go up fast without holding them in memory. */
const PART_SIZE = 16 * 1024 * 1024;
const PART_QUEUE = 4;

export function createS3Client(options: S3Options = {}): S3Client {
  const region = options.region ?? 'us-east-1';
  const timeoutSeconds = options.timeoutSeconds ?? S3_TIMEOUT_SECONDS;
  const client = new S3Client({
    region,
    endpoint: options.endpoint,
    forcePathStyle: options.endpoint !== undefined,
    credentials: options.credentials,
    maxAttempts: S3_ATTEMPTS,
    // Without these a request to an endpoint that accepts and never answers waits for ever.
    requestHandler: { connectionTimeout: timeoutSeconds * 1000, socketTimeout: timeoutSeconds * 1000 },
  });
  clientFacts.set(client, { endpoint: options.endpoint ?? `https://s3.${region}.amazonaws.com`, timeoutSeconds });
  options.retries?.attach(client);
  return client;
}

/** An S3 bucket and prefix behind the storage port. */
export class S3Storage implements Storage {
  readonly location: Location;

  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    readonly prefix: string,
  ) {
    this.location = { kind: 's3', bucket, prefix };
  }

  uri(key = ''): string {
    return `s3://${this.bucket}/${this.prefix}${key}`;
  }

  /**
   * Lists one page under the prefix rather than HeadBucket: HeadBucket is authorised as s3:ListBucket with no
   * s3:prefix, which a least-privilege role granted listing of one prefix only (the instance role) is denied, and
   * the listing is what a run does first anyway. A missing bucket is NoSuchBucket either way. (Not MaxKeys: 1:
   * s3rver fails any truncated ListObjectsV2 page on OpenSSL 3, its continuation tokens use DES.)
   */
  async check(): Promise<void> {
    try {
      await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix }));
    } catch (error) {
      throw this.fatal(error, this.uri());
    }
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
        );
      } catch (error) {
        throw this.fatal(error, this.uri(prefix));
      }
      for (const item of page.Contents ?? []) {
        if (!item.Key || item.Key.endsWith('/')) continue; // folder markers made by consoles
        yield { key: item.Key.slice(this.prefix.length), size: item.Size ?? 0, etag: item.ETag?.replace(/"/g, '') };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async listLevel(prefix = ''): Promise<{ objects: ObjectInfo[]; folders: string[] }> {
    const objects: ObjectInfo[] = [];
    const folders: string[] = [];
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, Delimiter: '/', ContinuationToken: token }),
        );
      } catch (error) {
        throw this.fatal(error, this.uri(prefix));
      }
      for (const item of page.Contents ?? []) {
        if (!item.Key || item.Key.endsWith('/')) continue;
        objects.push({ key: item.Key.slice(this.prefix.length), size: item.Size ?? 0, etag: item.ETag?.replace(/"/g, '') });
      }
      for (const folder of page.CommonPrefixes ?? []) if (folder.Prefix) folders.push(folder.Prefix.slice(this.prefix.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return { objects, folders };
  }

  private direct?: Promise<DirectGet | undefined>;

  async get(key: string): Promise<Buffer> {
    // The plain success case without the SDK's per-request machinery; anything else through the SDK below.
    this.direct ??= DirectGet.create(this.client, this.bucket, (clientFacts.get(this.client)?.timeoutSeconds ?? S3_TIMEOUT_SECONDS) * 1000).catch(() => undefined);
    const fast = await (await this.direct)?.get(this.prefix + key);
    if (fast instanceof Buffer) return fast;
    // The SDK's request is then the retry of this one, and counted as one (warnings, the manifest's totals).
    if (fast === 'retry') retryCounterOf(this.client)?.record('GetObject', 1, 0, false);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return Buffer.from(await out.Body!.transformToByteArray());
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError(this.uri(key));
      throw this.fatal(error, this.uri(key));
    }
  }

  async getStream(key: string): Promise<Readable> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      // In Node the SDK's body is an http.IncomingMessage, a Readable.
      return out.Body as Readable;
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError(this.uri(key));
      throw this.fatal(error, this.uri(key));
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return { key, size: out.ContentLength ?? 0, etag: out.ETag?.replace(/"/g, '') };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.fatal(error, this.uri(key));
    }
  }

  async put(key: string, body: Buffer | string, options: PutOptions = {}): Promise<void> {
    try {
      // An explicit length: the SDK cannot infer one for an empty body and warns about streams.
      const length = Buffer.byteLength(body);
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: body, ContentLength: length, Tagging: tagging(options.tags) }));
    } catch (error) {
      throw this.fatal(error, this.uri(key));
    }
  }

  async putFile(key: string, localPath: string): Promise<void> {
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: this.prefix + key, Body: createReadStream(localPath) },
        partSize: PART_SIZE,
        queueSize: PART_QUEUE,
      });
      await upload.done();
    } catch (error) {
      throw this.fatal(error, this.uri(key));
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
    } catch (error) {
      if (isNotFound(error)) return;
      throw this.fatal(error, this.uri(key));
    }
  }

  /** S3's conditional write (`If-None-Match: *`): a 412 means another writer created the object first. */
  async putIfAbsent(key: string, body: Buffer | string, options: PutOptions = {}): Promise<boolean> {
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: body, ContentLength: Buffer.byteLength(body), IfNoneMatch: '*', Tagging: tagging(options.tags) }),
      );
      return true;
    } catch (error) {
      const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
      // 412: the object exists. 409: a concurrent conditional write to the same key is in progress.
      if (status === 412 || status === 409) return false;
      throw this.fatal(error, this.uri(key));
    }
  }

  /**
   * Whether this server honours conditional writes (AWS S3 has since 2024; some S3-compatible servers ignore the
   * header and overwrite): found out once, by creating a probe object twice.
   */
  exclusiveCreate(): Promise<boolean> {
    this.exclusive ??= (async () => {
      const probe = `${PROBE_PREFIX}${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
      try {
        const first = await this.putIfAbsent(probe, '');
        const second = await this.putIfAbsent(probe, '');
        return first && !second;
      } finally {
        await this.delete(probe).catch(() => undefined);
      }
    })();
    return this.exclusive;
  }

  private exclusive?: Promise<boolean>;

  async deletePrefix(prefix: string, only?: (key: string) => boolean): Promise<void> {
    let batch: { Key: string }[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      let failed: readonly { Key?: string; Code?: string; Message?: string }[] | undefined;
      try {
        // Quiet: the answer lists only the keys that could not be deleted (a 200 with per-key errors).
        ({ Errors: failed } = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch, Quiet: true } })));
      } catch (error) {
        throw this.fatal(error, this.uri(prefix));
      }
      if (failed?.length) {
        const first = failed[0]!;
        throw new OrchardError(
          `Could not delete ${failed.length} object(s) under ${this.uri(prefix)}, e.g. s3://${this.bucket}/${first.Key}: ${first.Code} ${first.Message ?? ''}`.trim(),
          first.Code === 'AccessDenied' ? 'ERR_ACCESS_DENIED' : 'ERR_STORAGE',
          ExitCode.Fatal,
        );
      }
      batch = [];
    };
    for await (const item of this.list(prefix)) {
      if (only && !only(item.key)) continue;
      batch.push({ Key: this.prefix + item.key });
      if (batch.length === 1000) await flush();
    }
    await flush();
  }

  /** Turns SDK and network failures into one-line errors that name the bucket or key and the cause. */
  private fatal(error: unknown, uri: string): OrchardError {
    if (error instanceof OrchardError) return error;
    const name = error instanceof S3ServiceException ? error.name : ((error as { code?: string })?.code ?? (error as Error)?.name);
    const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
    if (name === 'NoSuchBucket' || (name === 'NotFound' && uri === this.uri())) {
      return new OrchardError(`Bucket ${this.bucket} does not exist (${uri})`, 'ERR_NO_SUCH_BUCKET', ExitCode.Fatal, { cause: error });
    }
    if (name === 'AccessDenied' || name === 'Forbidden' || status === 403) {
      return new OrchardError(`Access denied to ${uri}: check the IAM policy of this role or user`, 'ERR_ACCESS_DENIED', ExitCode.Fatal, { cause: error });
    }
    if (name === 'CredentialsProviderError') {
      return new OrchardError(
        `No AWS credentials to reach ${uri}: on EC2 the instance role provides them; elsewhere set AWS_PROFILE or AWS_* variables`,
        'ERR_NO_CREDENTIALS',
        ExitCode.Fatal,
        { cause: error },
      );
    }
    if (name === 'TimeoutError' || (error as { code?: string })?.code === 'ETIMEDOUT') {
      const facts = clientFacts.get(this.client);
      return new OrchardError(
        `S3 endpoint ${facts?.endpoint ?? '(unknown)'} did not answer within ${facts?.timeoutSeconds ?? S3_TIMEOUT_SECONDS} s (${S3_ATTEMPTS} attempts) ` +
          `for ${uri}: check the network path to it (route, proxy, VPC endpoint), or give a longer --s3-timeout`,
        'ERR_STORAGE_UNREACHABLE',
        ExitCode.Fatal,
        { cause: error },
      );
    }
    if (name === 'ECONNREFUSED' || name === 'ENOTFOUND' || name === 'ETIMEDOUT') {
      return new OrchardError(`Cannot reach S3 for ${uri}: ${describeError(error)}`, 'ERR_STORAGE_UNREACHABLE', ExitCode.Fatal, { cause: error });
    }
    return new OrchardError(`S3 request for ${uri} failed: ${[name, describeError(error)].filter(Boolean).join(': ')}`, 'ERR_STORAGE', ExitCode.Fatal, { cause: error });
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NoSuchKey' || error.name === 'NotFound');
}

/** S3's Tagging header: URL-encoded `key=value` pairs. */
function tagging(tags: PutOptions['tags']): string | undefined {
  return tags && Object.keys(tags).length > 0 ? new URLSearchParams(Object.entries(tags)).toString() : undefined;
}
