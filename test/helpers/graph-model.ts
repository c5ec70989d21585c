import { mulberry32 } from '../../runtime/random';
import type { Storage } from '../../runtime/storage';

/**
 * A small TensorFlow graph model in tfjs's `graph-model` format, written the way tfjs-converter writes the
 * TF Hub MobileNetV2 (frozen GraphDef as JSON, constants in the weights manifest): input scaling by Mul/Sub,
 * _FusedConv2D with BiasAdd+Relu6 (stride 2, SAME), FusedDepthwiseConv2dNative, Conv2D + FusedBatchNormV3, an
 * AddV2 residual, an explicit Pad before a VALID stride-2 convolution, a depthwise multiplier of 2 with a
 * separate BiasAdd and Relu6, and Mean over height and width. tfjs's own GraphModel loader runs it, as it runs
 * the TF Hub preset, so the two engines can be compared on it.
 */
export const GRAPH_INPUT = 32;
export const GRAPH_FEATURES = 24;

type DType = 'float32' | 'int32';
interface Constant {
  readonly name: string;
  readonly shape: number[];
  readonly dtype: DType;
  readonly values: number[];
}

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
const ints = (...values: number[]) => ({ list: { i: values.map(String) } });
const str = (text: string) => ({ s: b64(text) });
const T = { type: 'DT_FLOAT' };

export interface GraphModelOptions {
  /** An extra node of this op between the last activation and the mean (to test refusals). */
  readonly extraOp?: string;
  readonly seed?: number;
}

export async function saveGraphModel(storage: Storage, prefix = '', options: GraphModelOptions = {}): Promise<void> {
  const random = mulberry32(options.seed ?? 17);
  const constants: Constant[] = [];
  const nodes: Record<string, unknown>[] = [];
  const constant = (name: string, shape: number[], make: (i: number) => number, dtype: DType = 'float32') => {
    const size = shape.reduce((a, b) => a * b, 1);
    constants.push({ name, shape, dtype, values: Array.from({ length: size }, (_, i) => make(i)) });
    nodes.push({ name, op: 'Const', attr: { dtype: { type: dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT' }, value: { tensor: { dtype: dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT', tensorShape: { dim: shape.map((size) => ({ size: String(size) })) } } } } });
    return name;
  };
  const weights = (name: string, shape: number[], scale: number) => constant(name, shape, () => (random() * 2 - 1) * scale);
  const node = (name: string, op: string, input: string[], attr: Record<string, unknown> = {}) => {
    nodes.push({ name, op, input, attr: { T, ...attr } });
    return name;
  };
  const conv = { padding: str('SAME'), data_format: str('NHWC'), dilations: ints(1, 1, 1, 1) };

  nodes.push({ name: 'images', op: 'Placeholder', attr: { dtype: T, shape: { shape: { dim: [{ size: '-1' }, { size: String(GRAPH_INPUT) }, { size: String(GRAPH_INPUT) }, { size: '3' }] } } } });
  const scaled = node('hub_input/Mul', 'Mul', ['images', constant('hub_input/scale', [], () => 2)]);
  const signed = node('hub_input/Sub', 'Sub', [scaled, constant('hub_input/one', [], () => 1)]);
  const conv1 = node('Conv/Relu6', '_FusedConv2D', [signed, weights('Conv/weights', [3, 3, 3, 8], 0.5), weights('Conv/bias', [8], 0.2)], {
    ...conv, strides: ints(1, 2, 2, 1), fused_ops: { list: { s: [b64('BiasAdd'), b64('Relu6')] } }, num_args: { i: '1' }, epsilon: { f: 0 },
  });
  const dw = node('expanded/depthwise/Relu6', 'FusedDepthwiseConv2dNative', [conv1, weights('expanded/depthwise/weights', [3, 3, 8, 1], 0.5), weights('expanded/depthwise/bias', [8], 0.2)], {
    ...conv, strides: ints(1, 1, 1, 1), fused_ops: { list: { s: [b64('BiasAdd'), b64('Relu6')] } }, num_args: { i: '1' },
  });
  const pw = node('expanded/project/Conv2D', 'Conv2D', [dw, weights('expanded/project/weights', [1, 1, 8, 8], 0.5)], { ...conv, padding: str('VALID'), strides: ints(1, 1, 1, 1) });
  const bn = node('expanded/project/BatchNorm', 'FusedBatchNormV3', [
    pw,
    constant('bn/gamma', [8], () => 0.5 + random()),
    weights('bn/beta', [8], 0.3),
    weights('bn/mean', [8], 0.3),
    constant('bn/variance', [8], () => 0.5 + random()),
  ], { epsilon: { f: 0.001 }, data_format: str('NHWC'), is_training: { b: false }, U: T });
  const residual = node('expanded/add', 'AddV2', [bn, conv1]);
  const padded = node('block_1/Pad', 'Pad', [residual, constant('block_1/paddings', [4, 2], (i) => [0, 0, 0, 1, 0, 1, 0, 0][i]!, 'int32')], { Tpaddings: { type: 'DT_INT32' } });
  const conv2 = node('block_1/Relu', '_FusedConv2D', [padded, weights('block_1/weights', [3, 3, 8, 12], 0.4), weights('block_1/bias', [12], 0.2)], {
    ...conv, padding: str('VALID'), strides: ints(1, 2, 2, 1), fused_ops: { list: { s: [b64('BiasAdd'), b64('Relu')] } }, num_args: { i: '1' }, epsilon: { f: 0 },
  });
  const dw2 = node('block_2/depthwise', 'DepthwiseConv2dNative', [conv2, weights('block_2/depthwise/weights', [3, 3, 12, 2], 0.4)], { ...conv, strides: ints(1, 2, 2, 1) });
  const biased = node('block_2/BiasAdd', 'BiasAdd', [dw2, weights('block_2/bias', [GRAPH_FEATURES], 0.2)], { data_format: str('NHWC') });
  let last = node('block_2/Relu6', 'Relu6', [biased]);
  if (options.extraOp) last = node(`block_2/${options.extraOp}`, options.extraOp, [last]);
  const mean = node('pool/Mean', 'Mean', [last, constant('pool/axes', [2], (i) => [1, 2][i]!, 'int32')], { keep_dims: { b: false }, Tidx: { type: 'DT_INT32' } });
  node('features', 'Identity', [mean]);

  const buffers = constants.map((c) => Buffer.from((c.dtype === 'int32' ? Int32Array.from(c.values) : Float32Array.from(c.values)).buffer));
  await storage.put(`${prefix}weights.bin`, Buffer.concat(buffers));
  await storage.put(
    `${prefix}model.json`,
    JSON.stringify({
      format: 'graph-model',
      generatedBy: '2.15.0',
      convertedBy: 'orchard tests',
      modelTopology: { node: nodes, library: {}, versions: { producer: 1286 } },
      weightsManifest: [{ paths: ['weights.bin'], weights: constants.map(({ name, shape, dtype }) => ({ name, shape, dtype })) }],
    }),
  );
}
