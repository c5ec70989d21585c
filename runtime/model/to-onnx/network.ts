import { FLOAT32, float, OnnxGraphBuilder } from '../../onnx/graph-builder';
import type { Normalization } from '../presets';

/**
 * The layer vocabulary both model compilers translate into: TensorFlow semantics in (NHWC, 'same'/'valid'
 * padding, [kh, kw, in, out] kernels), an ONNX graph out (NCHW inside, one transpose at each end).
 *
 * Every value carries its static shape, known from the model's fixed input size: it decides TensorFlow's
 * asymmetric 'same' padding, checks that shapes agree, and gives the feature length before anything runs.
 */

/** Zero padding not yet written as a node: [top, left, bottom, right]. A convolution absorbs it into its pads. */
export type Pads = readonly [number, number, number, number];

export interface ImageValue {
  readonly kind: 'image';
  readonly name: string;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly pending?: Pads;
  /** Known never to be negative (the output of a ReLU, ReLU6 or sigmoid, and what pooling keeps of it). */
  readonly nonNegative?: boolean;
}

export interface VectorValue {
  readonly kind: 'vector';
  readonly name: string;
  readonly length: number;
  readonly nonNegative?: boolean;
}

export type Value = ImageValue | VectorValue;

export type Activation = 'linear' | 'relu' | 'relu6' | 'sigmoid' | 'tanh' | 'elu' | { readonly leakyRelu: number };

export type Padding = 'same' | 'valid' | Pads;

export interface ConvSpec {
  /** Source layer or node: names the ONNX node and every error. */
  readonly source: string;
  /** TensorFlow layout: [kh, kw, in, out], or [kh, kw, in, multiplier] when depthwise. */
  readonly kernel: Float32Array;
  readonly kernelShape: readonly number[];
  readonly depthwise: boolean;
  readonly strides: readonly [number, number];
  readonly dilations: readonly [number, number];
  readonly padding: Padding;
  readonly bias?: Float32Array;
  readonly activation?: Activation;
}

export interface BatchNormSpec {
  readonly source: string;
  readonly gamma?: Float32Array;
  readonly beta?: Float32Array;
  readonly mean: Float32Array;
  readonly variance: Float32Array;
  readonly epsilon: number;
}

/** A model the compiler cannot translate faithfully: never a wrong graph, always this error naming the cause. */
export class UnsupportedModelError extends Error {
  constructor(
    /** The layer class or op that has no translation (e.g. `Conv3D`, `ResizeBilinear`). */
    readonly op: string,
    /** Where it is in the model, and why it is not supported. */
    readonly detail: string,
  ) {
    super(`${op}: ${detail}`);
    this.name = 'UnsupportedModelError';
  }
}

interface ConvRecord {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly kernelSize: number;
}

export const INPUT_NAME = 'images';
export const OUTPUT_NAME = 'features';

export class Network {
  readonly graph = new OnnxGraphBuilder();
  /** Convolutions whose output is still their raw sum (no activation yet): a batch norm after one folds into it. */
  private readonly convs = new Map<string, ConvRecord>();
  private readonly materialised = new Map<string, ImageValue>();

  constructor(
    readonly inputSize: number,
    readonly normalization: Normalization,
  ) {
    this.graph.reserve(INPUT_NAME, OUTPUT_NAME);
  }

  /**
   * The graph input: a batch of NHWC uint8 RGB images of inputSize², normalised (value × scale + offset, in
   * float32 as tfjs computes it) and made NCHW for everything after it. Taking bytes keeps the batch a quarter
   * of the size and the normalisation off the JavaScript thread.
   */
  input(channels = 3): ImageValue {
    const nchw = this.graph.node('Transpose', [INPUT_NAME], { perm: [0, 3, 1, 2] }, 'nchw');
    const floats = this.graph.node('Cast', [nchw], { to: FLOAT32 }, 'float');
    const { scale, offset } = this.normalization;
    const scaled = scale === 1 ? floats : this.graph.node('Mul', [floats, this.graph.scalar('scale', scale)], {}, 'scaled');
    const name = offset === 0 ? scaled : this.graph.node('Add', [scaled, this.graph.scalar('offset', offset)], {}, 'normalised');
    return { kind: 'image', name, channels, height: this.inputSize, width: this.inputSize };
  }

