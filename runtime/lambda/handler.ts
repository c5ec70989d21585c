/**
 * The stage function of the scale path: one Lambda handler that runs any stage of a run, called by the Step
 * Functions state machine of the OrchardScale stack (lib/constructs/scale-workflow.ts). It runs the same stage
 * functions as `orchard plan | extract | fit | project | publish` (runtime/pipeline/stages.ts), on the same run
 * folder, so a run started on the instance can be finished here and the other way round.
 */
import { SCALE_STAGES, type FitOutput, type PlanOutput, type PublishOutput, type RunRef, type ScaleRunRequest, type StageEvent } from '../contracts/scale';
import { BUCKET_PREFIXES, LAMBDA_THREADS_ENV } from '../contracts/deployment';
import type { RunResult } from '../contracts/results';
import { OrchardError, describeError, invalidParameter } from '../errors';
import { setImageThreads } from '../images/preprocess';
import { buildRunConfig, checkRunId, wholeNumber, type RunSettings } from '../pipeline/config';
import { openRun } from '../pipeline/context';
import { mergeGroups } from '../pipeline/fit';
import * as stages from '../pipeline/stages';
import { createReporter, type Reporter } from '../progress';
import { S3RetryCounter, formatLocation, parseLocation, type S3Options } from '../storage';

/** The settings a run request may carry: RunSettings' fields, checked to be all of them by the compiler. */
const SETTINGS = {
  input: 'string',
  output: 'string',
  runId: 'string',
  components: 'number',
  variance: 'number',
  model: 'string',
  featureLayer: 'string',
  inputSize: 'number',
  normalize: 'string',
  modelCache: 'string',
  engine: 'string',
  backend: 'string',
  precision: 'string',
  threads: 'number',
  batchSize: 'number',
  concurrency: 'number',
  shardSize: 'number',
  maxErrorRate: 'number',
  labelFrom: 'string',
  keepFeatures: 'boolean',
  maxPixels: 'number',
  singleFileMaxRows: 'number',
} as const satisfies Record<keyof RunSettings, 'string' | 'number' | 'boolean'>;

/** Settings of the function's machine, not of the run: a request may not set them. */
const MACHINE_ONLY = new Set(['threads', 'concurrency']);

export type StageResult = PlanOutput | FitOutput | PublishOutput | { readonly stage: string; readonly shards: readonly number[] } | { readonly stage: 'merge'; readonly group: number };

/**
 * Runs one stage. An OrchardError leaves as an error named by its code (`ERR_ACCESS_DENIED`, …): Step Functions
 * sees that name, so a Retry or Catch can tell the causes apart, and the execution fails with the message.
 */
export async function handler(received: StageEvent): Promise<StageResult> {
  let event: StageEvent;
  try {
    event = stageEvent(received);
  } catch (error) {
    throw Object.assign(new Error((error as OrchardError).message), { name: (error as OrchardError).code });
  }
  // Every line names the run and the stage: the trigger follows one run's lines in the function's shared log group.
  const reporter = createReporter({ json: true, stream: process.stdout, fields: { runId: runIdOf(event), stage: event.stage } });
  const retries = new S3RetryCounter((retry) =>
    reporter.warn(`s3: a ${retry.command} request ${retry.failed ? 'failed after' : 'needed'} ${retry.retries} retries`, { command: retry.command, retries: retry.total }),
  );
  const s3 = stageS3Options(process.env, retries);
  try {
    const machine = functionMachine(process.env);
    if (machine.threads !== undefined) setImageThreads(machine.threads);
    return await runStage(event, reporter, s3, machine);
  } catch (error) {
    if (error instanceof OrchardError) throw Object.assign(new Error(error.message), { name: error.code });
    reporter.warn(`${event?.stage ?? 'stage'}: ${describeError(error)}`);
    throw error;
  }
}

