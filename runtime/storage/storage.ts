import type { Readable } from 'node:stream';
import type { Location } from './uri';

/** An object below a storage root; `key` is relative to that root and uses `/` separators. */
export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** S3 ETag without quotes (an MD5 for single-part uploads); absent on the local file system. */
  readonly etag?: string;
}

/**
 * The storage port: the pipeline reads and writes through this and never knows whether it talks to S3 (AWS or
 * any S3-compatible server) or to a local directory. Keys may hold spaces and any unicode.
 */
export interface Storage {
  readonly location: Location;
  /** Full URI of a key, for messages and manifests. */
  uri(key?: string): string;
  /** Fails with a clear OrchardError when the root cannot be reached (missing bucket, no permission, …). */
  check(): Promise<void>;
  /** Every object below `prefix` (recursively), streamed page by page, in key order (UTF-8 byte order). */
  list(prefix?: string): AsyncIterable<ObjectInfo>;
  /**
   * One level below `prefix`: its objects and its sub-folders (`Class/`), each in key order. Only stores where
   * listing one folder at a time is what makes a big listing parallel (S3) have it.
   */
  listLevel?(prefix?: string): Promise<{ readonly objects: readonly ObjectInfo[]; readonly folders: readonly string[] }>;
  /** Throws NotFoundError when the key does not exist. */
  get(key: string): Promise<Buffer>;
  /** The object as a stream, for files too large to hold (pca.csv of a big run). Throws NotFoundError. */
  getStream(key: string): Promise<Readable>;
  head(key: string): Promise<ObjectInfo | undefined>;
  put(key: string, body: Buffer | string, options?: PutOptions): Promise<void>;
  /** Copies a local file in; large files go up in parts. */
  putFile(key: string, localPath: string): Promise<void>;
  /** Deletes every object below `prefix`. */
  deletePrefix(prefix: string): Promise<void>;
}

export interface PutOptions {
  /** Object tags (S3 only; a local folder has none): lifecycle rules select intermediate files by tag. */
  readonly tags?: Readonly<Record<string, string>>;
}

export class NotFoundError extends Error {
  constructor(readonly uri: string) {
    super(`${uri} does not exist`);
    this.name = 'NotFoundError';
  }
}

export async function exists(storage: Storage, key: string): Promise<boolean> {
  return (await storage.head(key)) !== undefined;
}

export async function getJson<T>(storage: Storage, key: string): Promise<T> {
  const text = (await storage.get(key)).toString('utf8');
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new Error(`${storage.uri(key)} is not valid JSON: ${(error as Error).message}`);
  }
}

export async function getJsonIfExists<T>(storage: Storage, key: string): Promise<T | undefined> {
  try {
    return await getJson<T>(storage, key);
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
}

export function putJson(storage: Storage, key: string, value: unknown, options?: PutOptions): Promise<void> {
  return storage.put(key, `${JSON.stringify(value, null, 2)}\n`, options);
}
