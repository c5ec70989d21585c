import * as fs from 'node:fs';
import * as path from 'node:path';
import { once } from 'node:events';
import { stringify } from 'csv-stringify';
import pMap, { pMapIterable } from 'p-map';
import { OUTPUTS, PARTS_PREFIX, partKey, type Manifest, type RunResult, type RunStatus } from '../contracts/results';
import { ExitCode, OrchardError, describeError } from '../errors';
import { CsvResultWriter, ParquetResultWriter, formatFloat32 } from '../output/table-writers';
import type { PcaModel } from '../pca/fit';
import type { Reporter } from '../progress';
import { buildReport } from '../report/build';
import { ClassSampler, SCATTER_COMPONENTS } from '../report/data';
import { formatLocation, putJson, type Storage } from '../storage';
import { settingsOf, type RunConfig } from './config';
import { assessRunLabels } from './label-quality';
import { withScratchDir } from './scratch-dir';
import { Session, runTimings } from './sessions';
import { modelIdentityOf, type ExtractMeta, type Plan, type ProjectMeta, type RunFolder } from './run-folder';

/** The local folder where publish writes the single files before uploading them. */
export const PUBLISH_SCRATCH_PREFIX = 'orchard-publish-';

/** Shard metas and projections read at once. */
const READ_CONCURRENCY = 16;

/** Every shard's extract meta, in shard order (all must be complete). */
export async function extractedShards(folder: RunFolder, plan: Plan): Promise<ExtractMeta[]> {
  return pMap(range(plan.shards), (shard) => folder.requireExtracted(shard), { concurrency: READ_CONCURRENCY });
}

export interface PublishOptions {
  readonly reporter: Reporter;
  /** The storage of the input images, for the report's thumbnails. */
  readonly input?: Storage;
  /** The session of the process that publishes (`orchard run`'s holds its earlier stages). @default a new one */
  readonly session?: Session;
  readonly shardsResumed?: number;
}

/**
 * The publish stage: errors.csv, the single-file tables when the run is small enough, pca-model.json, the
 * report, manifest.json, and `_SUCCESS` last — so that a reader waiting for `_SUCCESS` sees every other output
 * complete. The manifest is built from the shards' own records (counts, timings, engine, versions), whichever
 * processes or machines extracted them. `_work/` is deleted after a successful run unless --keep-features.
 */
export async function publishStage(folder: RunFolder, config: RunConfig, fitted: PcaModel | undefined, options: PublishOptions): Promise<RunResult> {
  const started = performance.now();
  const startedAt = new Date();
  const session = options.session ?? new Session('publish');
  const run = folder.storage;
  const plan = await folder.requirePlan();
  const extracted = await extractedShards(folder, plan);
  // Without a PCA (too few images) there is nothing projected: the outputs say why, errors.csv first.
  const projected = fitted ? await pMap(range(plan.shards), (shard) => folder.requireProjected(shard), { concurrency: READ_CONCURRENCY }) : [];
  const processed = extracted.reduce((sum, meta) => sum + meta.rows.length, 0);
  const failed = extracted.reduce((sum, meta) => sum + meta.errors.length, 0);
  const single = fitted !== undefined && projected.every((meta) => meta.kept) && processed <= config.singleFileMaxRows;

  // The report's points, sampled while pca.csv is written rather than read back from it.
  const sampled = single ? new ClassSampler() : undefined;
  await withScratchDir(PUBLISH_SCRATCH_PREFIX, async (tmp) => {
    await writeErrors(path.join(tmp, OUTPUTS.errors), extracted);
    const files: string[] = [OUTPUTS.errors];
    if (single) {
      await writeTables(tmp, folder, extracted, projected, fitted!.nComponents, { orchard_run_id: config.runId, orchard_model: (await folder.readExtractedWith())?.name ?? '' }, sampled!);
      files.push(OUTPUTS.csv, OUTPUTS.parquet);
    }
    for (const name of files) await run.putFile(name, path.join(tmp, name));
  });
  const fit = fitted ? await folder.requireFit() : undefined;
  if (fit) await run.put(OUTPUTS.model, `${JSON.stringify(fit.record.model, null, 2)}\n`);

  const errorRate = plan.images === 0 ? 0 : failed / plan.images;
  const status: RunStatus = !fitted ? 'too_few_images' : errorRate <= config.maxErrorRate ? 'succeeded' : 'too_many_errors';
  let outputs: Manifest['outputs'] = {
    ...(single ? { csv: run.uri(OUTPUTS.csv), parquet: run.uri(OUTPUTS.parquet) } : {}),
    ...(fitted ? { parts: run.uri(PARTS_PREFIX), model: run.uri(OUTPUTS.model) } : {}),
    errors: run.uri(OUTPUTS.errors),
    report: run.uri(OUTPUTS.report),
    manifest: run.uri(OUTPUTS.manifest),
    // Written only when the run succeeded: the marker that tells a reader the outputs are complete and good.
    ...(status === 'succeeded' ? { success: run.uri(OUTPUTS.success) } : {}),
  };
  const finishedAt = new Date();
  const first = extracted.find((meta) => meta.rows.length > 0) ?? extracted[0];
  const identity = await folder.readExtractedWith();
  if (!identity) throw new OrchardError(`${folder.uri()} does not record the model its shards were extracted with`, 'ERR_SHARD_INCOMPLETE');
  // This process's count when it ran every stage; for a run split into tasks, what the extract tasks recorded.
  const retries = () => (session.command === 'run' && config.s3.retries ? config.s3.retries.totals() : sumRetries(extracted));
  const cumulative = fitted ? fitted.explainedVarianceRatio.reduce((a, b) => a + b, 0) : 0;
  const labelQuality = fitted ? await assessRunLabels(folder, extracted, projected, fitted.nComponents) : undefined;
  session.span('publish', startedAt, (performance.now() - started) / 1000);
  // Every process that worked on the run (stored when it ended), and this one.
  const { timings, imagesPerSecond, processes } = runTimings([...(await folder.readSessions()).filter((record) => record.id !== session.id), session.record()]);
  let manifest: Manifest = {
    orchard: ORCHARD_VERSION,
    runId: config.runId,
    status,
    startedAt: plan.startedAt,
    finishedAt: finishedAt.toISOString(),
    input: formatLocation(config.input),
    output: run.uri(),
    config: { ...settingsOf(config), endpoint: config.s3.endpoint },
    counts: { listed: plan.images, processed, failed, errorRate, shards: plan.shards, shardsResumed: options.shardsResumed ?? 0 },
    ...(fitted ? { pca: { components: fitted.nComponents, explainedVariance: cumulative, spec: config.components } } : {}),
    ...(labelQuality ? { labelQuality } : {}),
    timings,
    imagesPerSecond,
    processes,
    engine: first!.engine,
    model: modelIdentityOf(identity),
    versions: first!.versions,
    s3Retries: retries(),
    outputs,
  };
  // The report shows the manifest, so it is built from the manifest object before manifest.json is written;
  // a report that cannot be built costs a warning, never the run (and leaves the outputs list).
  try {
    await buildReport(run, { input: options.input, manifest, reporter: options.reporter, maxPixels: config.maxPixels, sampled });
  } catch (error) {
    options.reporter.warn(`report: could not build ${outputs.report}: ${describeError(error)}`);
    const { report: _unbuilt, ...rest } = outputs;
    outputs = rest;
    manifest = { ...manifest, outputs };
  }
  // Counted again: the report's thumbnails read the input too.
  manifest = { ...manifest, s3Retries: retries() };
  await putJson(run, OUTPUTS.manifest, manifest);
  if (status === 'succeeded') {
    await run.put(OUTPUTS.success, '');
    if (!config.keepFeatures) await folder.deleteWork();
  } else if (status === 'too_many_errors') {
    options.reporter.warn(
      `${failed} of ${plan.images} images failed (${(errorRate * 100).toFixed(2)}% > --max-error-rate ${config.maxErrorRate * 100}%); see ${outputs.errors}`,
    );
  } else {
    options.reporter.warn(`only ${processed} of ${plan.images} images could be processed, too few for a PCA; see why in ${outputs.errors}`);
  }
  return { status, exitCode: status === 'succeeded' ? ExitCode.Ok : ExitCode.TooManyErrors, runUri: run.uri(), outputs, manifest };
}

