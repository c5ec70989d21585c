import { generateSampleImages } from '../../runtime/images/generate';
import { initTf } from '../../runtime/model/backend';
import { LocalStorage, S3Storage, createS3Client } from '../../runtime/storage';
import type { EmbeddedS3Options } from '../../runtime/storage/embedded-s3';
import { uploadTree } from '../../runtime/upload';
import { S3_ENV } from './cli';
import { startTestS3, tempDir } from './s3';
import { saveTinyModel } from './tiny-model';

/**
 * What a test of the CLI on real files starts from: the tiny tfjs model in a folder, generated images in a folder,
 * and the same images under `images/` of a bucket on a real S3 server (s3rver on loopback).
 */
export async function startCliFixture(options: { bucket: string; classes: readonly string[]; perClass: number; seed: number; s3?: EmbeddedS3Options }) {
  Object.assign(process.env, S3_ENV);
  const tf = await initTf('wasm');
  const modelDir = tempDir();
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  const imagesDir = tempDir();
  await generateSampleImages(imagesDir, { perClass: options.perClass, seed: options.seed, classes: options.classes });
  const s3 = await startTestS3([options.bucket], options.s3);
  await uploadTree({ sourceDir: imagesDir, target: new S3Storage(createS3Client(s3.options), options.bucket, 'images/') });
  return { modelDir, imagesDir, s3 };
}
