import { ExitCode, OrchardError, describeError } from '../errors';
import { loadOrt } from '../onnx/runtime';
import { ortCoMoment } from '../stats/ort-comoment';
import type { AsyncCoMomentKernel } from '../stats/moments';
import { tensorCoMoment } from '../stats/tensor-comoment';
import type { Storage } from '../storage';
import type { ModelFiles } from './artifacts';
import type { Int8Graph } from './int8';
import { initTf, tfForWeights, type BackendPreference, type TfRuntime } from './backend';
import type { EnginePreference, FeatureModel } from './feature-model';
import { createOnnxFeatureModel } from './onnx-model';
import type { ModelPreset } from './presets';
import { createTfjsFeatureModel } from './tfjs-model';
import { loadOrCompileGraph } from './to-onnx/cache';
import { UnsupportedModelError } from './to-onnx/network';

export interface EngineOptions {
  readonly engine: EnginePreference;
  /** The TensorFlow.js backend, when TensorFlow.js runs the model. */
  readonly backend: BackendPreference;
  /** Threads ONNX Runtime computes on. */
  readonly threads: number;
  /** ONNX Runtime sessions computing batches side by side, sharing the threads (default 1). */
  readonly sessions?: number;
  readonly batchSize: number;
  /** Where compiled ONNX graphs are kept (the model cache); compiled in memory each time without one. */
  readonly graphCache?: Storage;
  /** One line per notable event: a fallback to TensorFlow.js, a cache that could not be written. */
  readonly warn: (message: string) => void;
  /** An already initialised TensorFlow.js (tests and the demo reuse one). */
  readonly tf?: TfRuntime;
  /** The run's int8 graph (--precision int8): run as it is on ONNX Runtime, never compiled here nor replaced by tfjs. */
  readonly int8?: Int8Graph;
}

/** The model, ready to predict, and the matrix product of the same engine for the shards' statistics. */
export interface LoadedEngine {
  readonly model: FeatureModel;
  readonly coMoment: AsyncCoMomentKernel;
}

/**
 * Loads the feature model on the chosen engine. `onnx` compiles the preset's TensorFlow.js model to an ONNX
 * graph (or reads it from the cache) and runs it on ONNX Runtime; `tfjs` runs the TensorFlow.js model itself;
 * `auto` is `onnx` unless ONNX Runtime cannot run this model here (an op the compiler does not know, no
 * onnxruntime-node build for this platform), in which case it says why in one warning line and runs `tfjs`.
 */
export async function loadEngine(preset: ModelPreset, files: ModelFiles, options: EngineOptions): Promise<LoadedEngine> {
  if (options.int8) {
    const runtime = loadOrt();
    const model = await createOnnxFeatureModel(runtime, options.int8.graph, preset, files, { threads: options.threads, sessions: options.sessions, batchSize: options.batchSize, cached: false, int8: options.int8.info });
    return { model, coMoment: ortCoMoment(runtime, options.threads) };
  }
  let fallback: string | undefined;
  if (options.engine !== 'tfjs') {
    try {
      const runtime = loadOrt();
      const weightsTf = async () => options.tf?.tf ?? tfForWeights();
      const compiled = await loadOrCompileGraph(weightsTf, files, { inputSize: preset.inputSize, normalization: preset.normalization, featureLayer: preset.featureLayer }, options.graphCache, options.warn);
      const model = await createOnnxFeatureModel(runtime, compiled.graph, preset, files, {
        threads: options.threads,
        sessions: options.sessions,
        batchSize: options.batchSize,
        cached: compiled.cached,
      });
      return { model, coMoment: ortCoMoment(runtime, options.threads) };
    } catch (error) {
      const reason = engineFailure(error);
      if (reason === undefined) throw error;
      if (options.engine === 'onnx') {
        throw new OrchardError(`--engine onnx cannot run ${preset.name}: ${reason}. Fix: use --engine tfjs (or auto)`, 'ERR_ENGINE', ExitCode.Fatal, { cause: error });
      }
      fallback = reason;
      options.warn(`engine: ONNX Runtime cannot run ${preset.name} (${reason}); running it on TensorFlow.js instead`);
    }
  }
  const runtime = options.tf ?? (await initTf(options.backend));
  const model = await createTfjsFeatureModel(runtime, preset, files, options.batchSize);
  return {
    model: fallback === undefined ? model : { ...model, engine: { ...model.engine, fallback } },
    coMoment: tensorCoMoment(runtime.tf),
  };
}

/** Why ONNX Runtime cannot run the model, for the failures a fallback fixes; undefined for any other error. */
function engineFailure(error: unknown): string | undefined {
  if (error instanceof UnsupportedModelError) return `unsupported ${error.message}`;
  if (error instanceof OrchardError && error.code === 'ERR_ENGINE') return describeError(error);
  return undefined;
}
