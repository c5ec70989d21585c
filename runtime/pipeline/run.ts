import type { RunResult } from '../contracts/results';
import type { TfRuntime } from '../model/backend';
import { describeEngine } from '../model/feature-model';
import type { Reporter } from '../progress';
import type { RunConfig } from './config';
import { loadModel, openRun } from './context';
import { extractStage, throwIfAborted } from './extract';
import { fitStage } from './fit';
import { planStage } from './plan';
import { projectStage } from './project';
import { extractedShards, publishStage } from './publish';

export type { Manifest, RunResult, RunStatus } from '../contracts/results';

export interface RunDependencies {
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
  /** An already-initialised TensorFlow.js (tests and the demo reuse one across runs). */
  readonly tf?: TfRuntime;
}

/**
 * `orchard run`: every stage — plan → extract (every shard) → fit → project (every shard) → publish — in this
 * process, through the same stage functions the stage commands run one at a time. Shards that are complete are
 * not redone, so rerunning a killed run with the same id resumes it. A completed run (`_SUCCESS` present) is
 * never overwritten.
 */
export async function runPipeline(config: RunConfig, deps: RunDependencies): Promise<RunResult> {
  const { reporter } = deps;
  const timer = stageTimer();
  const run = openRun(config);
  const { folder } = run;
  const planned = await timer.time('list', () => planStage(run, reporter));
  throwIfAborted(deps.signal);

  const engine = await timer.time('model_load', () => loadModel(run, deps));
  let resumed = 0;
  try {
    reporter.info(`model ${engine.model.identity.name}: ${engine.model.identity.featureDim} features from ${engine.model.identity.loadedFrom}; ${describeEngine(engine.model.engine)}`);
    const all = Array.from({ length: planned.plan.shards }, (_, shard) => shard);
    const extracted = await timer.time('extract', () => extractStage(folder, config, run.input, all, engine, { reporter, signal: deps.signal }));
    resumed = extracted.resumed;
  } finally {
    engine.model.dispose();
  }

  throwIfAborted(deps.signal);
  const metas = await extractedShards(folder, planned.plan);
  const fitted = await timer.time('fit', () => fitStage(folder, config, metas, reporter));
  throwIfAborted(deps.signal);
  const all = Array.from({ length: planned.plan.shards }, (_, shard) => shard);
  await timer.time('project', () => projectStage(folder, config, fitted.model, all, { reporter, signal: deps.signal }));
  throwIfAborted(deps.signal);
  return publishStage(folder, config, fitted.model, { reporter, input: run.input, shardsResumed: resumed, timings: timer.result() });
}

function stageTimer() {
  const started = performance.now();
  const timings: Record<string, number> = {};
  return {
    async time<T>(stage: string, work: () => Promise<T>): Promise<T> {
      const t0 = performance.now();
      try {
        return await work();
      } finally {
        timings[stage] = (performance.now() - t0) / 1000;
      }
    },
    /** The stages so far, and when the run started (publish adds its own time and the total). */
    result: () => ({ stages: { ...timings }, startedAt: started }),
  };
}
