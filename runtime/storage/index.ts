import { LocalStorage } from './local';
import { S3Storage, createS3Client, type S3Options } from './s3';
import type { Storage } from './storage';
import type { Location } from './uri';

export * from './storage';
export * from './uri';
export { LocalStorage, md5File, noSpace } from './local';
export { keyOfName, nameOfKey } from './file-names';
export { S3Storage, S3_ATTEMPTS, S3_TIMEOUT_SECONDS, createS3Client, type S3Options } from './s3';
export { S3RetryCounter, type RetryEvent } from './s3-retries';

/** Opens the storage behind a parsed location. */
export function openStorage(location: Location, options: S3Options = {}): Storage {
  return location.kind === 's3'
    ? new S3Storage(createS3Client(options), location.bucket, location.prefix)
    : new LocalStorage(location.dir);
}
