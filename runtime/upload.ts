import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HeadObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import pMap from 'p-map';
import { ExitCode, OrchardError, describeError } from './errors';
import { keyOfName, md5File, type S3Storage } from './storage';

/**
 * `orchard upload`: copies a local image tree (Fruits-360 layout, `<Class>/<file>`) into an S3 bucket and prefix,
 * like `aws s3 sync` but with the skip rule the pipeline relies on (same size and same MD5) and a summary.
 *
 * Memory is O(files): the list of local paths and a map of the remote objects below the prefix are held while
 * the upload runs (about 200 bytes per file: a few hundred MB for millions of images). File contents are not:
 * at most `concurrency` files of up to one part each, plus `PART_QUEUE` parts per large file, are in memory.
 */

export interface UploadProgress {
  /** Files finished (uploaded, skipped or failed). */
  readonly done: number;
  readonly total: number;
  /** Bytes uploaded so far (skipped files do not count). */
  readonly bytes: number;
  readonly skipped: number;
  readonly uploaded: number;
  readonly failed: number;
}

export interface UploadOptions {
  /** Local image tree, Fruits-360 layout (`<Class>/<file>`); hidden files and folders (`.…`) are left out. */
  readonly sourceDir: string;
  /** Destination bucket and prefix. */
  readonly target: S3Storage;
  /** Files in flight at once. @default 16 */
  readonly concurrency?: number;
  /** Aborting stops new files, aborts the ones in flight and rejects with an OrchardError (exit code 130). */
  readonly signal?: AbortSignal;
  /** Called once before the first file and after every file. */
  readonly onProgress?: (progress: UploadProgress) => void;
}

export interface UploadSummary {
  readonly total: number;
  readonly uploaded: number;
  readonly skipped: number;
  /** Files that could not be uploaded (after the SDK's own retries), with a one-line reason each. */
  readonly failed: { key: string; reason: string }[];
  /** Bytes uploaded (skipped files do not count). */
  readonly bytes: number;
  readonly seconds: number;
}

/** Files above one part go up in parts of 8 MiB (multipart); smaller ones in one PUT. */
export const UPLOAD_PART_SIZE = 8 * 1024 * 1024;
/** Parts of one large file in flight at once (bounds memory: concurrency × PART_QUEUE × 8 MiB at worst). */
const PART_QUEUE = 2;
/** User metadata holding the MD5 of the whole file: the ETag of a multipart object is not one. */
export const MD5_METADATA = 'orchard-md5';
const DEFAULT_CONCURRENCY = 16;

const CONTENT_TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.bmp': 'image/bmp',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.avif': 'image/avif',
  '.heic': 'image/heic',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.json': 'application/json',
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

interface LocalFile {
  /** Relative path with `/` separators: the key below the target prefix (names that are not UTF-8 percent-encoded, as a run's keys). */
  readonly key: string;
  /** As bytes: a name on the way may not be valid UTF-8. */
  readonly file: Buffer;
}

interface RemoteObject {
  readonly size: number;
  readonly etag?: string;
}

type Outcome = 'uploaded' | 'skipped';

