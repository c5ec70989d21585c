import pMap from 'p-map';
import { OUTPUTS, type Manifest, type RunResult } from '../contracts/results';
import { ExitCode, OrchardError } from '../errors';
import type { TfRuntime } from '../model/backend';
import type { Reporter } from '../progress';
import { childLocation, exists, formatLocation, getJson, openStorage, parseLocation, type S3Options } from '../storage';
import { MACHINE_SETTINGS, buildRunConfig, type RunSettings } from './config';
import { mergeGroupStage, type FitResult } from './fit';
import { extractStage, throwIfAborted, type ExtractSummary } from './extract';
import { loadModel, openRun, type OpenRun } from './context';
import { planStage, storedSettings, validateRun, type PlanResult } from './plan';
import { projectStage, type ProjectSummary } from './project';
import { extractedShards, publishStage } from './publish';
import { fitOrNothing, leaseGuard, recorded, withRunLease } from './run';
import { Session } from './sessions';
import { RunFolder } from './run-folder';

/**
 * The stage commands (`orchard extract | fit | project | publish`) as functions, for the CLI and for any engine
 * that runs the stages as separate tasks. A task needs only the run's output, its id and its shards: the rest of
 * the settings were stored by `orchard plan`; the machine's own settings (threads, read-ahead) and S3 options
 * are the task's.
 */

export type MachineSettings = Partial<Pick<RunSettings, (typeof MACHINE_SETTINGS)[number]>>;

export interface StageDependencies {
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
  readonly tf?: TfRuntime;
}

/** A planned run, opened from its output and id with the settings plan stored. */
export async function openPlannedRun(output: string, runId: string, machine: MachineSettings, s3: S3Options): Promise<OpenRun> {
  const location = parseLocation(output, '--output');
  const folder = new RunFolder(openStorage(childLocation(location, runId), s3));
  const stored = await storedSettings(folder);
  if (stored.runId !== undefined && stored.runId !== runId) {
    throw new OrchardError(`${folder.uri()} holds run ${stored.runId}, not ${runId}`, 'ERR_RESUME_MISMATCH', ExitCode.Usage);
  }
  const chosen = Object.fromEntries(Object.entries(machine).filter(([, value]) => value !== undefined));
  // The run folder stays where it was found, whatever spelling of the output the task was given.
  const config = buildRunConfig({ ...stored, ...chosen, output: formatLocation(location), runId }, s3);
  return openRun(config);
}

/**
 * The result of a run already published (`_SUCCESS` written, so its manifest is whole), or undefined. A stage
 * retried after the run was published has nothing left to do: it answers with this, and succeeds.
 */
export async function publishedRun(output: string, runId: string, s3: S3Options): Promise<RunResult | undefined> {
  const run = openStorage(childLocation(parseLocation(output, '--output'), runId), s3);
  if (!(await exists(run, OUTPUTS.success))) return undefined;
  const manifest = await getJson<Manifest>(run, OUTPUTS.manifest);
  return { status: manifest.status, exitCode: ExitCode.Ok, runUri: run.uri(), outputs: manifest.outputs, manifest };
}

/** The shards asked for, checked against the plan; `all` is every shard. */
export async function shardsOf(run: OpenRun, asked: readonly number[] | 'all'): Promise<number[]> {
  const plan = await run.folder.requirePlan();
  if (asked === 'all') return Array.from({ length: plan.shards }, (_, shard) => shard);
  const beyond = asked.filter((shard) => shard >= plan.shards);
  if (beyond.length > 0) {
    throw new OrchardError(
      `Run ${run.config.runId} has ${plan.shards} shard(s) (0-${plan.shards - 1}); there is no shard ${beyond.join(', ')}`,
      'ERR_INVALID_PARAMETER',
      ExitCode.Usage,
    );
  }
  return [...asked];
}

