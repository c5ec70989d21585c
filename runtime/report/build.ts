/**
 * Builds `report.html` for a run from its published outputs: streams pca.csv (or, for a run too large for it,
 * the Parquet parts one at a time) and errors.csv (memory stays bounded by the sampling caps of data.ts,
 * whatever the number of images), reads pca-model.json and the manifest, makes a few thumbnails per class from
 * the input images, and writes the page into the run folder.
 */
import { parse } from 'csv-parse';
import { parquetReadObjects } from 'hyparquet';
import pMap from 'p-map';
import sharp from 'sharp';
import { OUTPUTS, PARTS_PREFIX, type Manifest } from '../contracts/results';
import { DEFAULT_MAX_PIXELS } from '../images/limits';
import { OrchardError, describeError } from '../errors';
import type { Reporter } from '../progress';
import { NotFoundError, getJson, type Storage } from '../storage';
import {
  ClassSampler,
  ErrorCollector,
  MAX_POINTS_PER_CLASS,
  MAX_POINTS_TOTAL,
  SCATTER_COMPONENTS,
  varianceCurve,
  type PcaModelCurveFields,
} from './data';
import { renderReport, type Thumbnail } from './html';
import { SHOWN_SUSPICIOUS } from './labels-section';

/** Thumbnail edge in pixels. */
export const THUMBNAIL_SIZE = 64;
/** Input images read at once for thumbnails. */
const THUMBNAIL_CONCURRENCY = 8;
/** Storage failures that mean no thumbnail can be read at all: warn once and stop trying. */
const STORAGE_DOWN = new Set(['ERR_STORAGE_UNREACHABLE', 'ERR_NO_SUCH_BUCKET', 'ERR_ACCESS_DENIED', 'ERR_NO_CREDENTIALS']);

export interface BuildReportOptions {
  /** Where the images are, for thumbnails; without it the report has none. */
  readonly input?: Storage;
  /** The run's manifest, when the caller has it (the pipeline builds the report before writing manifest.json). */
  readonly manifest?: Manifest;
  readonly reporter?: Reporter;
  /** Largest width × height decoded for a thumbnail. @default DEFAULTS.maxPixels */
  readonly maxPixels?: number;
  /**
   * Every row of pca.csv already given to a sampler, as its numbers read back (publish samples them while it writes
   * the file): pca.csv is then not read again. @default the rows are read from pca.csv, or from the Parquet parts
   */
  readonly sampled?: ClassSampler;
}

/** Writes `report.html` into the run folder and returns its URI. */
export async function buildReport(run: Storage, options: BuildReportOptions = {}): Promise<string> {
  const manifest = options.manifest ?? (await getJson<Manifest>(run, OUTPUTS.manifest));
  // A run without a PCA (too few images) has no model and no rows: its report shows the summary and the errors.
  const model = manifest.pca ? await getJson<PcaModelCurveFields>(run, OUTPUTS.model) : undefined;

  const sampler = options.sampled ?? new ClassSampler();
  if (!model || options.sampled) {
    // nothing to sample, or sampled already
  } else if (await run.head(OUTPUTS.csv)) {
    await readCsv(run, OUTPUTS.csv, (header) => {
      const keyAt = header.indexOf('key');
      const labelAt = header.indexOf('label');
      const pcAt = Array.from({ length: SCATTER_COMPONENTS }, (_, i) => header.indexOf(`pc_${i + 1}`)).filter((at) => at >= 0);
      if (keyAt < 0 || labelAt < 0 || pcAt.length === 0) {
        throw new Error(`${run.uri(OUTPUTS.csv)} has no key, label and pc_1 columns (header: ${header.join(',')})`);
      }
      return (record) => sampler.add(record[keyAt]!, record[labelAt]!, pcAt.map((at) => Number(record[at])));
    });
  } else {
    await readParts(run, Math.min(SCATTER_COMPONENTS, manifest.pca?.components ?? SCATTER_COMPONENTS), (key, label, pcs) => sampler.add(key, label, pcs));
  }
  const errors = new ErrorCollector();
  await readCsv(run, OUTPUTS.errors, () => (record) => errors.add(record[0] ?? '', record[1] ?? ''), { optional: true });

  const classes = sampler.result();
  const quality = manifest.labelQuality;
  const suspiciousKeys = quality?.status === 'assessed' ? quality.suspicious.slice(0, SHOWN_SUSPICIOUS).map((s) => s.key) : [];
  const classKeys = classes.flatMap((c) => c.thumbnailKeys);
  const made = options.input ? await makeThumbnails(options.input, [...new Set([...classKeys, ...suspiciousKeys])], options) : new Map<string, string>();
  const thumbnails = new Map<string, Thumbnail[]>();
  for (const c of classes) {
    thumbnails.set(c.label, c.thumbnailKeys.flatMap((key) => (made.has(key) ? [{ key, src: made.get(key)! }] : [])));
  }
  const html = renderReport({
    manifest,
    classes,
    variance: model ? varianceCurve(model, manifest.pca?.spec) : undefined,
    errors: errors.result(),
    thumbnails,
    suspiciousThumbnails: new Map(suspiciousKeys.flatMap((key) => (made.has(key) ? [[key, made.get(key)!] as const] : []))),
    sampling: { perClass: MAX_POINTS_PER_CLASS, total: MAX_POINTS_TOTAL },
    generatedAt: new Date(),
  });
  await run.put(OUTPUTS.report, html);
  return run.uri(OUTPUTS.report);
}

