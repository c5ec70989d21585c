import { onnx } from 'onnx-proto';
import { UnsupportedModelError } from './network';

/**
 * The int8 form of a compiled float graph, as QDQ (QuantizeLinear/DequantizeLinear pairs around the float ops),
 * which ONNX Runtime fuses into its integer kernels (QLinearConv, QLinearAdd) and which, run unoptimised, is
 * its own exact float simulation. It works on the compiled ONNX graph, not on the source model, so every model
 * the compiler translates can be quantized the same way:
 *
 * - activations uint8, per tensor, from calibrated ranges: every convolution's output (after its ReLU/ReLU6
 *   when one follows), every Add of two computed values and its operands, and every convolution input, the
 *   normalised image included (which, when the normalisation is `pixel × s − zp × s` with an integer zp, is the
 *   pixel bytes themselves through one DequantizeLinear); pooling and the rest stay float;
 * - weights int8, symmetric, per output channel: [-63, 63] (7 bits) for full and 1×1 convolutions when the CPU
 *   could saturate on 8 (runtime/onnx/cpu.ts), [-127, 127] otherwise and always for depthwise ones;
 * - biases int32 at input scale × weight scale, corrected for the weights' rounding error: b − ΔW·E[x]
 *   (Nagel et al. 2019, "Data-free quantization"), with E[x] the calibrated mean of each input channel.
 */

const { DataType } = onnx.TensorProto;

export interface ActivationRange {
  readonly min: number;
  readonly max: number;
}

/** What calibration measures on the float graph, tensor by tensor (names as `quantizationTargets` gives them). */
export interface CalibrationStats {
  readonly ranges: ReadonlyMap<string, ActivationRange>;
  /** Mean of each channel (axis 1, NCHW) of every convolution's input. */
  readonly channelMeans: ReadonlyMap<string, Float64Array>;
}

export interface QuantizeOptions {
  readonly weightBits: 7 | 8;
}

/** The tensors calibration must observe: ranges of the activations to quantize, channel means of conv inputs. */
export interface QuantizationTargets {
  readonly ranges: readonly string[];
  readonly channelMeans: readonly string[];
}

interface Analysis {
  readonly model: onnx.ModelProto;
  readonly initializers: Map<string, onnx.ITensorProto>;
  readonly convs: onnx.INodeProto[];
  /** Tensors that get a Q/DQ pair after their producer. */
  readonly quantized: string[];
  /** The normalisation chain that becomes one DequantizeLinear of the pixel bytes, when it can. */
  readonly pixelInput?: { readonly nodes: readonly onnx.INodeProto[]; readonly source: string; readonly output: string; readonly scale: number; readonly zeroPoint: number };
}

export function quantizationTargets(fp32: Uint8Array): QuantizationTargets {
  const analysis = analyse(fp32);
  const convInputs = [...new Set(analysis.convs.map((conv) => conv.input![0]!))];
  return { ranges: analysis.quantized, channelMeans: convInputs };
}