  /** Zero padding, kept pending: the next convolution takes it into its own pads (no Pad node at all). */
  zeroPad(x: Value, pads: Pads, source: string): ImageValue {
    const image = asImage(x, source);
    if (pads.some((p) => !Number.isInteger(p) || p < 0)) throw new UnsupportedModelError('ZeroPadding2D', `${source}: pads ${pads.join(', ')}`);
    const before = image.pending ?? [0, 0, 0, 0];
    return { ...image, pending: [before[0] + pads[0], before[1] + pads[1], before[2] + pads[2], before[3] + pads[3]] };
  }

  conv(x: Value, spec: ConvSpec): ImageValue {
    const image = asImage(x, spec.source);
    const [kh, kw, cin, last] = spec.kernelShape;
    if (spec.kernelShape.length !== 4 || kh === undefined || kw === undefined || cin === undefined || last === undefined) {
      throw new UnsupportedModelError(spec.depthwise ? 'DepthwiseConv2D' : 'Conv2D', `${spec.source}: kernel of shape [${spec.kernelShape.join(', ')}]`);
    }
    if (cin !== image.channels) {
      throw new UnsupportedModelError('Conv2D', `${spec.source}: kernel expects ${cin} input channels, its input has ${image.channels}`);
    }
    const cout = spec.depthwise ? cin * last : last;
    const weight = spec.depthwise ? depthwiseKernel(spec.kernel, kh, kw, cin, last) : convKernel(spec.kernel, kh, kw, cin, last);
    const bias = spec.bias ? Float32Array.from(spec.bias) : new Float32Array(cout);
    if (bias.length !== cout) throw new UnsupportedModelError('Conv2D', `${spec.source}: ${bias.length} biases for ${cout} filters`);

    const [pt, pl, pb, pr] = image.pending ?? [0, 0, 0, 0];
    const h = image.height + pt + pb;
    const w = image.width + pl + pr;
    const [sh, sw] = spec.strides;
    const [dh, dw] = spec.dilations;
    const [ypads, xpads] = [explicitPads(spec.padding, 'y', h, kh, sh, dh), explicitPads(spec.padding, 'x', w, kw, sw, dw)];
    const pads = [pt + ypads[0], pl + xpads[0], pb + ypads[1], pr + xpads[1]];
    const out = {
      height: outputSize(image.height, pads[0]!, pads[2]!, kh, sh, dh),
      width: outputSize(image.width, pads[1]!, pads[3]!, kw, sw, dw),
    };
    if (out.height < 1 || out.width < 1) throw new UnsupportedModelError('Conv2D', `${spec.source}: output would be empty`);

    const weightName = this.graph.floats(`${spec.source}/weight`, [cout, spec.depthwise ? 1 : cin, kh, kw], weight);
    const biasName = this.graph.floats(`${spec.source}/bias`, [cout], bias);
    const name = this.graph.node(
      'Conv',
      [image.name, weightName, biasName],
      { kernel_shape: [kh, kw], strides: [sh, sw], dilations: [dh, dw], pads, group: spec.depthwise ? cin : 1 },
      spec.source,
    );
    this.convs.set(name, { weight, bias, kernelSize: weight.length / cout });
    const result: ImageValue = { kind: 'image', name, channels: cout, ...out };
    return this.activation(result, spec.activation ?? 'linear', spec.source) as ImageValue;
  }

  /**
   * Inference batch normalisation. Right after a convolution whose raw output nothing else reads, it is folded
   * into that convolution's weights and bias (computed in float64, stored as float32); elsewhere it is a node.
   */
  batchNorm(x: Value, spec: BatchNormSpec, readersOfInput: number): Value {
    const channels = x.kind === 'image' ? x.channels : x.length;
    const { gamma, beta, mean, variance, epsilon } = spec;
    for (const [label, values] of Object.entries({ gamma, beta, mean, variance })) {
      if (values && values.length !== channels) {
        throw new UnsupportedModelError('BatchNormalization', `${spec.source}: ${values.length} ${label} values for ${channels} channels`);
      }
    }
    const conv = this.convs.get(x.name);
    if (conv && readersOfInput === 1 && x.kind === 'image' && !x.pending) {
      for (let o = 0; o < channels; o++) {
        const scale = (gamma ? gamma[o]! : 1) / Math.sqrt(variance[o]! + epsilon);
        const row = o * conv.kernelSize;
        for (let i = 0; i < conv.kernelSize; i++) conv.weight[row + i] = conv.weight[row + i]! * scale;
        conv.bias[o] = (conv.bias[o]! - mean[o]!) * scale + (beta ? beta[o]! : 0);
      }
      return x;
    }
    const input = this.materialise(x);
    const params = [
      this.graph.floats(`${spec.source}/gamma`, [channels], gamma ?? new Float32Array(channels).fill(1)),
      this.graph.floats(`${spec.source}/beta`, [channels], beta ?? new Float32Array(channels)),
      this.graph.floats(`${spec.source}/mean`, [channels], mean),
      this.graph.floats(`${spec.source}/variance`, [channels], variance),
    ];
    const name = this.graph.node('BatchNormalization', [input.name, ...params], { epsilon: float(epsilon) }, spec.source);
    return { ...input, name, nonNegative: false };
  }