/**
 * Streams a CSV object row by row: `start` receives the header and returns the handler of each later row.
 * With `optional`, a missing object reads as empty.
 */
async function readCsv(
  storage: Storage,
  key: string,
  start: (header: string[]) => (record: string[]) => void,
  { optional = false } = {},
): Promise<void> {
  let source;
  try {
    source = await storage.getStream(key);
  } catch (error) {
    if (optional && error instanceof NotFoundError) return;
    throw error;
  }
  const parser = parse({ relax_column_count: true });
  source.on('error', (error) => parser.destroy(error));
  source.pipe(parser);
  let onRow: ((record: string[]) => void) | undefined;
  for await (const record of parser as AsyncIterable<string[]>) {
    if (onRow) onRow(record);
    else onRow = start(record);
  }
}

/** The rows of the Parquet dataset (`pca/part-*.parquet`), part after part, with their first `k` components. */
async function readParts(run: Storage, k: number, onRow: (key: string, label: string, pcs: number[]) => void): Promise<void> {
  const columns = ['key', 'label', ...Array.from({ length: k }, (_, i) => `pc_${i + 1}`)];
  for await (const object of run.list(PARTS_PREFIX)) {
    const data = await run.get(object.key);
    const file = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
    for (const row of (await parquetReadObjects({ file, columns })) as Record<string, unknown>[]) {
      onRow(String(row.key), String(row.label), columns.slice(2).map((name) => Number(row[name])));
    }
  }
}

/** Small JPEGs of the images `keys` (class thumbnails, suspicious labels), by key; one that cannot be read is left out. */
async function makeThumbnails(input: Storage, keys: readonly string[], options: BuildReportOptions): Promise<Map<string, string>> {
  let storageDown = false;
  const made = await pMap(
    keys,
    async (key) => {
      if (storageDown) return undefined;
      try {
        return [key, await thumbnail(await input.get(key), options.maxPixels ?? DEFAULT_MAX_PIXELS)] as const;
      } catch (error) {
        if (error instanceof OrchardError && STORAGE_DOWN.has(error.code) && !storageDown) {
          storageDown = true;
          options.reporter?.warn(`report: no thumbnails, cannot read the input images: ${describeError(error)}`);
        }
        return undefined;
      }
    },
    { concurrency: THUMBNAIL_CONCURRENCY },
  );
  // A wrong --input (a folder or prefix that is not the run's) reads nothing: say so rather than leave the page bare.
  if (keys.length > 0 && !storageDown && made.every((item) => item === undefined)) {
    options.reporter?.warn(`report: no thumbnails, none of the ${keys.length} sampled images could be read under ${input.uri()} (is it the run's input?)`);
  }
  return new Map(made.filter((item) => item !== undefined));
}

/** A THUMBNAIL_SIZE px JPEG (upright, on white, sRGB) as a data URI. */
export async function thumbnail(image: Buffer, maxPixels: number): Promise<string> {
  const jpeg = await sharp(image, { limitInputPixels: maxPixels, autoOrient: true, pages: 1 })
    .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'contain', background: '#ffffff' })
    .flatten({ background: '#ffffff' })
    .toColourspace('srgb')
    .jpeg({ quality: 75 })
    .toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}