/** errors.csv: every shard's failed images, in shard order. */
async function writeErrors(file: string, extracted: readonly ExtractMeta[]): Promise<void> {
  const out = fs.createWriteStream(file);
  const csv = stringify({ header: true, columns: ['key', 'reason'] });
  csv.pipe(out);
  for (const meta of extracted) {
    for (const error of meta.errors) if (!csv.write([error.key, error.reason])) await once(csv, 'drain');
  }
  csv.end();
  await once(out, 'finish');
}

/**
 * pca.csv and pca.parquet (one row group per shard), from the projections the project stage kept, read several
 * at once and written in shard order; memory stays a few shards. pca.parquet's row groups are copied from the
 * shards' parts, which hold the very same encoded columns: the file is the one encoding them again would make.
 * Every row also goes to the report's `sampler`, with its first components as pca.csv has them.
 */
async function writeTables(
  dir: string,
  folder: RunFolder,
  extracted: readonly ExtractMeta[],
  projected: readonly ProjectMeta[],
  k: number,
  metadata: Record<string, string>,
  sampler: ClassSampler,
): Promise<void> {
  const shown = Math.min(SCATTER_COMPONENTS, k);
  const csv = new CsvResultWriter(path.join(dir, OUTPUTS.csv), k);
  const parquet = new ParquetResultWriter(path.join(dir, OUTPUTS.parquet), k, metadata);
  const blocks = pMapIterable(
    projected,
    async (meta) => (meta.rows > 0 ? await Promise.all([folder.readProjections(meta), folder.storage.get(partKey(meta.shard))]) : undefined),
    { concurrency: READ_CONCURRENCY },
  );
  let shard = 0;
  for await (const read of blocks) {
    const meta = extracted[shard++]!;
    if (meta.rows.length === 0 || !read) continue;
    const [values, part] = read;
    const block = { keys: meta.rows.map((row) => row.key), labels: meta.rows.map((row) => row.label), values };
    await csv.write(block);
    await parquet.writeFromPart(part, block);
    // The numbers pca.csv reads back as (its shortest decimals), not the float32 values themselves; formatted
    // only for the rows the sampler keeps.
    block.keys.forEach((key, i) => sampler.add(key, block.labels[i]!, () => Array.from(values.subarray(i * k, i * k + shown), (value) => Number(formatFloat32(value)))));
  }
  await Promise.all([csv.close(), parquet.close()]);
}

function sumRetries(extracted: readonly ExtractMeta[]): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const meta of extracted) for (const [command, count] of Object.entries(meta.s3Retries ?? {})) totals[command] = (totals[command] ?? 0) + count;
  return totals;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const ORCHARD_VERSION: string = (require('../../package.json') as { version: string }).version;