/**
 * The function's S3 client settings: the region Lambda runs in (AWS_REGION, set by Lambda; without it requests
 * would be signed for the client's default region and refused by a bucket elsewhere), and AWS_ENDPOINT_URL for an
 * S3-compatible server instead of AWS S3, as the CLI's --endpoint (tests, other clouds).
 */
export function stageS3Options(env: NodeJS.ProcessEnv, retries?: S3RetryCounter): S3Options {
  return { region: env.AWS_REGION || undefined, endpoint: env.AWS_ENDPOINT_URL || undefined, retries };
}

/**
 * The function's own machine settings: its threads come from ORCHARD_THREADS, which the stack sets from the memory
 * (the vCPUs the function pays for; it sees more cores than that). Absent, the stages use the cores they see.
 */
export function functionMachine(env: NodeJS.ProcessEnv): { threads?: number } {
  const raw = env[LAMBDA_THREADS_ENV];
  if (raw === undefined || raw === '') return {};
  const threads = Number(raw);
  if (!Number.isInteger(threads) || threads < 1) {
    throw new OrchardError(`Expected a whole number of at least 1 for ${LAMBDA_THREADS_ENV} but got ${JSON.stringify(raw)}`, 'ERR_INVALID_PARAMETER');
  }
  return { threads };
}

async function runStage(event: StageEvent, reporter: Reporter, s3: S3Options, machine: { threads?: number }): Promise<StageResult> {
  const deps = { reporter };
  switch (event.stage) {
    case 'plan':
      return plan(event.run, reporter, s3, machine);
    case 'extract':
    case 'project': {
      const run = await stages.openPlannedRun(event.BatchInput.output, event.BatchInput.runId, machine, s3);
      const shards = event.Items.map((item) => item.shard);
      reporter.info(`${event.stage}: shards ${shards.join(', ')} of run ${run.config.runId}`);
      await (event.stage === 'extract' ? stages.extractCommand(run, shards, deps) : stages.projectCommand(run, shards, deps));
      return { stage: event.stage, shards };
    }
    case 'merge': {
      const run = await stages.openPlannedRun(event.output, event.runId, machine, s3);
      await stages.mergeCommand(run, event.group);
      reporter.info(`merge: group ${event.group} of run ${run.config.runId}`);
      return { stage: 'merge', group: event.group };
    }
    case 'fit': {
      const run = await stages.openPlannedRun(event.output, event.runId, machine, s3);
      const fitted = await stages.fitCommand(run, deps);
      // Without a PCA there is nothing to project: the state machine ends with the run fit published.
      if ('published' in fitted) return { fitted: false, projectItems: '', result: publishOutput(fitted.published) };
      const explainedVariance = fitted.model.explainedVarianceRatio.reduce((a, b) => a + b, 0);
      return { fitted: true, projectItems: run.folder.storageKey(fitted.itemsKey), components: fitted.model.nComponents, explainedVariance };
    }
    case 'publish': {
      // A Publish retried (or redriven) after it committed, its answer lost on the way: the same answer again.
      const published = await stages.publishedRun(event.output, event.runId, s3);
      if (published) return publishOutput(published);
      const run = await stages.openPlannedRun(event.output, event.runId, machine, s3);
      return publishOutput(await stages.publishCommand(run, deps));
    }
  }
}

async function plan(request: ScaleRunRequest, reporter: Reporter, s3: S3Options, machine: { threads?: number }): Promise<PlanOutput> {
  const config = buildRunConfig({ ...runSettings(request), ...machine }, s3);
  if (config.output.kind !== 's3') {
    throw new OrchardError(`The scale path writes to S3: expected an s3:// URI for output but got ${JSON.stringify(request.output)}`, 'ERR_INVALID_PARAMETER');
  }
  const run = openRun(config);
  const planned = await stages.planCommand(run, { reporter });
  return {
    output: formatLocation(config.output),
    runId: config.runId,
    bucket: config.output.bucket,
    extractItems: run.folder.storageKey(planned.itemsKey),
    // Not under the run folder: the result writer cannot tag its objects for the _work/ lifecycle rule.
    mapResults: `${BUCKET_PREFIXES.mapResults}${config.runId}/`,
    images: planned.plan.images,
    shards: planned.plan.shards,
    pending: planned.pending.length,
    mergeGroups: mergeGroups(planned.plan.shards),
  };
}

