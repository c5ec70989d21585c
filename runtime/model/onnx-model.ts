import { ExitCode, OrchardError, describeError } from '../errors';
import { createSession, type OrtRuntime } from '../onnx/runtime';
import type { ModelFiles } from './artifacts';
import { checkFeatureDim, type FeatureModel } from './feature-model';
import type { ModelPreset } from './presets';
import { INPUT_NAME, OUTPUT_NAME } from './to-onnx/network';
import type { CompiledGraph } from './to-onnx/compile';

export interface OnnxModelOptions {
  readonly threads: number;
  readonly batchSize: number;
  /** Whether the graph came from the model cache (for the manifest). */
  readonly cached: boolean;
}

/**
 * The ONNX Runtime engine: the graph compiled from the preset's TensorFlow.js weights, run by onnxruntime-node
 * on the CPU with `threads` intra-op threads, warmed up once at the batch size the run uses.
 */
export async function createOnnxFeatureModel(
  runtime: OrtRuntime,
  graph: CompiledGraph,
  preset: ModelPreset,
  files: ModelFiles,
  options: OnnxModelOptions,
): Promise<FeatureModel> {
  const { ort } = runtime;
  let session: Awaited<ReturnType<typeof createSession>>;
  try {
    session = await createSession(runtime, graph.bytes, { threads: options.threads });
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
  const predict = async (input: Float32Array, n: number): Promise<Float32Array> => {
    const tensor = new ort.Tensor('float32', input.subarray(0, n * perImage), [n, size, size, 3]);
    const outputs = await session.run({ [INPUT_NAME]: tensor });
    const features = outputs[OUTPUT_NAME];
    if (!features) throw new OrchardError(`ONNX Runtime returned no '${OUTPUT_NAME}' output`, 'ERR_ENGINE');
    return features.data as Float32Array;
  };
  checkFeatureDim(preset, graph.featureDim);
  await predict(new Float32Array(options.batchSize * perImage), options.batchSize);
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
      batchSize: options.batchSize,
      graph: { sha256: graph.sha256, nodes: graph.nodes, cached: options.cached },
    },
    predict,
    dispose: () => void session.release(),
  };
}