export async function planCommand(run: OpenRun, deps: StageDependencies): Promise<PlanResult> {
  await validateRun(run);
  const session = new Session('plan');
  return recorded(run, session, () => withRunLease(run, 'orchard plan', deps, () => session.time('list', () => planStage(run, deps.reporter))), true);
}

export async function extractCommand(run: OpenRun, shards: readonly number[] | 'all', deps: StageDependencies): Promise<ExtractSummary> {
  const chosen = await shardsOf(run, shards);
  const guarded = leaseGuard(deps.signal);
  const session = new Session('extract');
  return recorded(
    run,
    session,
    async () => {
      const engine = await session.time('model_load', () => loadModel(run, deps));
      try {
        return await session.time('extract', () =>
          extractStage(run.folder, run.config, run.input, chosen, engine, { ...deps, signal: guarded.signal, onLeaseLost: guarded.lose, onShard: session.extracted }),
        );
      } catch (error) {
        throw guarded.lostWith ?? error;
      } finally {
        engine.model.dispose();
      }
    },
    true,
  );
}

export type FitCommandResult =
  | (FitResult & {
      /** Shards to project, and the key of the work-item file that lists them. */
      readonly pending: readonly number[];
      readonly itemsKey: string;
    })
  | {
      /** Fewer than 2 images could be processed: the run is published without a PCA (errors.csv says why). */
      readonly published: RunResult;
    };

export async function fitCommand(run: OpenRun, deps: StageDependencies): Promise<FitCommandResult> {
  const session = new Session('fit');
  return withRunLease(run, 'orchard fit', deps, async (signal) => {
    const plan = await run.folder.requirePlan();
    const metas = await extractedShards(run.folder, plan);
    const fitted = await recorded(run, session, () => session.time('fit', () => fitOrNothing(run, metas, deps.reporter)));
    throwIfAborted(signal);
    if (!fitted) return { published: await publishStage(run.folder, run.config, undefined, { reporter: deps.reporter, input: run.input, session }) };
    await run.folder.writeSession(session.record());
    const done = await pMap(metas, async (meta) => (await run.folder.projected(meta.shard)) !== undefined, { concurrency: 16 });
    const pending = done.flatMap((complete, shard) => (complete ? [] : [shard]));
    const itemsKey = await run.folder.writeWorkItems('project', pending);
    return { ...fitted, pending, itemsKey };
  });
}

/** One merge group of a fit split into tasks (`mergeGroups(shards)`): its shards' statistics, summed and stored. */
export async function mergeCommand(run: OpenRun, group: number): Promise<void> {
  const plan = await run.folder.requirePlan();
  const session = new Session('merge');
  await recorded(run, session, () => session.time('fit', () => mergeGroupStage(run.folder, plan.shards, group)), true);
}

export async function projectCommand(run: OpenRun, shards: readonly number[] | 'all', deps: StageDependencies): Promise<ProjectSummary> {
  const chosen = await shardsOf(run, shards);
  const { model } = await run.folder.requireFit();
  const guarded = leaseGuard(deps.signal);
  const session = new Session('project');
  return recorded(
    run,
    session,
    async () => {
      try {
        return await session.time('project', () => projectStage(run.folder, run.config, model, chosen, { ...deps, signal: guarded.signal, onLeaseLost: guarded.lose }));
      } catch (error) {
        throw guarded.lostWith ?? error;
      }
    },
    true,
  );
}

export async function publishCommand(run: OpenRun, deps: StageDependencies): Promise<RunResult> {
  if (await run.folder.isPublished()) {
    throw new OrchardError(`Run ${run.config.runId} is already published at ${run.folder.uri()}`, 'ERR_RUN_EXISTS', ExitCode.Usage);
  }
  return withRunLease(run, 'orchard publish', deps, async () => {
    const { model } = await run.folder.requireFit();
    return publishStage(run.folder, run.config, model, { reporter: deps.reporter, input: run.input });
  });
}