/** The run request as run settings: known fields of the right types only; the machine's own are the function's. */
export function runSettings(request: ScaleRunRequest): RunSettings {
  if (typeof request !== 'object' || request === null) throw new OrchardError('Expected the run request to be an object', 'ERR_INVALID_PARAMETER');
  for (const [key, value] of Object.entries(request)) {
    const type = (SETTINGS as Record<string, string>)[key];
    if (!type || MACHINE_ONLY.has(key)) {
      throw new OrchardError(`Unknown run setting "${key}": expected some of ${Object.keys(SETTINGS).filter((k) => !MACHINE_ONLY.has(k)).join(', ')}`, 'ERR_INVALID_PARAMETER');
    }
    if (typeof value !== type) throw new OrchardError(`Expected a ${type} for run setting "${key}" but got ${JSON.stringify(value)}`, 'ERR_INVALID_PARAMETER');
  }
  return request as unknown as RunSettings;
}

function runIdOf(event: StageEvent): string | undefined {
  if (event.stage === 'plan') return event.run.runId;
  if ('BatchInput' in event) return event.BatchInput.runId;
  return event.runId;
}

/**
 * The event, checked field by field with the CLI's own rules (run id, output URI, whole numbers) before anything
 * is read or written: a run id such as `../other/run` or a missing one would otherwise name another folder.
 * Plan's run request is checked by `runSettings` and `buildRunConfig`, as `orchard run` checks its flags.
 */
export function stageEvent(event: unknown): StageEvent {
  const fields = object(event, 'the event');
  const stage = fields.stage as StageEvent['stage'];
  if (!SCALE_STAGES.includes(stage)) throw invalidParameter('stage', `one of ${SCALE_STAGES.join(', ')}`, stage);
  switch (stage) {
    case 'plan':
      return { stage, run: object(fields.run, 'run') as ScaleRunRequest };
    case 'extract':
    case 'project':
      return { stage, BatchInput: runRef(object(fields.BatchInput, 'BatchInput'), 'BatchInput.'), Items: itemShards(fields.Items) };
    case 'merge':
      return { stage, ...runRef(fields, ''), group: wholeNumber(fields.group as number, 'group') };
    default:
      return { stage, ...runRef(fields, '') };
  }
}

function object(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidParameter(name, 'an object', value);
  return value as Record<string, unknown>;
}

function runRef(fields: Record<string, unknown>, prefix: string): RunRef {
  const output = fields.output;
  if (typeof output !== 'string' || parseLocation(output, `${prefix}output`).kind !== 's3') throw invalidParameter(`${prefix}output`, 'an s3:// URI', output);
  return { output, runId: checkRunId(fields.runId, `${prefix}runId`) };
}

function itemShards(items: unknown): { shard: number }[] {
  if (!Array.isArray(items) || items.length === 0) throw invalidParameter('Items', 'a non-empty array of { "shard": n }', items);
  return items.map((item: unknown, i) => ({ shard: wholeNumber(object(item, `Items[${i}]`).shard as number, `Items[${i}].shard`) }));
}

function publishOutput(result: Pick<RunResult, 'status' | 'runUri' | 'outputs' | 'manifest'>): PublishOutput {
  const { manifest } = result;
  return {
    status: result.status,
    runUri: result.runUri,
    outputs: result.outputs as Record<string, string>,
    counts: manifest.counts,
    ...(manifest.pca ? { components: manifest.pca.components, explainedVariance: manifest.pca.explainedVariance } : {}),
    seconds: manifest.timings.total ?? 0,
    imagesPerSecond: manifest.imagesPerSecond,
  };
}
