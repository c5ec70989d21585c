/**
 * The scale path's contract: what the Step Functions state machine (lib/constructs/scale-workflow.ts) sends to
 * the stage function (runtime/lambda/handler.ts) and reads back, and what the trigger puts into an execution.
 * The state machine's payload templates name these fields; the handler and the trigger type them from here.
 *
 * A leaf module: it imports nothing, so every layer may import it.
 */

/** The stages the function runs; `merge` sums one group of shard statistics when a fit is split into tasks. */
export const SCALE_STAGES = ['plan', 'extract', 'merge', 'fit', 'project', 'publish'] as const;
export type ScaleStage = (typeof SCALE_STAGES)[number];

/**
 * A run's settings as the execution input carries them: `orchard run`'s options in camelCase (`components`,
 * `variance`, `model`, `shardSize`, `maxErrorRate`, …). `plan` validates them as `orchard run` does; the other
 * stages read what plan stored in the run folder.
 */
export interface ScaleRunRequest {
  readonly input: string;
  /** An s3:// URI: every task of the run reads and writes the same run folder. */
  readonly output: string;
  readonly runId: string;
  readonly [setting: string]: string | number | boolean;
}

/** The execution input the trigger sends. */
export interface ScaleExecutionInput {
  readonly run: ScaleRunRequest;
  /** Lambda invocations at once in each distributed map. @default the stack's (context orchard:scaleConcurrency) */
  readonly maxConcurrency?: number;
  /** Shards per invocation (the map's item batch). @default SCALE_DEFAULTS.shardsPerTask */
  readonly shardsPerTask?: number;
}

export const SCALE_DEFAULTS = {
  /**
   * Two 4096-image shards per invocation: about 1.5 minutes of work on 2 vCPUs, so the model load and the cold
   * start (a few seconds) are paid once per 8,192 images, and a retried invocation redoes at most that much.
   */
  shardsPerTask: 2,
  /**
   * Distributed map concurrency when neither the execution nor the deployment says otherwise: 8, so that a run fits
   * an account whose Lambda concurrency is still limited to 10 (new accounts), with room for the other stages.
   */
  maxConcurrency: 8,
} as const;

/** Which run a task works on: the output and the run id (the rest is in the run folder). */
export interface RunRef {
  readonly output: string;
  readonly runId: string;
}

export type StageEvent =
  | { readonly stage: 'plan'; readonly run: ScaleRunRequest }
  /** A distributed map's item batch: `BatchInput` as the state machine sets it, `Items` from the item file. */
  | { readonly stage: 'extract' | 'project'; readonly BatchInput: RunRef; readonly Items: readonly { readonly shard: number }[] }
  | ({ readonly stage: 'merge'; readonly group: number } & RunRef)
  | ({ readonly stage: 'fit' | 'publish' } & RunRef);

/** What plan returns: where the map's items are, and how the fit is split. Small: it travels in the state. */
export interface PlanOutput extends RunRef {
  readonly bucket: string;
  /** Key (in `bucket`) of the JSON array of `{ "shard": n }` still to extract. */
  readonly extractItems: string;
  /** Prefix (in `bucket`) under which the distributed maps write their results. */
  readonly mapResults: string;
  readonly images: number;
  readonly shards: number;
  readonly pending: number;
  /** Merge groups of a split fit (empty: the fit merges every shard itself). */
  readonly mergeGroups: readonly number[];
}

/** What fit returns: whether there is a PCA, and the projection's items. */
export interface FitOutput {
  readonly fitted: boolean;
  /** Key (in the plan's bucket) of the JSON array of the shards still to project; empty when there is no PCA. */
  readonly projectItems: string;
  readonly components?: number;
  readonly explainedVariance?: number;
  /** Set when there is no PCA: fit published the run itself (`too_few_images`), and this is how it ended. */
  readonly result?: PublishOutput;
}

/** What publish (or a fit without PCA) ends the run with: the same facts `orchard run` prints. */
export interface PublishOutput {
  readonly status: string;
  readonly runUri: string;
  readonly outputs: Readonly<Record<string, string>>;
  readonly counts: Readonly<Record<string, number>>;
  readonly components?: number;
  readonly explainedVariance?: number;
  readonly seconds: number;
  readonly imagesPerSecond: number;
}
