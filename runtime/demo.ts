import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateSampleImages, SAMPLE_CLASSES } from './images/generate';
import { describeEngine, type EnginePreference } from './model/feature-model';
import { DEFAULTS, buildRunConfig } from './pipeline/config';
import type { RunResult } from './contracts/results';
import { runPipeline } from './pipeline/run';
import { labelSummary } from './quality/labels';
import type { Reporter } from './progress';
import { S3Storage, createS3Client } from './storage';
import { startEmbeddedS3 } from './storage/embedded-s3';
import { uploadTree } from './upload';

export interface DemoOptions {
  /** Local folder for the results. */
  readonly outputDir: string;
  readonly perClass: number;
  readonly batchSize: number;
  readonly model: string;
  readonly engine: EnginePreference;
  /** Where to generate the images and leave them afterwards (for `orchard run -i <dir>`); a temp folder otherwise. */
  readonly keepImages?: string;
}

export interface DemoResult {
  readonly run: RunResult;
  readonly summary: string;
}

const BUCKET = 'orchard-demo';

/**
 * The whole chain with no AWS account: generate Fruits-360-like images, upload them to a real S3 server on
 * loopback, run the same pipeline as on EC2 against it, write the results to a local folder.
 */
export async function runDemo(options: DemoOptions, reporter: Reporter): Promise<DemoResult> {
  const scratch = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'orchard-demo-'));
  const server = await startEmbeddedS3(path.join(scratch, 's3'), [BUCKET]);
  try {
    const imagesDir = options.keepImages ? path.resolve(options.keepImages) : path.join(scratch, 'images');
    const keys = await generateSampleImages(imagesDir, { perClass: options.perClass, seed: 42 });
    reporter.info(`demo: generated ${keys.length} images of ${SAMPLE_CLASSES.length} classes in ${imagesDir}; S3 server at ${server.endpoint}`);
    const target = new S3Storage(createS3Client(server.options), BUCKET, 'images/');
    const uploaded = await uploadTree({ sourceDir: imagesDir, target });
    reporter.info(`demo: uploaded ${uploaded.uploaded} images to ${target.uri()}`);

    const config = buildRunConfig(
      { input: `s3://${BUCKET}/images/`, output: path.resolve(options.outputDir), model: options.model, engine: options.engine, batchSize: options.batchSize },
      server.options,
    );
    const run = await runPipeline(config, { reporter });
    const { manifest } = run;
    const summary = [
      `orchard demo: ${manifest.status}`,
      `  images         ${manifest.counts.processed} processed, ${manifest.counts.failed} failed (${SAMPLE_CLASSES.length} classes, from ${manifest.input} on the embedded S3 server)`,
      `  PCA            ${manifest.pca ? `k=${manifest.pca.components} components explain ${(manifest.pca.explainedVariance * 100).toFixed(2)}% of the variance (target ${DEFAULTS.variance * 100}%)` : 'none: too few images'}`,
      ...(manifest.labelQuality ? [`  labels         ${labelSummary(manifest.labelQuality)}`] : []),
      `  model          ${manifest.model.name} (${manifest.model.featureDim} features) on the ${describeEngine(manifest.engine)}`,
      `  time           ${manifest.timings.total.toFixed(1)} s, ${manifest.imagesPerSecond.toFixed(1)} images/s (extract ${manifest.timings.extract.toFixed(1)} s, fit ${manifest.timings.fit.toFixed(1)} s)`,
      `  outputs        ${run.runUri}`,
      ...Object.entries(run.outputs).map(([name, uri]) => `    ${name.padEnd(9)} ${uri}${name === 'report' ? '  (open in a browser)' : ''}`),
      ...(options.keepImages ? [`  images kept    ${imagesDir}  (next: npx orchard run -i ${imagesDir} -o results -m ${options.model})`] : []),
    ].join('\n');
    return { run, summary };
  } finally {
    await server.close();
    await fs.promises.rm(scratch, { recursive: true, force: true });
  }
}
