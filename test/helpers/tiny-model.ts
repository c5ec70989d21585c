import { buildRunConfig, type RunConfig } from '../../runtime/pipeline/config';
import { formatLocation, type S3Options, type Storage } from '../../runtime/storage';
import type { Tf } from '../../runtime/model/backend';

export const TINY_INPUT = 32;
export const TINY_FEATURES = 12;

export interface TinyModelOptions {
  /** Square input size. @default TINY_INPUT */
  readonly inputSize?: number;
  /**
   * With a dense head (the default) the features are the `features` layer, as MobileNetV2's are `flatten_1`.
   * Without one, the model's output is the features, so that it runs with orchard's defaults for a model given
   * by location (its output, a 224-pixel input when `inputSize` is 224): what an SSM document run passes.
   */
  readonly head?: boolean;
}

/**
 * Saves a small, seeded Keras-style CNN (conv → ReLU → global average pooling → 12 features, then a dense
 * head) as a tfjs layers model (model.json + weights.bin) into `storage` under `prefix`. Tests load it through
 * the same code path as MobileNetV2, with `--feature-layer features`, and stay fast.
 */
export async function saveTinyModel(tf: Tf, storage: Storage, prefix = '', options: TinyModelOptions = {}): Promise<void> {
  const size = options.inputSize ?? TINY_INPUT;
  const input = tf.input({ shape: [size, size, 3] });
  const conv = tf.layers
    .conv2d({ filters: TINY_FEATURES, kernelSize: 5, strides: 2, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 7 }), biasInitializer: 'ones' })
    .apply(input) as import('@tensorflow/tfjs').SymbolicTensor;
  const pooled = tf.layers.globalAveragePooling2d({ name: 'features' }).apply(conv) as import('@tensorflow/tfjs').SymbolicTensor;
  const head =
    options.head === false
      ? pooled
      : (tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 8 }) }).apply(pooled) as import('@tensorflow/tfjs').SymbolicTensor);
  const model = tf.model({ inputs: input, outputs: head });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = Buffer.from(artifacts.weightData as ArrayBuffer);
      await storage.put(`${prefix}weights.bin`, weights);
      await storage.put(
        `${prefix}model.json`,
        JSON.stringify({
          format: 'layers-model',
          generatedBy: 'orchard tests',
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
        }),
      );
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
}

/**
 * A run configuration with the tiny model (saved in `modelDir`) and small, fast settings, made by the one builder
 * the CLI and the demo use; tests override the rest (locations as parsed objects).
 */
export function tinyRunConfig(
  modelDir: string,
  s3: S3Options,
  overrides: Partial<RunConfig> & Pick<RunConfig, 'input' | 'output' | 'runId'>,
): RunConfig {
  const base = buildRunConfig(
    {
      input: formatLocation(overrides.input),
      output: formatLocation(overrides.output),
      runId: overrides.runId,
      components: 4,
      model: modelDir,
      featureLayer: 'features',
      inputSize: TINY_INPUT,
      backend: 'wasm',
      threads: 2,
      batchSize: 4,
      concurrency: 8,
      shardSize: 7,
    },
    s3,
  );
  return { ...base, ...overrides };
}
