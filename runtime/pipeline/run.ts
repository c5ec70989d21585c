import type { RunResult } from '../contracts/results';
import { OrchardError } from '../errors';
import type { TfRuntime } from '../model/backend';
import { describeEngine } from '../model/feature-model';
import { STOP_GRACE_MS, interruptible, settlesWithin } from '../interrupt';
import type { Reporter } from '../progress';
import type { RunConfig } from './config';
import { loadModel, openRun, type OpenRun } from './context';
import { extractStage, throwIfAborted } from './extract';
import { fitStage, type FitResult } from './fit';
import { acquireRunLease, planStage, validateRun } from './plan';
import { projectStage } from './project';
import { extractedShards, publishStage } from './publish';
import { Session } from './sessions';

export type { Manifest, RunResult, RunStatus } from '../contracts/results';

export interface RunDependencies {
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
  /** An already-initialised TensorFlow.js (tests and the demo reuse one across runs). */
  readonly tf?: TfRuntime;
}

/**
 * `orchard run`: every stage — plan → extract (every shard) → fit → project (every shard) → publish — in this
 * process, through the same stage functions the stage commands run one at a time, holding the run's lease (a
 * second process on the same run id is refused). Shards that are complete are not redone, so rerunning a
 * killed run with the same id resumes it. A completed run (`_SUCCESS` present) is never overwritten.
 */
export async function runPipeline(config: RunConfig, deps: RunDependencies): Promise<RunResult> {
  const run = openRun(config);
  // Every check before the first write (the lease is one). A signal ends the run whatever it waits on.
  await interruptible(validateRun(run), deps.signal);
  return withRunLease(run, 'orchard run', deps, (signal, lose) => runStages(run, { ...deps, signal }, lose));
}

/**
 * Runs work holding the run's lease (`orchard run`, and the run-wide stage commands); losing the lease stops it with
 * the lease's error. On a signal the work gets STOP_GRACE_MS to stop by itself, then is abandoned, and the lease's
 * release as long again: a storage that stopped answering never keeps an interrupted run from ending.
 */
export async function withRunLease<T>(
  run: OpenRun,
  purpose: string,
  deps: { readonly signal?: AbortSignal; readonly reporter: Reporter },
  work: (signal: AbortSignal, onLeaseLost: (error: OrchardError) => void) => Promise<T>,
): Promise<T> {
  const guarded = leaseGuard(deps.signal);
  const acquiring = acquireRunLease(run, purpose, guarded.lose, deps.reporter);
  const lease = await interruptible(acquiring, deps.signal).catch((error: unknown) => {
    // Abandoned while being taken: released whenever it arrives.
    void acquiring.then((late) => late.release(), () => undefined);
    throw error;
  });
  try {
    return await interruptible(work(guarded.signal, guarded.lose), guarded.signal);
  } catch (error) {
    throw guarded.lostWith ?? error;
  } finally {
    if (!(await settlesWithin(lease.release(), STOP_GRACE_MS))) {
      deps.reporter.warn(`could not release the run's lease ${run.folder.uri(run.folder.leaseKey('run'))} (no answer): a rerun takes it over once it expires`);
    }
  }
}

async function runStages(run: OpenRun, deps: RunDependencies, onLeaseLost: (error: OrchardError) => void): Promise<RunResult> {
  const { reporter } = deps;
  const { config, folder } = run;
  const session = new Session('run');
  return recorded(run, session, async () => {
    const planned = await session.time('list', () => planStage(run, reporter));
    throwIfAborted(deps.signal);

    const all = Array.from({ length: planned.plan.shards }, (_, shard) => shard);
    const engine = await session.time('model_load', () => loadModel(run, deps));
    let extracted;
    try {
      reporter.info(`model ${engine.model.identity.name}: ${engine.model.identity.featureDim} features from ${engine.model.identity.loadedFrom}; ${describeEngine(engine.model.engine)}`);
      extracted = await session.time('extract', () => extractStage(folder, config, run.input, all, engine, { reporter, signal: deps.signal, onLeaseLost, onShard: session.extracted }));
    } finally {
      engine.model.dispose();
    }

    throwIfAborted(deps.signal);
    const metas = await extractedShards(folder, planned.plan);
    const fitted = (await session.time('fit', () => fitOrNothing(run, metas, reporter)))?.model;
    throwIfAborted(deps.signal);
    if (fitted) await session.time('project', () => projectStage(folder, config, fitted, all, { reporter, signal: deps.signal, onLeaseLost }));
    throwIfAborted(deps.signal);
    return publishStage(folder, config, fitted, { reporter, input: run.input, shardsResumed: extracted.resumed, session });
  });
}

/**
 * Runs a process's stages, storing its session when they stop short (a signal, an error), so that the run's
 * manifest, once published by a later process, counts what this one did. A process stopped before the run had a
 * plan leaves nothing (a refused run writes nothing). Publish puts the last session into the manifest itself.
 */
export async function recorded<T>(run: OpenRun, session: Session, work: () => Promise<T>, storeOnSuccess = false): Promise<T> {
  let result: T;
  try {
    result = await work();
  } catch (error) {
    if (session.started && (await run.folder.readPlan().catch(() => undefined))) await run.folder.writeSession(session.record(true)).catch(() => undefined);
    throw error;
  }
  if (storeOnSuccess && session.started) await run.folder.writeSession(session.record());
  return result;
}

/**
 * The fit, or nothing when fewer than 2 images could be processed: publish then writes errors.csv, the report and
 * the manifest of a run without a PCA (status `too_few_images`, exit 3), so that the user sees why.
 */
export async function fitOrNothing(run: OpenRun, metas: Parameters<typeof fitStage>[2], reporter: Reporter): Promise<FitResult | undefined> {
  try {
    return await fitStage(run.folder, run.config, metas, reporter);
  } catch (error) {
    if (error instanceof OrchardError && error.code === 'ERR_TOO_FEW_IMAGES') {
      reporter.warn(`fit: ${error.message}`);
      return undefined;
    }
    throw error;
  }
}

/**
 * The signal a leased process works under: the caller's (Ctrl-C), or the loss of the lease to another process,
 * whose error then replaces the "interrupted" the stages throw.
 */
export function leaseGuard(signal: AbortSignal | undefined): { signal: AbortSignal; lose: (error: OrchardError) => void; readonly lostWith?: OrchardError } {
  const controller = new AbortController();
  const guard = {
    signal: signal ? AbortSignal.any([signal, controller.signal]) : controller.signal,
    lostWith: undefined as OrchardError | undefined,
    lose: (error: OrchardError) => {
      guard.lostWith ??= error;
      controller.abort();
    },
  };
  return guard;
}
