import type { AddressInfo } from 'node:net';
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

/**
 * Starts a real S3 server (s3rver) on loopback, storing objects under `directory`, with the given buckets.
 * Used by `orchard demo` and by the tests: the same SDK calls as against AWS, no account needed.
 */
export async function startEmbeddedS3(directory: string, buckets: readonly string[]): Promise<EmbeddedS3> {
  // Loaded lazily: only the demo and the tests need it, not a run on EC2.
  let S3rver: S3rverClass;
  try {
    ({ default: S3rver } = (await import('s3rver')) as unknown as { default: S3rverClass });
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
  const address = (await server.run()) as AddressInfo;
  const endpoint = `http://127.0.0.1:${address.port}`;
  return {
    endpoint,
    options: { endpoint, credentials: EMBEDDED_CREDENTIALS, region: 'us-east-1' },
    close: () => server.close(),
  };
}

type S3rverClass = new (options: Record<string, unknown>) => {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
};
