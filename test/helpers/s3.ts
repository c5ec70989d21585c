import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startEmbeddedS3, type EmbeddedS3, type EmbeddedS3Options } from '../../runtime/storage/embedded-s3';

/** A real S3 server on loopback for one test file, with its own temp directory and buckets. */
export async function startTestS3(buckets: readonly string[] = ['orchard-test'], options: EmbeddedS3Options = {}): Promise<EmbeddedS3 & { dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-s3-'));
  const server = await startEmbeddedS3(dir, buckets, options);
  return {
    ...server,
    dir,
    close: async () => {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function tempDir(prefix = 'orchard-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
