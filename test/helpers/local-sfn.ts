/**
 * Runs a synthesized state machine definition locally: aws-local-stepfunctions executes its states (Pass, Task,
 * inline Map, Choice, Retry, Catch, payload templates), with each Lambda Task replaced by a local function; the
 * Distributed Map states, whose ItemReader, ItemBatcher and ResultWriter that library does not implement, are run
 * by `distributedMap` below, which does what the Step Functions documentation says the service does:
 *
 * - ItemReader (S3 JSON): reads the JSON array at Parameters.Bucket/Key (paths resolved on the state input);
 * - ItemBatcher: splits the items into batches of MaxItemsPerBatch(Path); each child execution gets
 *   `{ "BatchInput": <BatchInput resolved on the state input>, "Items": [ … ] }`;
 * - MaxConcurrency(Path): at most that many child executions at once;
 * - ToleratedFailurePercentage: past it the state fails with States.ExceedToleratedFailureThreshold;
 * - ResultWriter: writes `<Prefix>/<map run id>/manifest.json` and `SUCCEEDED_0.json` / `FAILED_0.json` and the
 *   state's result is `{ "MapRunArn": …, "ResultWriterDetails": { "Bucket": …, "Key": <manifest key> } }`.
 *
 * Each child execution runs the map's ItemProcessor with aws-local-stepfunctions too, so its Retry is the
 * library's. The definition's paths are resolved with the small JSONPath subset the definition uses ($.a.b).
 */
import { randomUUID } from 'node:crypto';
import pMap from 'p-map';
import { StateMachine } from 'aws-local-stepfunctions';
import type { Storage } from '../../runtime/storage';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type StateJson = Record<string, any>;
export type LocalTask = (input: any) => Promise<unknown>;

export interface MapRunRecord {
  readonly state: string;
  readonly bucket: string;
  readonly itemsKey: string;
  readonly items: number;
  readonly batches: readonly { readonly BatchInput: Json; readonly Items: Json[] }[];
  readonly resultKey: string;
}

export interface LocalExecutionOptions {
  /** Lambda Task states by name → the local function that replaces them. */
  readonly tasks: Readonly<Record<string, LocalTask>>;
  /** The S3 bucket the maps read items from and write results to (the real S3 server, by bucket name). */
  readonly bucket: (name: string) => Storage;
  /** Called for every distributed map run: what was read, how it was batched, where results went. */
  readonly onMapRun?: (run: MapRunRecord) => void;
}

/** Runs `definition` on `input`; resolves with the execution's output, rejects with its error. */
export async function runLocally(definition: StateJson, input: Json, options: LocalExecutionOptions): Promise<unknown> {
  const distributed: Record<string, StateJson> = {};
  const rewritten = rewriteDistributedMaps(definition, distributed);
  const tasks: Record<string, LocalTask> = { ...options.tasks };
  const retryIntervals: Record<string, number> = {};
  for (const [name, state] of Object.entries(distributed)) {
    tasks[name] = (stateInput) => distributedMap(name, state, stateInput, options);
  }
  for (const name of stateNames(definition)) retryIntervals[name] = 0;
  const machine = new StateMachine(rewritten as any, { validationOptions: { checkArn: false, checkPaths: false } });
  const execution = machine.run(input as any, {
    overrides: { taskResourceLocalHandlers: tasks as any, retryIntervalOverrides: retryIntervals },
    context: { Execution: { Id: `arn:aws:states:local:000000000000:execution:orchard:${randomUUID()}`, Input: input, Name: 'local' } },
  } as any);
  // The library wraps how the execution failed in an ExecutionError: the service reports the error itself.
  return execution.result.catch((error: unknown) => {
    throw failureOf(error);
  });
}

/** The error an execution failed with (its Error name and Cause message), unwrapped from the library's ExecutionError. */
function failureOf(error: unknown): Error {
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? cause : (error as Error);
}

/** The definition with each DISTRIBUTED Map replaced by a Task of the same name, Next/End, ResultPath, Retry and Catch. */
function rewriteDistributedMaps(definition: StateJson, found: Record<string, StateJson>): StateJson {
  const states: Record<string, StateJson> = {};
  for (const [name, state] of Object.entries(definition.States as Record<string, StateJson>)) {
    if (state.Type === 'Map' && state.ItemProcessor?.ProcessorConfig?.Mode === 'DISTRIBUTED') {
      found[name] = state;
      const { ItemProcessor: _p, ItemReader: _r, ItemBatcher: _b, ResultWriter: _w, MaxConcurrency: _m, MaxConcurrencyPath: _mp, ToleratedFailurePercentage: _t, Label: _l, ItemSelector: _s, ...kept } = state;
      // A map run lasts as long as its children; the library's default Task timeout (60 s) is not the service's.
      states[name] = { ...kept, Type: 'Task', Resource: `arn:aws:states:::local:distributed-map:${name}`, TimeoutSeconds: 3600 };
    } else if (state.Type === 'Map' && state.ItemProcessor) {
      states[name] = { ...state, ItemProcessor: rewriteDistributedMaps(state.ItemProcessor, found) };
    } else {
      states[name] = state;
    }
  }
  return { ...definition, States: states };
}

function stateNames(definition: StateJson): string[] {
  return Object.entries(definition.States as Record<string, StateJson>).flatMap(([name, state]) => [name, ...(state.ItemProcessor ? stateNames(state.ItemProcessor) : [])]);
}

