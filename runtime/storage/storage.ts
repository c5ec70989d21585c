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
  /**
   * Fails with a clear OrchardError when the root cannot be reached (missing bucket, no permission, …). With
   * `mustExist` (an input), a local folder must already exist and be readable.
   */
  check(options?: { readonly mustExist?: boolean }): Promise<void>;
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
  /** Deletes every object below `prefix`, or only those whose key `only` accepts (the others, and their folders, stay). */
  deletePrefix(prefix: string, only?: (key: string) => boolean): Promise<void>;
  /** Deletes one object (nothing happens if it is not there). */
  delete(key: string): Promise<void>;
  /**
   * Creates the object only if no object has the key: true if this call created it, false if one was there.
   * Atomic where the store can do it (a local file opened for exclusive creation; S3's conditional write,
   * `If-None-Match: *`); `exclusiveCreate()` says whether it can.
   */
  putIfAbsent(key: string, body: Buffer | string, options?: PutOptions): Promise<boolean>;
  /** Whether putIfAbsent is atomic here (some S3-compatible servers ignore conditional writes). */
  exclusiveCreate(): Promise<boolean>;
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

/**
 * One object cannot be read for a reason of its own (a symbolic link that loops or points nowhere): a row of
 * errors.csv to a run, not a reason to stop it. Access denied, by contrast, is about the environment (a
 * policy, a permission) and stops the run, so that a rerun once it is fixed reads the images it could not.
 */
export class UnreadableObjectError extends Error {
  constructor(
    readonly uri: string,
    /** Short and single-line: it becomes the errors.csv reason. */
    readonly reason: string,
  ) {
    super(`${uri}: ${reason}`);
    this.name = 'UnreadableObjectError';
  }
}

export async function exists(storage: Storage, key: string): Promise<boolean> {
  return (await storage.head(key)) !== undefined;
}

/** Thrown for an object that exists but does not parse as JSON (truncated, or not what it should be). */
export class InvalidJsonError extends Error {
  constructor(
    readonly uri: string,
    readonly detail: string,
  ) {
    super(`${uri} is not valid JSON: ${detail}`);
    this.name = 'InvalidJsonError';
  }
}

export async function getJson<T>(storage: Storage, key: string): Promise<T> {
  const text = (await storage.get(key)).toString('utf8');
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new InvalidJsonError(storage.uri(key), (error as Error).message);
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
