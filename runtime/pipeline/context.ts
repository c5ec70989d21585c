import { readModelFiles } from '../model/artifacts';
import type { TfRuntime } from '../model/backend';
import { loadEngine, type LoadedEngine } from '../model/engine';
import { resolveModel } from '../model/resolve';
import { runSessions } from '../onnx/predict-pool';
import type { Reporter } from '../progress';
import { childLocation, openStorage, type Location, type Storage } from '../storage';
import { defaultModelCache, type RunConfig } from './config';
import { requireInt8Graph } from './int8-graph';
import { RunFolder } from './run-folder';

/** A run's storages, opened once from its config. */
export interface OpenRun {
  readonly config: RunConfig;
  readonly input: Storage;
  readonly folder: RunFolder;
  readonly modelCache: Location;
}

export function openRun(config: RunConfig): OpenRun {
  return {
    config,
    input: openStorage(config.input, config.s3),
    folder: new RunFolder(openStorage(childLocation(config.output, config.runId), config.s3)),
    modelCache: config.modelCache ?? defaultModelCache(config.output),
  };
}

/** The engine for the run's model, its files read from the cache that plan filled (or from their source). */
export async function loadModel(run: OpenRun, deps: { readonly reporter: Reporter; readonly tf?: TfRuntime }): Promise<LoadedEngine> {
  const { config } = run;
  const preset = resolveModel(config.model);
  const cache = openStorage(run.modelCache, config.s3);
  const files = await readModelFiles(preset.source, { cache, s3: config.s3 });
  const int8 = config.precision === 'int8' ? await requireInt8Graph(run, files, deps.reporter) : undefined;
  return loadEngine(preset, files, {
    int8,
    engine: config.engine,
    backend: config.backend,
    threads: config.threads,
    sessions: runSessions(config.threads),
    batchSize: config.batchSize,
    graphCache: cache,
    warn: (message) => deps.reporter.warn(message),
    tf: deps.tf,
  });
}