async function distributedMap(name: string, state: StateJson, input: Json, options: LocalExecutionOptions): Promise<Json> {
  const reader = state.ItemReader;
  if (reader?.ReaderConfig?.InputType !== 'JSON' || !/:states:::s3:getObject$/.test(reader.Resource)) {
    throw new Error(`${name}: only an S3 JSON ItemReader is emulated, not ${JSON.stringify(reader)}`);
  }
  const { Bucket: bucket, Key: itemsKey } = resolveTemplate(reader.Parameters, input) as { Bucket: string; Key: string };
  const items = JSON.parse((await options.bucket(bucket).get(itemsKey)).toString('utf8')) as Json[];
  if (!Array.isArray(items)) throw new Error(`${name}: the item file s3://${bucket}/${itemsKey} does not hold a JSON array`);

  const batcher = state.ItemBatcher;
  const perBatch = batcher ? Number(batcher.MaxItemsPerBatch ?? resolvePath(input, batcher.MaxItemsPerBatchPath)) : 1;
  const batchInput = batcher?.BatchInput === undefined ? undefined : resolveTemplate(batcher.BatchInput, input);
  const batches = [];
  for (let i = 0; i < items.length; i += perBatch) batches.push(batcher ? { BatchInput: batchInput ?? {}, Items: items.slice(i, i + perBatch) } : items[i]);
  const concurrency = Number(state.MaxConcurrency ?? resolvePath(input, state.MaxConcurrencyPath) ?? 0) || Infinity;

  // A child execution runs the processor as a state machine of its own: StartAt and States, no ProcessorConfig.
  const { ProcessorConfig: _config, ...childDefinition } = state.ItemProcessor as StateJson;
  const processor = new StateMachine(childDefinition as any, { validationOptions: { checkArn: false, checkPaths: false } });
  const retryIntervals = Object.fromEntries(stateNames(state.ItemProcessor).map((child) => [child, 0]));
  const outcomes = await pMap(
    batches,
    async (batch) => {
      try {
        const output = await processor.run(batch as any, { overrides: { taskResourceLocalHandlers: options.tasks as any, retryIntervalOverrides: retryIntervals } } as any).result;
        return { ok: true as const, input: batch, output };
      } catch (error) {
        const failure = failureOf(error);
        return { ok: false as const, input: batch, error: failure.name, cause: failure.message };
      }
    },
    { concurrency },
  );

  const mapRunId = randomUUID();
  const writer = state.ResultWriter && (resolveTemplate(state.ResultWriter.Parameters, input) as { Bucket: string; Prefix: string });
  const prefix = writer ? `${writer.Prefix.replace(/\/?$/, '/')}${mapRunId}/` : '';
  const succeeded = outcomes.filter((outcome) => outcome.ok);
  const failed = outcomes.filter((outcome) => !outcome.ok);
  if (writer) {
    const storage = options.bucket(writer.Bucket);
    const files = [
      { name: 'SUCCEEDED_0.json', entries: succeeded },
      { name: 'FAILED_0.json', entries: failed },
    ].filter((file) => file.entries.length > 0);
    for (const file of files) await storage.put(`${prefix}${file.name}`, JSON.stringify(file.entries.map((entry) => ({ Input: JSON.stringify(entry.input), Output: 'output' in entry ? JSON.stringify(entry.output) : undefined, Status: entry.ok ? 'SUCCEEDED' : 'FAILED' }))));
    await storage.put(
      `${prefix}manifest.json`,
      JSON.stringify({ DestinationBucket: writer.Bucket, MapRunArn: `arn:aws:states:local:000000000000:mapRun:orchard/${state.Label ?? name}:${mapRunId}`, ResultFiles: Object.fromEntries(files.map((file) => [file.name.replace(/_0\.json$/, ''), [{ Key: `${prefix}${file.name}`, Size: 0 }]])) }),
    );
  }
  options.onMapRun?.({ state: name, bucket, itemsKey, items: items.length, batches: batches as unknown as MapRunRecord['batches'], resultKey: `${prefix}manifest.json` });

  const tolerated = Number(state.ToleratedFailurePercentage ?? 0);
  if (failed.length > 0 && (failed.length / outcomes.length) * 100 > tolerated) {
    throw Object.assign(new Error(`${failed.length} of ${outcomes.length} child executions failed: ${failed[0]!.error}: ${failed[0]!.cause}`), { name: 'States.ExceedToleratedFailureThreshold' });
  }
  const mapRunArn = `arn:aws:states:local:000000000000:mapRun:orchard/${state.Label ?? name}:${mapRunId}`;
  return writer ? { MapRunArn: mapRunArn, ResultWriterDetails: { Bucket: writer.Bucket, Key: `${prefix}manifest.json` } } : (succeeded.map((outcome) => outcome.output) as Json[]);
}

/** A payload template (`"key.$": "$.path"` fields resolved on `input`), as Parameters, BatchInput and the like take. */
export function resolveTemplate(template: Json, input: Json): Json {
  if (Array.isArray(template)) return template.map((value) => resolveTemplate(value, input));
  if (template === null || typeof template !== 'object') return template;
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(template)) {
    if (key.endsWith('.$')) out[key.slice(0, -2)] = resolvePath(input, value as string);
    else out[key] = resolveTemplate(value, input);
  }
  return out;
}

/** `$.a.b` on `input` (the subset of JSONPath the definition uses); anything else is refused, not guessed. */
export function resolvePath(input: Json, path: string | undefined): Json {
  if (path === undefined) return null;
  if (path === '$') return input;
  if (!/^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(path)) throw new Error(`path ${path} is outside the JSONPath subset this driver resolves`);
  let value: Json = input;
  for (const part of path.slice(2).split('.')) {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || !(part in value)) throw new Error(`path ${path} does not exist in ${JSON.stringify(input).slice(0, 200)}`);
    value = value[part]!;
  }
  return value;
}
