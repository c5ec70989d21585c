/** How pixel bytes become model input: value = pixel * scale + offset. */
export interface Normalization {
  readonly scale: number;
  readonly offset: number;
}

/** Inputs in [0, 1]: TF Hub image models and the nsfwjs MobileNetV2. */
export const UNIT_RANGE: Normalization = { scale: 1 / 255, offset: 0 };
/** Inputs in [-1, 1]: Keras `mobilenet_v2.preprocess_input`. */
export const SIGNED_RANGE: Normalization = { scale: 2 / 255, offset: -1 };

/** Where a model's files come from. */
export type ModelSource =
  /** The Keras MobileNetV2 shipped inside the `nsfwjs` npm package (works offline). */
  | { readonly kind: 'nsfwjs'; readonly model: 'mobilenet_v2' }
  /**
   * A weights file in Keras's HDF5 layout for Keras Applications' MobileNetV2 (the network of the nsfwjs topology up
   * to `out_relu`), on the web, in S3 or on disk. A web file is kept in the model cache and pinned there by SHA-256.
   */
  | { readonly kind: 'keras-h5'; readonly uri: string }
  /** A tfjs model.json (layers or graph) on the web, in S3 or on disk; TF Hub handles are resolved as tfjs does. */
  | { readonly kind: 'uri'; readonly uri: string };

/**
 * A model preset says where the weights are, the input size, the normalisation and which layer gives the
 * features. Anything else can be given on the command line as a URL/S3 URI/path plus options.
 */
export interface ModelPreset {
  readonly name: string;
  readonly description: string;
  readonly source: ModelSource;
  /** Square input size in pixels. */
  readonly inputSize: number;
  readonly normalization: Normalization;
  /** Layer (layers model) or node (graph model) whose output is the feature vector; default: the model output. */
  readonly featureLayer?: string;
  /** Length of one feature vector, checked at load. */
  readonly featureDim?: number;
}

/** The layer Keras's MobileNetV2 ends on without its top, and the pooling `pooling='avg'` adds after it. */
export const KERAS_LAST_LAYER = 'out_relu';
export const KERAS_POOLING_LAYER = 'global_average_pooling2d';

export const TFHUB_MOBILENET_V2 =
  'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1';

/**
 * Keras Applications' MobileNetV2 1.0/224 ImageNet weights without the top: the file `MobileNetV2(weights='imagenet',
 * include_top=False)` downloads (BASE_WEIGHT_PATH of keras/applications/mobilenet_v2.py), the seed notebook's network.
 */
export const KERAS_MOBILENET_V2 =
  'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5';

export const PRESETS: Readonly<Record<string, ModelPreset>> = {
  mobilenet_v2: {
    name: 'mobilenet_v2',
    description:
      "Keras Applications' MobileNetV2 1.0 224 with its ImageNet weights (Keras's HDF5 file, kept in the model cache and " +
      'pinned by SHA-256), inputs in [-1, 1], global average pooling of out_relu: 1280 values',
    source: { kind: 'keras-h5', uri: KERAS_MOBILENET_V2 },
    inputSize: 224,
    normalization: SIGNED_RANGE,
    featureLayer: KERAS_POOLING_LAYER,
    featureDim: 1280,
  },
  mobilenet_v2_tfhub: {
    name: 'mobilenet_v2_tfhub',
    description:
      'MobileNetV2 1.00 224, ImageNet feature vector from TF Hub (tfjs; the hub redirects to Kaggle, which has answered 403), ' +
      'global average pooling: 1280 values',
    source: { kind: 'uri', uri: TFHUB_MOBILENET_V2 },
    inputSize: 224,
    normalization: UNIT_RANGE,
    featureDim: 1280,
  },
  mobilenet_v2_offline: {
    name: 'mobilenet_v2_offline',
    description:
      'Keras MobileNetV2 (ImageNet-pretrained, fine-tuned by the nsfwjs authors) from the nsfwjs npm package, ' +
      'cut at flatten_1 (the 1280-value pooled features); needs no internet',
    source: { kind: 'nsfwjs', model: 'mobilenet_v2' },
    inputSize: 224,
    normalization: UNIT_RANGE,
    featureLayer: 'flatten_1',
    featureDim: 1280,
  },
};

export const DEFAULT_MODEL = 'mobilenet_v2';
export const DEMO_MODEL = 'mobilenet_v2_offline';
