import * as path from 'node:path';
import { invalidParameter } from '../errors';

/** Where a storage location points: an S3 bucket and prefix, or a local directory. */
export type Location =
  | { readonly kind: 's3'; readonly bucket: string; readonly prefix: string }
  | { readonly kind: 'local'; readonly dir: string };

// Lenient on purpose (S3-compatible servers accept more than AWS does); rejects what can never be a bucket.
const BUCKET = /^[a-z0-9][a-z0-9.\-_]{1,254}$/i;

/**
 * Parses `s3://bucket/prefix/` or a local path (relative, absolute or `file://`). An S3 prefix is normalised
 * to end with `/` (or be empty) so that `s3://b/images` and `s3://b/images/` mean the same folder.
 */
export function parseLocation(uri: string, name = 'location'): Location {
  if (typeof uri !== 'string' || uri.trim() === '') throw invalidParameter(name, 'an s3:// URI or a directory', uri);
  if (uri.startsWith('s3://')) {
    const rest = uri.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    if (!BUCKET.test(bucket)) throw invalidParameter(name, 's3://<bucket>/<prefix> with a valid bucket name', uri);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1);
    return { kind: 's3', bucket, prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/` };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith('file://')) {
    throw invalidParameter(name, 'an s3:// URI or a directory', uri);
  }
  const dir = uri.startsWith('file://') ? new URL(uri).pathname : uri;
  return { kind: 'local', dir: path.resolve(dir) };
}

/** The location one level down, e.g. `<output>/<run-id>/`. */
export function childLocation(location: Location, name: string): Location {
  return location.kind === 's3'
    ? { ...location, prefix: `${location.prefix}${name}/` }
    : { kind: 'local', dir: path.join(location.dir, name) };
}

/** The URI of a key below a location, for messages and the manifest. */
export function formatLocation(location: Location, key = ''): string {
  return location.kind === 's3' ? `s3://${location.bucket}/${location.prefix}${key}` : path.join(location.dir, key);
}