  activation(x: Value, activation: Activation, source: string): Value {
    if (activation === 'linear') return x;
    const input = this.materialise(x);
    let name: string;
    if (activation === 'relu') name = this.graph.node('Relu', [input.name], {}, `${source}/relu`);
    else if (activation === 'relu6') {
      const bounds = [this.graph.scalar(`${source}/min`, 0), this.graph.scalar(`${source}/max`, 6)];
      name = this.graph.node('Clip', [input.name, ...bounds], {}, `${source}/relu6`);
    } else if (activation === 'sigmoid') name = this.graph.node('Sigmoid', [input.name], {}, `${source}/sigmoid`);
    else if (activation === 'tanh') name = this.graph.node('Tanh', [input.name], {}, `${source}/tanh`);
    else if (activation === 'elu') name = this.graph.node('Elu', [input.name], { alpha: float(1) }, `${source}/elu`);
    else name = this.graph.node('LeakyRelu', [input.name], { alpha: float(activation.leakyRelu) }, `${source}/leaky_relu`);
    return { ...input, name, nonNegative: activation === 'relu' || activation === 'relu6' || activation === 'sigmoid' };
  }

  /** ReLU with a ceiling (Keras `ReLU(max_value)`, TF `Relu6`) as Clip. */
  clip(x: Value, max: number, source: string): Value {
    if (max === 6) return this.activation(x, 'relu6', source);
    const input = this.materialise(x);
    const bounds = [this.graph.scalar(`${source}/min`, 0), this.graph.scalar(`${source}/max`, max)];
    return { ...input, name: this.graph.node('Clip', [input.name, ...bounds], {}, source), nonNegative: true };
  }

  /** Element-wise Add / Mul / Sub / Div / Max / Min of two values of the same shape. */
  binary(op: 'Add' | 'Mul' | 'Sub' | 'Div' | 'Max' | 'Min', a: Value, b: Value, source: string): Value {
    const [x, y] = [this.materialise(a), this.materialise(b)];
    if (!sameShape(x, y)) throw new UnsupportedModelError(op, `${source}: operands of shapes ${describe(x)} and ${describe(y)}`);
    const nonNegative = op !== 'Sub' && op !== 'Div' && Boolean(x.nonNegative) && Boolean(y.nonNegative);
    return { ...x, name: this.graph.node(op, [x.name, y.name], {}, source), nonNegative };
  }

  /**
   * The same with a constant: a scalar, or one value per channel (TensorFlow's trailing-axis broadcast, laid
   * out [C, 1, 1] for NCHW). `constantFirst` for `c - x` and `c / x`.
   */
  withConstant(op: 'Add' | 'Mul' | 'Sub' | 'Div' | 'Max' | 'Min', x: Value, constant: Float32Array, source: string, constantFirst = false): Value {
    const input = this.materialise(x);
    const channels = input.kind === 'image' ? input.channels : input.length;
    let dims: number[];
    if (constant.length === 1) dims = [];
    else if (constant.length === channels) dims = input.kind === 'image' ? [channels, 1, 1] : [channels];
    else throw new UnsupportedModelError(op, `${source}: a constant of ${constant.length} values on ${describe(input)}`);
    const c = this.graph.floats(`${source}/const`, dims, Float32Array.from(constant));
    const inputs = constantFirst ? [c, input.name] : [input.name, c];
    return { ...input, name: this.graph.node(op, inputs, {}, source), nonNegative: false };
  }

