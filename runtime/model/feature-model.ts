import type { GraphModel, LayersModel, Tensor } from '@tensorflow/tfjs';
import { ExitCode, OrchardError, describeError } from '../errors';
import type { TfRuntime } from './backend';
import type { ModelFiles } from './artifacts';
import type { ModelPreset, Normalization } from './presets';

/** What the manifest records about the model that ran. */
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

/** A loaded, warmed-up CNN that turns a batch of normalised images into feature vectors. */
export interface FeatureModel {
  readonly identity: ModelIdentity;
  /** `input` holds n images of inputSize² × 3 floats (NHWC); returns n × featureDim floats. */
  predict(input: Float32Array, n: number): Promise<Float32Array>;
  dispose(): void;
}

/** Builds the feature extractor from the model files: loaded once, cut at the feature layer, warmed up once. */
export async function createFeatureModel(
  runtime: TfRuntime,
  preset: ModelPreset,
  files: ModelFiles,
  warmupBatch = 1,
): Promise<FeatureModel> {
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

  const predict = async (input: Float32Array, n: number): Promise<Float32Array> => {
    const output = tf.tidy(() => {
      const y = run(tf.tensor4d(input.subarray(0, n * size * size * 3), [n, size, size, 3]));
      return y.reshape([n, -1]);
    });
    try {
      return (await output.data()) as Float32Array;
    } finally {
      output.dispose();
    }
  };

  // Warm-up: the first predict compiles kernels and allocates; it also tells us the feature length.
  const probe = await predict(new Float32Array(warmupBatch * size * size * 3), warmupBatch);
  const featureDim = probe.length / warmupBatch;
  if (preset.featureDim !== undefined && featureDim !== preset.featureDim) {
    dispose();
    throw new OrchardError(
      `Model ${preset.name} gives ${featureDim} values per image at ${preset.featureLayer ?? 'its output'}, expected ${preset.featureDim}`,
      'ERR_MODEL_LOAD',
    );
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
    predict,
    dispose,
  };
}

function layerOutput(model: LayersModel, name: string) {
  try {
    return model.getLayer(name).output as import('@tensorflow/tfjs').SymbolicTensor;
  } catch {
    const names = model.layers.slice(-8).map((layer) => layer.name).join(', ');
    throw new OrchardError(`Model has no layer named '${name}' (last layers: ${names})`, 'ERR_INVALID_PARAMETER', ExitCode.Usage);
  }
}

function hasNodes(topology: unknown): boolean {
  return typeof topology === 'object' && topology !== null && Array.isArray((topology as { node?: unknown }).node);
}

/** Writes one image's uint8 RGB pixels into the batch buffer as normalised floats (no intermediate tensors). */
export function writeNormalized(target: Float32Array, offset: number, pixels: Uint8Array, norm: Normalization): void {
  const { scale, offset: shift } = norm;
  for (let i = 0; i < pixels.length; i++) target[offset + i] = pixels[i] * scale + shift;
}