/** The QDQ graph of a float graph, given what calibration measured on it. */
export function quantizeGraph(fp32: Uint8Array, stats: CalibrationStats, options: QuantizeOptions): Uint8Array {
  const { model, initializers, convs, quantized, pixelInput } = analyse(fp32);
  const graph = model.graph!;
  const added: onnx.ITensorProto[] = [];
  const constant = (name: string, type: number, dims: readonly number[], data: ArrayBufferView): string => {
    added.push({ name, dataType: type, dims: [...dims], rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  };

  // Activation scale and zero point of every quantized tensor (asymmetric uint8 over a range that includes 0).
  const params = new Map<string, { scale: number; zeroPoint: number }>();
  for (const tensor of quantized) {
    const range = stats.ranges.get(tensor);
    if (!range) throw new Error(`quantize: no calibrated range for '${tensor}'`);
    params.set(tensor, activationParams(range));
  }
  if (pixelInput) params.set(pixelInput.output, { scale: pixelInput.scale, zeroPoint: pixelInput.zeroPoint });

  const qdq = (tensor: string): onnx.INodeProto[] => {
    const { scale, zeroPoint } = params.get(tensor)!;
    const s = constant(`${tensor}/q_scale`, DataType.FLOAT, [], Float32Array.of(scale));
    const z = constant(`${tensor}/q_zero`, DataType.UINT8, [], Uint8Array.of(zeroPoint));
    return [
      { opType: 'QuantizeLinear', name: `${tensor}/quantize`, input: [tensor, s, z], output: [`${tensor}/q`] },
      { opType: 'DequantizeLinear', name: `${tensor}/dequantize`, input: [`${tensor}/q`, s, z], output: [`${tensor}/dq`] },
    ];
  };
  const rename = new Map(quantized.map((tensor) => [tensor, `${tensor}/dq`]));

  // Weights and biases of every convolution, replaced by their integer forms behind DequantizeLinear.
  const weightNodes = new Map<onnx.INodeProto, onnx.INodeProto[]>();
  for (const conv of convs) {
    const [x, w, b] = conv.input!;
    const weightTensor = initializers.get(w!)!;
    const dims = weightTensor.dims!.map(Number);
    const weight = floatsOf(weightTensor);
    const cout = dims[0]!;
    const perFilter = weight.length / cout;
    const group = Number(conv.attribute?.find((a) => a.name === 'group')?.i ?? 1);
    const depthwise = group > 1 && dims[1] === 1;
    const qmax = depthwise || options.weightBits === 8 ? 127 : 63;
    const weightScales = new Float32Array(cout);
    const quantizedWeight = new Int8Array(weight.length);
    const error = new Float64Array(weight.length);
    for (let o = 0; o < cout; o++) {
      let largest = 0;
      for (let i = 0; i < perFilter; i++) largest = Math.max(largest, Math.abs(weight[o * perFilter + i]!));
      const scale = largest > 0 ? Math.fround(largest / qmax) : 1;
      weightScales[o] = scale;
      for (let i = 0; i < perFilter; i++) {
        const at = o * perFilter + i;
        const q = Math.max(-qmax, Math.min(qmax, Math.round(weight[at]! / scale)));
        quantizedWeight[at] = q;
        error[at] = q * scale - weight[at]!;
      }
    }
    const bias = b === undefined || b === '' ? new Float32Array(cout) : floatsOf(initializers.get(b)!);
    const inputScale = params.get(x!)!.scale;
    const means = stats.channelMeans.get(x!);
    if (!means) throw new Error(`quantize: no calibrated channel means for '${x}'`);
    const cinPerGroup = dims[1]!;
    const kernel = perFilter / cinPerGroup;
    const coutPerGroup = cout / group;
    const biasScales = new Float32Array(cout);
    const quantizedBias = new Int32Array(cout);
    for (let o = 0; o < cout; o++) {
      const firstInput = Math.floor(o / coutPerGroup) * cinPerGroup;
      let shift = 0;
      for (let i = 0; i < cinPerGroup; i++) {
        let sum = 0;
        for (let k = 0; k < kernel; k++) sum += error[o * perFilter + i * kernel + k]!;
        shift += sum * means[firstInput + i]!;
      }
      biasScales[o] = Math.fround(inputScale * weightScales[o]!);
      const q = Math.round((bias[o]! - shift) / biasScales[o]!);
      quantizedBias[o] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, q));
    }
    const name = conv.name ?? conv.output![0]!;
    const wq = constant(`${name}/weight_q`, DataType.INT8, dims, quantizedWeight);
    const ws = constant(`${name}/weight_scale`, DataType.FLOAT, [cout], weightScales);
    const wz = constant(`${name}/weight_zero`, DataType.INT8, [cout], new Int8Array(cout));
    const bq = constant(`${name}/bias_q`, DataType.INT32, [cout], quantizedBias);
    const bs = constant(`${name}/bias_scale`, DataType.FLOAT, [cout], biasScales);
    const bz = constant(`${name}/bias_zero`, DataType.INT32, [cout], new Int32Array(cout));
    const axis = [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }];
    weightNodes.set(conv, [
      { opType: 'DequantizeLinear', name: `${name}/weight_dq`, input: [wq, ws, wz], output: [`${name}/weight_dq`], attribute: axis },
      { opType: 'DequantizeLinear', name: `${name}/bias_dq`, input: [bq, bs, bz], output: [`${name}/bias_dq`], attribute: axis },
    ]);
    conv.input = [x!, `${name}/weight_dq`, `${name}/bias_dq`];
  }

  const dropped = new Set(pixelInput?.nodes ?? []);
  const nodes: onnx.INodeProto[] = [];
  for (const node of graph.node!) {
    if (dropped.has(node)) {
      // The normalisation chain: one DequantizeLinear of the (transposed) pixel bytes, in place of its last node.
      if (node === pixelInput!.nodes[pixelInput!.nodes.length - 1]) {
        const s = constant('pixels/scale', DataType.FLOAT, [], Float32Array.of(pixelInput!.scale));
        const z = constant('pixels/zero', DataType.UINT8, [], Uint8Array.of(pixelInput!.zeroPoint));
        nodes.push({ opType: 'DequantizeLinear', name: 'pixels/dequantize', input: [pixelInput!.source, s, z], output: [pixelInput!.output] });
      }
      continue;
    }
    nodes.push(...(weightNodes.get(node) ?? []));
    node.input = node.input!.map((input) => rename.get(input) ?? input);
    nodes.push(node);
    for (const output of node.output!) if (rename.has(output)) nodes.push(...qdq(output));
  }
  const usedInitializers = new Set(nodes.flatMap((node) => node.input!));
  graph.node = nodes;
  graph.initializer = [...graph.initializer!.filter((tensor) => usedInitializers.has(tensor.name!)), ...added];
  return onnx.ModelProto.encode(model).finish();
}

