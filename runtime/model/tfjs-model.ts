import type { GraphModel, LayersModel, SymbolicTensor, Tensor } from '@tensorflow/tfjs';
import { ExitCode, OrchardError, describeError } from '../errors';
import type { ModelFiles } from './artifacts';
import type { TfRuntime } from './backend';
import { checkFeatureDim, type FeatureModel } from './feature-model';
import type { ModelPreset } from './presets';

/**
 * The TensorFlow.js engine: the preset's model loaded by tfjs's own loaders, cut at the feature layer, warmed up
 * once. It runs on tfjs-node (libtensorflow, every core) where installed, else on WebAssembly (one thread in Node).
 */
export async function createTfjsFeatureModel(runtime: TfRuntime, preset: ModelPreset, files: ModelFiles, batchSize = 1): Promise<FeatureModel> {
  const { tf } = runtime;
  const isGraph = files.modelJson.format === 'graph-model' || hasNodes(files.modelJson.modelTopology);
  const artifacts = await tf.io.getModelArtifactsForJSON(files.modelJson, async (manifest) => [
    manifest.flatMap((group) => group.weights),
    files.weightData,
  ]);
  const size = preset.inputSize;
  let run: (x: Tensor) => Tensor;
  let dispose: () => void;
  try {
    if (isGraph) {
      const graph: GraphModel = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      const node = preset.featureLayer;
      run = (x) => (node ? graph.execute(x, node) : graph.predict(x)) as Tensor;
      dispose = () => graph.dispose();
    } else {
      const full: LayersModel = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      const cut = preset.featureLayer ? tf.model({ inputs: full.inputs, outputs: layerOutput(full, preset.featureLayer) }) : full;
      run = (x) => cut.predict(x) as Tensor;
      dispose = () => full.dispose();
    }
  } catch (error) {
    if (error instanceof OrchardError) throw error;
    throw new OrchardError(`Cannot load the model from ${files.loadedFrom}: ${describeError(error)}`, 'ERR_MODEL_LOAD', ExitCode.Fatal, { cause: error });
  }

  const { scale, offset } = preset.normalization;
  const predict = async (pixels: Uint8Array, n: number): Promise<Float32Array> => {
    const output = tf.tidy(() => {
      const bytes = tf.tensor4d(pixels.subarray(0, n * size * size * 3), [n, size, size, 3], 'int32');
      const y = run(bytes.toFloat().mul(scale).add(offset));
      return y.reshape([n, -1]);
    });
    try {
      return (await output.data()) as Float32Array;
    } finally {
      output.dispose();
    }
  };

  // Warm-up: the first predict compiles kernels and allocates; it also tells us the feature length.
  const probe = await predict(new Uint8Array(batchSize * size * size * 3), batchSize);
  const featureDim = probe.length / batchSize;
  try {
    checkFeatureDim(preset, featureDim);
  } catch (error) {
    dispose();
    throw error;
  }
  return {
    identity: {
      name: preset.name,
      loadedFrom: files.loadedFrom,
      format: isGraph ? 'graph-model' : 'layers-model',
      weightsSha256: files.weightsSha256,
      inputSize: size,
      normalization: preset.normalization,
      featureLayer: preset.featureLayer,
      featureDim,
    },
    engine: {
      name: 'tfjs',
      precision: 'fp32',
      version: runtime.versions['tfjs-core'] ?? '?',
      backend: runtime.backend,
      // WebAssembly runs one thread in Node (tfjs disables its threaded build there); libtensorflow uses every core.
      threads: runtime.backend === 'wasm' ? 1 : runtime.threads,
      batchSize,
    },
    predict,
    dispose,
  };
}

function layerOutput(model: LayersModel, name: string): SymbolicTensor {
  try {
    return model.getLayer(name).output as SymbolicTensor;
  } catch {
    const names = model.layers.slice(-8).map((layer) => layer.name).join(', ');
    throw new OrchardError(`Model has no layer named '${name}' (last layers: ${names})`, 'ERR_INVALID_PARAMETER', ExitCode.Usage);
  }
}

function hasNodes(topology: unknown): boolean {
  return typeof topology === 'object' && topology !== null && Array.isArray((topology as { node?: unknown }).node);
}
