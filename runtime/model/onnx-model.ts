import { ExitCode, OrchardError, describeError } from '../errors';
import { buildEnlargeGraph } from '../images/enlarge-graph';
import { PredictPool, splitThreads } from '../onnx/predict-pool';
import type { OrtRuntime } from '../onnx/runtime';
import type { ModelFiles } from './artifacts';
import type { Int8Info } from './int8';
import { checkFeatureDim, type FeatureModel } from './feature-model';
import type { ModelPreset } from './presets';
import { INPUT_NAME, OUTPUT_NAME } from './to-onnx/network';
import type { CompiledGraph } from './to-onnx/compile';

export interface OnnxModelOptions {
  readonly threads: number;
  /** Sessions computing batches side by side, sharing `threads` (1 unless given). */
  readonly sessions?: number;
  readonly batchSize: number;
  /** Whether the graph came from the model cache (for the manifest). */
  readonly cached: boolean;
  /** How the graph was quantized, when it is the run's int8 graph. */
  readonly int8?: Int8Info;
}

/**
 * The ONNX Runtime engine: the graph compiled from the preset's TensorFlow.js weights, run by onnxruntime-node
 * on the CPU with `threads` intra-op threads, in a worker thread (so that reading and decoding go on while a
 * batch runs), warmed up once at the batch size the run uses.
 */
export async function createOnnxFeatureModel(
  runtime: OrtRuntime,
  graph: CompiledGraph,
  preset: ModelPreset,
  files: ModelFiles,
  options: OnnxModelOptions,
): Promise<FeatureModel> {
  checkFeatureDim(preset, graph.featureDim);
  let pool: PredictPool;
  try {
    pool = await PredictPool.start(graph.bytes, splitThreads(options.threads, options.sessions ?? 1), INPUT_NAME, OUTPUT_NAME);
  } catch (error) {
    throw new OrchardError(
      `ONNX Runtime ${runtime.version} refused the graph compiled from ${files.loadedFrom}: ${describeError(error)}`,
      'ERR_ENGINE',
      ExitCode.Fatal,
      { cause: error },
    );
  }
  const size = preset.inputSize;
  const perImage = size * size * 3;
  const predict = (pixels: Uint8Array, n: number): Promise<Float32Array> => pool.run(pixels, [n, size, size, 3]);
  try {
    await pool.each(new Uint8Array(options.batchSize * perImage), [options.batchSize, size, size, 3]);
  } catch (error) {
    await pool.close();
    throw error;
  }
  // One intra-op thread: the enlargement is small (a tenth of a millisecond per image), and on one thread all of its
  // work is on the worker's own thread, whose CPU time the worker reads to count it as preprocessing.
  const enlargeGraph = (height: number, width: number) => () => ({ bytes: buildEnlargeGraph(height, width, size), options: { threads: 1 } });
  const predictEnlarged = async (pixels: Uint8Array, n: number, height: number, width: number) => {
    const { features, enlarge } = await pool.runEnlarged(pixels, [n, size, size, 3], height, width, enlargeGraph(height, width));
    return { features, enlargeCpuS: enlarge?.cpuS ?? 0, enlargeWallS: enlarge?.wallS ?? 0 };
  };
  return {
    identity: {
      name: preset.name,
      loadedFrom: files.loadedFrom,
      format: graph.format,
      weightsSha256: files.weightsSha256,
      inputSize: size,
      normalization: preset.normalization,
      featureLayer: preset.featureLayer,
      featureDim: graph.featureDim,
    },
    engine: {
      name: 'onnx',
      version: runtime.version,
      threads: options.threads,
      ...(pool.size > 1 ? { sessions: pool.size } : {}),
      batchSize: options.batchSize,
      graph: { sha256: graph.sha256, nodes: graph.nodes, cached: options.cached },
      precision: options.int8 ? 'int8' : 'fp32',
      ...(options.int8 ? { int8: options.int8 } : {}),
    },
    parallelBatches: pool.size,
    predict,
    predictEnlarged,
    dispose: () => void pool.close(),
  };
}
