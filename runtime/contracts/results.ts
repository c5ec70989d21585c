/**
 * The results contract: what a run folder holds once published, and the manifest that describes it. The
 * pipeline writes it, the report and the CLI read it; both import it from here, so neither imports the other.
 * It imports types only, and only from the layers below the pipeline (model, PCA, errors).
 */
import type { ExitCode } from '../errors';
import type { EngineInfo, ModelIdentity } from '../model/feature-model';
import type { ComponentsSpec } from '../pca/fit';
import type { LabelQuality } from '../quality/labels';

/** Result files in `<output>/<run-id>/`. */
export const OUTPUTS = {
  /** One row per image; written when the run has at most `singleFileMaxRows` processed images. */
  csv: 'pca.csv',
  /** The same rows in one Parquet file, under the same condition. */
  parquet: 'pca.parquet',
  model: 'pca-model.json',
  errors: 'errors.csv',
  /** Charts, classes, thumbnails and errors in one self-contained page (runtime/report/). */
  report: 'report.html',
  manifest: 'manifest.json',
  success: '_SUCCESS',
} as const;

/**
 * The projected rows as a dataset of one Parquet part per shard (`pca/part-00000.parquet`, …), the layout Spark,
 * DuckDB (`read_parquet('…/pca/*.parquet')`) and pandas read as one table. Written for every run.
 */
export const PARTS_PREFIX = 'pca/';
export const partKey = (shard: number) => `${PARTS_PREFIX}part-${String(shard).padStart(5, '0')}.parquet`;

export type OutputName = keyof typeof OUTPUTS | 'parts';

/**
 * `succeeded`: every output written, `_SUCCESS` last. `too_many_errors`: outputs written, but more images failed
 * than --max-error-rate allows. `too_few_images`: fewer than 2 images could be processed, so there is no PCA;
 * errors.csv, the report and the manifest say why. Neither of the last two writes `_SUCCESS`.
 */
export type RunStatus = 'succeeded' | 'too_many_errors' | 'too_few_images';

export interface Manifest {
  readonly orchard: string;
  readonly runId: string;
  readonly status: RunStatus;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly input: string;
  readonly output: string;
  readonly config: Record<string, unknown>;
  readonly counts: { listed: number; processed: number; failed: number; errorRate: number; shards: number; shardsResumed: number };
  /** Absent when there is no PCA (status `too_few_images`). */
  readonly pca?: { components: number; explainedVariance: number; spec: ComponentsSpec };
  /**
   * How well the features separate the labels (cross-validated 1-NN on a bounded stratified sample of the PCA
   * rows) and which labels look wrong; absent when there is no PCA.
   */
  readonly labelQuality?: LabelQuality;
  /**
   * Wall-clock seconds per stage, over every process that ran it (stages run by tasks at once count once), and
   * `total`, the time any stage ran (the time between commands, or before a resume, is not counted); `predict`
   * and `moments` are summed over the processes (within extract).
   */
  readonly timings: Record<string, number>;
  /** Images extracted by the processes that extracted them, over `timings.total`. */
  readonly imagesPerSecond: number;
  /** Which stages ran in which process (an `orchard run`, a stage command, a stage function invocation), in seconds. */
  readonly processes?: readonly { readonly id: string; readonly command: string; readonly host: string; readonly images: number; readonly interrupted?: boolean; readonly stages: Record<string, number> }[];
  /** The inference engine that ran: name, version, threads, batch size (and the compiled graph for onnx). */
  readonly engine: EngineInfo;
  readonly model: ModelIdentity;
  readonly versions: Record<string, string>;
  /** S3 requests the SDK had to retry (throttling, server errors, reset connections), per command. */
  readonly s3Retries: Record<string, number>;
  /** URIs of the outputs written, by name (`parts` is the prefix of the Parquet dataset). */
  readonly outputs: Partial<Record<OutputName, string>>;
}

export interface RunResult {
  readonly status: RunStatus;
  readonly exitCode: ExitCode;
  readonly runUri: string;
  readonly outputs: Manifest['outputs'];
  readonly manifest: Manifest;
}
