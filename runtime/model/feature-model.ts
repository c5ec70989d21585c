import { OrchardError } from '../errors';
import type { Int8Info, Precision } from './int8';
import type { ModelPreset, Normalization } from './presets';

/** What the manifest records about the network that ran. */
export interface ModelIdentity {
  readonly name: string;
  readonly loadedFrom: string;
  readonly format: 'layers-model' | 'graph-model';
  readonly weightsSha256: string;
  readonly inputSize: number;
  readonly normalization: Normalization;
  readonly featureLayer?: string;
  readonly featureDim: number;
}

export type EngineName = 'onnx' | 'tfjs';
export type EnginePreference = EngineName | 'auto';

/** What the manifest, the report and the run summary say about how the network ran. */
export interface EngineInfo {
  readonly name: EngineName;
  /** onnxruntime-node's version, or tfjs-core's. */
  readonly version: string;
  /** The TensorFlow.js backend (tfjs engine only). */
  readonly backend?: 'tensorflow' | 'wasm';
  /** Threads the engine computes on (ONNX Runtime's intra-op threads; 1 for WebAssembly, which is single-threaded in Node). */
  readonly threads: number;
  /** ONNX Runtime sessions computing batches side by side, sharing the threads (absent: one). */
  readonly sessions?: number;
  readonly batchSize: number;
  /** The compiled ONNX graph (onnx engine only): its SHA-256 is checked again when a run resumes. */
  readonly graph?: { readonly sha256: string; readonly nodes: number; readonly cached: boolean };
  /** fp32, or int8: the run's quantized graph (absent in manifests written before --precision). */
  readonly precision?: Precision;
  /** How the int8 graph was made (int8 only). */
  readonly int8?: Int8Info;
  /** Why `auto` did not choose ONNX Runtime, when it did not. */
  readonly fallback?: string;
}

/** `onnx (onnxruntime-node 1.30.0, 2 threads, batch 8, fp32)`, as the log, the summary and the report say it. */
export function describeEngine(engine: EngineInfo): string {
  const runtime = engine.name === 'onnx' ? `onnxruntime-node ${engine.version}` : `tfjs ${engine.version} on ${engine.backend}`;
  const precision = engine.int8 ? `, int8 with ${engine.int8.weightBits}-bit weights` : engine.precision ? `, ${engine.precision}` : '';
  const sessions = (engine.sessions ?? 1) > 1 ? ` in ${engine.sessions} sessions` : '';
  return `${engine.name} engine (${runtime}, ${engine.threads} thread${engine.threads === 1 ? '' : 's'}${sessions}, batch ${engine.batchSize}${precision})`;
}

/** A loaded, warmed-up CNN that turns a batch of normalised images into feature vectors. */
export interface FeatureModel {
  readonly identity: ModelIdentity;
  readonly engine: EngineInfo;
  /** Batches the engine computes at once (its sessions; 1 when absent): a caller keeps more than that in flight. */
  readonly parallelBatches?: number;
  /**
   * `pixels` holds n images of inputSize² × 3 bytes (NHWC, 8-bit RGB, as preprocessing gives them); the engine
   * normalises them as the preset says. Returns n × featureDim floats. The pixels are read before the call
   * returns, so the caller may fill the same buffer with the next batch while this one is computed.
   */
  predict(pixels: Uint8Array, n: number): Promise<Float32Array>;
  /**
   * The same for n images of height × width × 3 bytes, both sides at most inputSize, not enlarged yet: the engine
   * enlarges them exactly as images/upscale.ts's enlargeBilinear does (the same bytes) and runs the CNN on them.
   * Resolves with the features and the CPU seconds the enlargement took (preprocessing, not the model's). Only the
   * onnx engine has it: on the others the caller enlarges.
   */
  predictEnlarged?(pixels: Uint8Array, n: number, height: number, width: number): Promise<{ readonly features: Float32Array; readonly enlargeCpuS: number; readonly enlargeWallS: number }>;
  dispose(): void;
}

/** The features' length is known once the model ran; a preset states what it must be. */
export function checkFeatureDim(preset: ModelPreset, featureDim: number): void {
  if (preset.featureDim !== undefined && featureDim !== preset.featureDim) {
    throw new OrchardError(
      `Model ${preset.name} gives ${featureDim} values per image at ${preset.featureLayer ?? 'its output'}, expected ${preset.featureDim}`,
      'ERR_MODEL_LOAD',
    );
  }
}