  pool(kind: 'avg' | 'max', x: Value, size: readonly [number, number], strides: readonly [number, number], padding: Padding, source: string): ImageValue {
    const padded = asImage(x, source);
    if (kind === 'max' && padded.pending && !padded.nonNegative) {
      // ONNX Runtime folds a zero Pad into the MaxPool after it, where padding counts as -inf: the same result
      // only when no input is negative. Refused rather than computed differently from TensorFlow.
      throw new UnsupportedModelError('MaxPool after zero padding', `${source}: its input may be negative, and ONNX Runtime would pool the padding as -inf`);
    }
    const image = this.materialise(padded) as ImageValue;
    const [kh, kw] = size;
    const ypads = explicitPads(padding, 'y', image.height, kh, strides[0], 1);
    const xpads = explicitPads(padding, 'x', image.width, kw, strides[1], 1);
    const pads = [ypads[0], xpads[0], ypads[1], xpads[1]];
    const height = outputSize(image.height, ypads[0], ypads[1], kh, strides[0], 1);
    const width = outputSize(image.width, xpads[0], xpads[1], kw, strides[1], 1);
    if (height < 1 || width < 1) throw new UnsupportedModelError(kind === 'avg' ? 'AveragePooling2D' : 'MaxPooling2D', `${source}: output would be empty`);
    // TensorFlow's 'same' average leaves padding out of the count: ONNX's count_include_pad = 0 (its default).
    const name = this.graph.node(kind === 'avg' ? 'AveragePool' : 'MaxPool', [image.name], { kernel_shape: [kh, kw], strides: [...strides], pads }, source);
    return { kind: 'image', name, channels: image.channels, height, width, nonNegative: image.nonNegative };
  }

  /** Mean over height and width; `keepDims` keeps a 1×1 image, otherwise a vector per image. */
  globalAveragePool(x: Value, keepDims: boolean, source: string): Value {
    const image = this.materialise(asImage(x, source)) as ImageValue;
    const name = this.graph.node('GlobalAveragePool', [image.name], {}, source);
    const pooled: ImageValue = { kind: 'image', name, channels: image.channels, height: 1, width: 1, nonNegative: image.nonNegative };
    return keepDims ? pooled : this.flatten(pooled, `${source}/flatten`);
  }

  /** Row-major flattening in TensorFlow's NHWC order (a transpose first unless the image is 1×1). */
  flatten(x: Value, source: string): VectorValue {
    if (x.kind === 'vector') return x;
    const image = this.materialise(x) as ImageValue;
    const nhwc = image.height === 1 && image.width === 1 ? image.name : this.graph.node('Transpose', [image.name], { perm: [0, 2, 3, 1] }, `${source}/nhwc`);
    const name = this.graph.node('Flatten', [nhwc], { axis: 1 }, source);
    return { kind: 'vector', name, length: image.channels * image.height * image.width, nonNegative: image.nonNegative };
  }

  /** Keras Dense / TF MatMul on a vector: kernel [in, out]. */
  dense(x: Value, kernel: Float32Array, units: number, bias: Float32Array | undefined, activation: Activation, source: string): VectorValue {
    const input = this.flatten(x, `${source}/flatten`);
    if (kernel.length !== input.length * units) {
      throw new UnsupportedModelError('Dense', `${source}: kernel of ${kernel.length} values for ${input.length} inputs and ${units} units`);
    }
    const w = this.graph.floats(`${source}/kernel`, [input.length, units], Float32Array.from(kernel));
    const b = this.graph.floats(`${source}/bias`, [units], bias ? Float32Array.from(bias) : new Float32Array(units));
    const name = this.graph.node('Gemm', [input.name, w, b], {}, source);
    return this.activation({ kind: 'vector', name, length: units }, activation, source) as VectorValue;
  }

  /** Channel concatenation (TensorFlow's last axis). */
  concat(values: readonly Value[], source: string): Value {
    const inputs = values.map((v) => this.materialise(v));
    const first = inputs[0];
    if (!first) throw new UnsupportedModelError('Concatenate', `${source}: no inputs`);
    if (first.kind === 'image') {
      if (inputs.some((v) => v.kind !== 'image' || v.height !== first.height || v.width !== first.width)) {
        throw new UnsupportedModelError('Concatenate', `${source}: inputs of different sizes`);
      }
      const channels = inputs.reduce((sum, v) => sum + (v as ImageValue).channels, 0);
      const nonNegative = inputs.every((v) => v.nonNegative);
      return { ...first, channels, name: this.graph.node('Concat', inputs.map((v) => v.name), { axis: 1 }, source), nonNegative };
    }
    const vectors = inputs.filter((v): v is VectorValue => v.kind === 'vector');
    if (vectors.length !== inputs.length) throw new UnsupportedModelError('Concatenate', `${source}: images with vectors`);
    const length = vectors.reduce((sum, v) => sum + v.length, 0);
    return { kind: 'vector', length, name: this.graph.node('Concat', inputs.map((v) => v.name), { axis: 1 }, source), nonNegative: vectors.every((v) => v.nonNegative) };
  }