/** uint8 scale and zero point covering [min(0, lo), max(0, hi)] (ONNX Runtime's own asymmetric scheme). */
export function activationParams(range: ActivationRange): { scale: number; zeroPoint: number } {
  const lo = Math.min(0, range.min);
  const hi = Math.max(0, range.max);
  if (!(hi > lo)) return { scale: 1, zeroPoint: 0 };
  const scale = Math.fround((hi - lo) / 255);
  return { scale, zeroPoint: Math.max(0, Math.min(255, Math.round(-lo / scale))) };
}

function analyse(bytes: Uint8Array): Analysis {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph?.node) throw new UnsupportedModelError('int8', 'the graph has no nodes');
  const initializers = new Map(graph.initializer!.map((tensor) => [tensor.name!, tensor]));
  const consumers = new Map<string, onnx.INodeProto[]>();
  for (const node of graph.node) for (const input of node.input!) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  const outputs = new Set(graph.output!.map((output) => output.name!));
  const floatInit = (name: string | undefined) => name !== undefined && initializers.get(name)?.dataType === DataType.FLOAT;

  const convs = graph.node.filter((node) => node.opType === 'Conv' && floatInit(node.input![1]) && (node.input!.length < 3 || floatInit(node.input![2])));
  if (convs.length === 0) throw new UnsupportedModelError('int8', 'the graph has no convolution to quantize');
  const pixelInput = findPixelInput(graph, initializers, consumers);
  const wanted = new Set<string>();
  for (const conv of convs) {
    wanted.add(conv.input![0]!);
    const output = conv.output![0]!;
    const next = consumers.get(output) ?? [];
    const activation = next.length === 1 && (next[0]!.opType === 'Clip' || next[0]!.opType === 'Relu') ? next[0]! : undefined;
    wanted.add(activation ? activation.output![0]! : output);
  }
  for (const node of graph.node) {
    if (node.opType === 'Add' && node.input!.every((input) => !initializers.has(input))) {
      for (const tensor of [...node.input!, node.output![0]!]) wanted.add(tensor);
    }
  }
  const graphInputs = new Set(graph.input!.map((input) => input.name!));
  const quantized = [...wanted].filter((tensor) => !outputs.has(tensor) && !graphInputs.has(tensor) && tensor !== pixelInput?.output);
  return { model, initializers, convs, quantized, pixelInput };
}

/**
 * The graph's normalisation, `input → Transpose → Cast(float) [→ Mul s] [→ Add o]`, when it is a dequantization
 * (o = −zp × s with a whole zp in 0…255: inputs in [0, 1] are; [-1, 1], with zp 127.5, is not and gets a
 * calibrated Q/DQ pair like any activation).
 */
function findPixelInput(graph: onnx.IGraphProto, initializers: Map<string, onnx.ITensorProto>, consumers: Map<string, onnx.INodeProto[]>): Analysis['pixelInput'] {
  const only = (tensor: string) => {
    const next = consumers.get(tensor) ?? [];
    return next.length === 1 ? next[0] : undefined;
  };
  const scalarOf = (node: onnx.INodeProto) => {
    const tensor = node.input!.map((input) => initializers.get(input)).find((t) => t !== undefined && (t.dims?.length ?? 0) === 0);
    return tensor ? floatsOf(tensor)[0] : undefined;
  };
  const input = graph.input?.[0]?.name ?? undefined;
  const transpose = input === undefined ? undefined : only(input);
  const cast = transpose?.opType === 'Transpose' ? only(transpose.output![0]!) : undefined;
  if (cast?.opType !== 'Cast') return undefined;
  const chain = [cast];
  let scale = 1;
  let offset = 0;
  let next = only(cast.output![0]!);
  if (next?.opType === 'Mul' && scalarOf(next) !== undefined) {
    scale = scalarOf(next)!;
    chain.push(next);
    next = only(next.output![0]!);
  }
  if (next?.opType === 'Add' && scalarOf(next) !== undefined) {
    offset = scalarOf(next)!;
    chain.push(next);
  }
  const zeroPoint = -offset / scale;
  if (!(scale > 0) || Math.abs(zeroPoint - Math.round(zeroPoint)) > 1e-4 || zeroPoint < 0 || zeroPoint > 255) return undefined;
  return { nodes: chain, source: transpose!.output![0]!, output: chain[chain.length - 1]!.output![0]!, scale, zeroPoint: Math.round(zeroPoint) };
}

function floatsOf(tensor: onnx.ITensorProto): Float32Array {
  if (tensor.rawData && tensor.rawData.length > 0) {
    const copy = Uint8Array.from(tensor.rawData);
    return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
  }
  return Float32Array.from(tensor.floatData ?? []);
}