export async function uploadTree(options: UploadOptions): Promise<UploadSummary> {
  const started = performance.now();
  const { target, signal, onProgress } = options;
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new OrchardError(
      `Expected a whole number >= 1 for concurrency but got ${JSON.stringify(concurrency)}`,
      'ERR_INVALID_PARAMETER',
      ExitCode.Usage,
    );
  }
  const sourceDir = path.resolve(options.sourceDir);
  const stat = await fs.promises.stat(sourceDir).catch(() => undefined);
  if (!stat) {
    throw new OrchardError(`Source directory ${sourceDir} does not exist`, 'ERR_NO_SOURCE_DIR', ExitCode.Usage);
  }
  if (!stat.isDirectory()) {
    throw new OrchardError(`Source ${sourceDir} is not a directory`, 'ERR_NOT_A_DIRECTORY', ExitCode.Usage);
  }
  throwIfAborted(signal);

  const files = await walk(sourceDir);
  throwIfAborted(signal);

  // One listing of the whole prefix up front (1,000 keys per request), not one HEAD per file.
  const remote = new Map<string, RemoteObject>();
  for await (const item of target.list()) remote.set(item.key, { size: item.size, etag: item.etag });

  const failed: { key: string; reason: string }[] = [];
  let uploaded = 0;
  let skipped = 0;
  let bytes = 0;
  const report = () =>
    onProgress?.({ done: uploaded + skipped + failed.length, total: files.length, bytes, skipped, uploaded, failed: failed.length });
  report();

  const inFlight = new Set<Promise<unknown>>();
  const mapper = async (local: LocalFile): Promise<void> => {
    if (signal?.aborted) return;
    const work = syncOne(target, local, remote.get(local.key), signal);
    inFlight.add(work);
    try {
      const { outcome, size } = await work;
      if (outcome === 'skipped') skipped += 1;
      else {
        uploaded += 1;
        bytes += size;
      }
    } catch (error) {
      if (signal?.aborted) return;
      failed.push({ key: local.key, reason: reasonOf(error) });
    } finally {
      inFlight.delete(work);
    }
    report();
  };

  try {
    await pMap(files, mapper, { concurrency, stopOnError: false, signal });
  } catch (error) {
    // pMap rejects at once on abort while mappers still run: let them wind down so nothing is sent afterwards.
    await Promise.allSettled([...inFlight]);
    if (signal?.aborted) throw interrupted();
    throw error;
  }
  throwIfAborted(signal);

  return {
    total: files.length,
    uploaded,
    skipped,
    failed,
    bytes,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Uploads one file unless the remote object already holds the same bytes. */
async function syncOne(
  target: S3Storage,
  local: LocalFile,
  remote: RemoteObject | undefined,
  signal: AbortSignal | undefined,
): Promise<{ outcome: Outcome; size: number }> {
  const { size } = await fs.promises.stat(local.file);
  // Small files (all of Fruits-360) are read once, for the hash and the body; large ones are streamed twice.
  const content = size <= UPLOAD_PART_SIZE ? await fs.promises.readFile(local.file) : undefined;
  const md5 = content ? createHash('md5').update(content).digest('hex') : await md5File(local.file);
  const length = content ? content.length : size;

  if (remote && remote.size === length && (await sameContent(target, local.key, remote, md5))) {
    return { outcome: 'skipped', size: length };
  }

  const upload = new Upload({
    client: target.client,
    params: {
      Bucket: target.bucket,
      Key: target.prefix + local.key,
      Body: content ?? fs.createReadStream(local.file),
      ContentType: contentTypeOf(local.key),
      Metadata: { [MD5_METADATA]: md5 },
    },
    partSize: UPLOAD_PART_SIZE,
    queueSize: PART_QUEUE,
  });
  const onAbort = () => void upload.abort().catch(() => undefined);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await upload.done();
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return { outcome: 'uploaded', size: length };
}

/**
 * A single-part object's ETag is the MD5 of its bytes. A multipart ETag (`<md5 of part md5s>-<parts>`) is not,
 * so only then is the object's `orchard-md5` metadata read (one HEAD), as stored by this upload.
 */
async function sameContent(target: S3Storage, key: string, remote: RemoteObject, md5: string): Promise<boolean> {
  const etag = remote.etag?.toLowerCase();
  if (etag === md5) return true;
  if (etag !== undefined && !etag.includes('-')) return false;
  const head = await target.client.send(new HeadObjectCommand({ Bucket: target.bucket, Key: target.prefix + key }));
  return head.Metadata?.[MD5_METADATA]?.toLowerCase() === md5;
}

/** Every regular file below `root` (symbolic links followed, hidden entries skipped), sorted by key. */
async function walk(root: string): Promise<LocalFile[]> {
  const files: LocalFile[] = [];
  // Real paths of the folders above each pending one: a link back up the tree is not followed (no cycles).
  const pending: { dir: string | Buffer; prefix: string; ancestors: readonly string[] }[] = [
    { dir: root, prefix: '', ancestors: [(await fs.promises.realpath(root, { encoding: 'buffer' })).toString('latin1')] },
  ];
  while (pending.length > 0) {
    const { dir, prefix, ancestors } = pending.pop()!;
    let entries: fs.Dirent<Buffer>[];
    try {
      // Names as bytes, as the run's listing reads them (runtime/storage/file-names.ts).
      entries = await fs.promises.readdir(dir, { withFileTypes: true, encoding: 'buffer' });
    } catch (error) {
      throw new OrchardError(`Cannot read ${dir.toString()}: ${describeError(error)}`, 'ERR_SOURCE_UNREADABLE', ExitCode.Fatal, { cause: error });
    }
    for (const entry of entries) {
      if (entry.name[0] === 0x2e) continue;
      const full = Buffer.concat([Buffer.from(dir), Buffer.from(path.sep), entry.name]);
      const key = prefix + keyOfName(entry.name);
      let isDirectory = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await fs.promises.stat(full).catch(() => undefined); // dangling links are left out
        isDirectory = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDirectory) {
        const real = (await fs.promises.realpath(full, { encoding: 'buffer' })).toString('latin1');
        if (ancestors.includes(real)) continue;
        pending.push({ dir: full, prefix: `${key}/`, ancestors: [...ancestors, real] });
      } else if (isFile) {
        files.push({ key, file: full });
      }
    }
  }
  return files.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

function reasonOf(error: unknown): string {
  if (error instanceof S3ServiceException) {
    return `${error.name} (HTTP ${error.$metadata.httpStatusCode ?? '?'}): ${describeError(error)}`;
  }
  const code = (error as { code?: unknown })?.code;
  const message = describeError(error);
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}

function interrupted(): OrchardError {
  return new OrchardError('Upload interrupted; run it again to upload the rest', 'ERR_INTERRUPTED', ExitCode.Interrupted);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interrupted();
}