  /** Writes the model: the output is flattened in NHWC order, as tfjs's `reshape([n, -1])` of the features. */
  finish(output: Value, metadata: Readonly<Record<string, string>>): { readonly bytes: Uint8Array; readonly featureDim: number } {
    const vector = this.flatten(output, 'features_flat');
    this.graph.node('Identity', [vector.name], {}, OUTPUT_NAME, OUTPUT_NAME);
    const bytes = this.graph.build(
      { name: INPUT_NAME, dims: ['batch', this.inputSize, this.inputSize, 3], type: 'uint8' },
      { name: OUTPUT_NAME, dims: ['batch', vector.length] },
      metadata,
    );
    return { bytes, featureDim: vector.length };
  }

  /** Writes a pending zero padding as a Pad node (once per value), for consumers that cannot absorb it. */
  private materialise(x: Value): Value {
    if (x.kind !== 'image' || !x.pending) return x;
    const cached = this.materialised.get(x.name + x.pending.join(','));
    if (cached) return cached;
    const [t, l, b, r] = x.pending;
    const pads = this.graph.int64s(`${x.name}/pads`, [0, 0, t, l, 0, 0, b, r]);
    const name = this.graph.node('Pad', [x.name, pads], { mode: 'constant' }, `${x.name}/pad`);
    const value: ImageValue = { kind: 'image', name, channels: x.channels, height: x.height + t + b, width: x.width + l + r, nonNegative: x.nonNegative };
    this.materialised.set(x.name + x.pending.join(','), value);
    return value;
  }
}

function asImage(x: Value, source: string): ImageValue {
  if (x.kind !== 'image') throw new UnsupportedModelError('image op', `${source}: expects an image but its input is a vector of ${x.length}`);
  return x;
}

function sameShape(a: Value, b: Value): boolean {
  if (a.kind === 'vector') return b.kind === 'vector' && a.length === b.length;
  return b.kind === 'image' && a.channels === b.channels && a.height === b.height && a.width === b.width;
}

function describe(x: Value): string {
  return x.kind === 'image' ? `[${x.height}, ${x.width}, ${x.channels}]` : `[${x.length}]`;
}

/**
 * [before, after] padding along one axis. TensorFlow's 'same' pads so that out = ceil(in / stride), putting the
 * odd pixel after (bottom/right): with stride 2 on an even size that is 0 before and 1 after.
 */
export function explicitPads(padding: Padding, axis: 'y' | 'x', size: number, kernel: number, stride: number, dilation: number): [number, number] {
  if (padding === 'valid') return [0, 0];
  if (padding !== 'same') return axis === 'y' ? [padding[0], padding[2]] : [padding[1], padding[3]];
  const effective = (kernel - 1) * dilation + 1;
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + effective - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

function outputSize(size: number, before: number, after: number, kernel: number, stride: number, dilation: number): number {
  return Math.floor((size + before + after - ((kernel - 1) * dilation + 1)) / stride) + 1;
}

/** [kh, kw, in, out] → ONNX [out, in, kh, kw]. */
function convKernel(k: Float32Array, kh: number, kw: number, cin: number, cout: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      for (let i = 0; i < cin; i++) {
        const src = ((y * kw + x) * cin + i) * cout;
        for (let o = 0; o < cout; o++) out[((o * cin + i) * kh + y) * kw + x] = k[src + o]!;
      }
    }
  }
  return out;
}

/** [kh, kw, in, multiplier] → ONNX [in × multiplier, 1, kh, kw]; output channel c × multiplier + m, as TensorFlow orders it. */
function depthwiseKernel(k: Float32Array, kh: number, kw: number, cin: number, mult: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      for (let c = 0; c < cin; c++) {
        for (let m = 0; m < mult; m++) out[((c * mult + m) * kh + y) * kw + x] = k[((y * kw + x) * cin + c) * mult + m]!;
      }
    }
  }
  return out;
}
