import { Network, UnsupportedModelError, type Activation, type Padding, type Value } from './network';
import { floats, integers, type Weight } from './weights';

/**
 * TensorFlow graph (tfjs `graph-model` model.json: a frozen GraphDef as JSON, constants in the weights) → ONNX,
 * up to the feature node. The ops are those tfjs-converter writes for convolutional image models, fused ones
 * included; any other op is an UnsupportedModelError naming it and its node, so `--engine auto` can fall back.
 */
export const SUPPORTED_OPS = [
  'Placeholder',
  'Const',
  'Identity',
  'StopGradient',
  'Snapshot',
  'Conv2D',
  'DepthwiseConv2dNative',
  '_FusedConv2D',
  'FusedDepthwiseConv2dNative',
  'FusedBatchNorm',
  'FusedBatchNormV2',
  'FusedBatchNormV3',
  'BiasAdd',
  'Add',
  'AddV2',
  'Sub',
  'Mul',
  'RealDiv',
  'Maximum',
  'Minimum',
  'Relu',
  'Relu6',
  'Elu',
  'LeakyRelu',
  'Sigmoid',
  'Tanh',
  'AvgPool',
  'MaxPool',
  'Mean',
  'Pad',
  'PadV2',
  'Squeeze',
  'Reshape',
  'ConcatV2',
  'MatMul',
  '_FusedMatMul',
] as const;

interface AttrValue {
  readonly s?: string;
  readonly i?: string | number;
  readonly f?: number;
  readonly b?: boolean;
  readonly list?: { readonly s?: string[]; readonly i?: (string | number)[]; readonly f?: number[] };
  readonly shape?: { readonly dim?: { readonly size?: string | number }[]; readonly unknownRank?: boolean };
}

interface NodeJson {
  readonly name: string;
  readonly op: string;
  readonly input?: readonly string[];
  readonly attr?: Readonly<Record<string, AttrValue>>;
}

export interface GraphSource {
  readonly topology: unknown;
  /** model.json's `signature` (TF Hub models name their output there). */
  readonly signature?: unknown;
  readonly weights: ReadonlyMap<string, Weight>;
  readonly inputSize: number;
  /** The node whose output is the feature vector; the signature's (or the graph's only) output when absent. */
  readonly featureNode?: string;
}

const PASS_THROUGH = new Set(['Identity', 'StopGradient', 'Snapshot']);
const BINARY = { BiasAdd: 'Add', Add: 'Add', AddV2: 'Add', Sub: 'Sub', Mul: 'Mul', RealDiv: 'Div', Maximum: 'Max', Minimum: 'Min' } as const;
const ACTIVATIONS: Readonly<Record<string, Activation>> = { Relu: 'relu', Relu6: 'relu6', Elu: 'elu', Sigmoid: 'sigmoid', Tanh: 'tanh' };

export function compileGraphModel(source: GraphSource, network: Network): Value {
  const nodes = readNodes(source.topology);
  const byName = new Map(nodes.map((node) => [node.name, node]));
  const readers = new Map<string, number>();
  for (const node of nodes) for (const input of dataInputs(node)) readers.set(input, (readers.get(input) ?? 0) + 1);
  const target = source.featureNode ?? outputNode(nodes, readers, source.signature);
  if (!byName.has(target)) throw new UnsupportedModelError('feature node', `the graph has no node named '${target}'`);

  const constant = (name: string): Weight | undefined => {
    let node = byName.get(name);
    while (node && PASS_THROUGH.has(node.op) && node.input?.[0]) node = byName.get(tensorName(node.input[0], node));
    return node?.op === 'Const' ? (source.weights.get(node.name) ?? missingConstant(node.name)) : undefined;
  };
  const values = new Map<string, Value>();
  for (const node of topologicalOrder(target, byName)) {
    if (node.op === 'Const' || node.op === 'NoOp') continue;
    const operand = (index: number): Value | Weight => {
      const input = node.input?.filter((name) => !name.startsWith('^'))[index];
      if (input === undefined) throw new UnsupportedModelError(node.op, `node '${node.name}' lacks input ${index}`);
      const name = tensorName(input, node);
      const weight = constant(name);
      if (weight) return weight;
      const value = values.get(name);
      if (!value) throw new UnsupportedModelError(node.op, `node '${node.name}' reads '${name}', which is not computed`);
      return value;
    };
    values.set(node.name, translate(node, operand, network, source.inputSize, (name) => readers.get(name) ?? 0));
  }
  const output = values.get(target);
  if (!output) throw new UnsupportedModelError('feature node', `'${target}' is a constant`);
  return output;
}

type Operand = (index: number) => Value | Weight;

function translate(node: NodeJson, operand: Operand, network: Network, inputSize: number, readersOf: (name: string) => number): Value {
  const where = `node '${node.name}'`;
  const attr = node.attr ?? {};
  const value = (index: number): Value => {
    const v = operand(index);
    if (isWeight(v)) throw new UnsupportedModelError(node.op, `${where}: input ${index} is a constant`);
    return v;
  };
  const weight = (index: number): Weight => {
    const v = operand(index);
    if (!isWeight(v)) throw new UnsupportedModelError(node.op, `${where}: input ${index} is computed, a constant was expected`);
    return v;
  };
  const nhwc = () => {
    const format = stringAttr(attr.data_format) ?? 'NHWC';
    if (format !== 'NHWC') throw new UnsupportedModelError(node.op, `${where} uses data_format ${format}`);
  };
  const firstInput = (node.input ?? []).find((name) => !name.startsWith('^'));
  const readersOfInput = firstInput === undefined ? 0 : readersOf(tensorName(firstInput, node));

  if (PASS_THROUGH.has(node.op)) return value(0);
  switch (node.op) {
    case 'Placeholder': {
      const dims = attr.shape?.shape?.dim?.map((d) => Number(d.size ?? -1)) ?? [];
      const [, h, w, c] = dims.length === 4 ? dims : [-1, -1, -1, 3];
      if ((h !== -1 && h !== inputSize) || (w !== -1 && w !== inputSize)) {
        throw new UnsupportedModelError('Placeholder', `${where} takes ${h}×${w} images, but the model is run at ${inputSize}×${inputSize}`);
      }
      if (c !== -1 && c !== 3) throw new UnsupportedModelError('Placeholder', `${where} takes ${c} channels; images have 3`);
      return network.input();
    }
    case 'Conv2D':
    case 'DepthwiseConv2dNative':
    case '_FusedConv2D':
    case 'FusedDepthwiseConv2dNative': {
      nhwc();
      const depthwise = node.op.includes('Depthwise');
      const filter = weight(1);
      const fused = (attr.fused_ops?.list?.s ?? []).map(decode);
      const [first, second, ...rest] = fused;
      if (rest.length > 0 || (first !== undefined && first !== 'BiasAdd' && first !== 'FusedBatchNorm')) {
        throw new UnsupportedModelError(`${node.op} [${fused.join(', ')}]`, where);
      }
      const conv = network.conv(value(0), {
        source: node.name,
        kernel: floats(filter),
        kernelShape: filter.shape,
        depthwise,
        strides: spatial(attr.strides, where),
        dilations: spatial(attr.dilations, where, [1, 1, 1, 1]),
        padding: padding(attr, where),
        bias: first === 'BiasAdd' ? floats(weight(2)) : undefined,
      });
      const normalised =
        first === 'FusedBatchNorm'
          ? network.batchNorm(conv, { source: node.name, gamma: floats(weight(2)), beta: floats(weight(3)), mean: floats(weight(4)), variance: floats(weight(5)), epsilon: numberAttr(attr.epsilon) ?? 1e-4 }, 1)
          : conv;
      return second === undefined ? normalised : network.activation(normalised, fusedActivation(second, attr, where), node.name);
    }
    case 'FusedBatchNorm':
    case 'FusedBatchNormV2':
    case 'FusedBatchNormV3': {
      nhwc();
      if (attr.is_training?.b === true) throw new UnsupportedModelError(node.op, `${where} is in training mode`);
      return network.batchNorm(
        value(0),
        { source: node.name, gamma: floats(weight(1)), beta: floats(weight(2)), mean: floats(weight(3)), variance: floats(weight(4)), epsilon: numberAttr(attr.epsilon) ?? 1e-4 },
        readersOfInput,
      );
    }
    case 'BiasAdd':
    case 'Add':
    case 'AddV2':
    case 'Sub':
    case 'Mul':
    case 'RealDiv':
    case 'Maximum':
    case 'Minimum': {
      if (node.op === 'BiasAdd') nhwc();
      const op = BINARY[node.op];
      const [a, b] = [operand(0), operand(1)];
      if (!isWeight(a) && !isWeight(b)) return network.binary(op, a, b, node.name);
      if (!isWeight(a) && isWeight(b)) return network.withConstant(op, a, floats(b), node.name);
      if (isWeight(a) && !isWeight(b)) return network.withConstant(op, b, floats(a), node.name, true);
      throw new UnsupportedModelError(node.op, `${where} has only constant inputs`);
    }
    case 'Relu':
    case 'Relu6':
    case 'Elu':
    case 'Sigmoid':
    case 'Tanh':
      return network.activation(value(0), ACTIVATIONS[node.op]!, node.name);
    case 'LeakyRelu':
      return network.activation(value(0), { leakyRelu: numberAttr(attr.alpha) ?? 0.2 }, node.name);
    case 'AvgPool':
    case 'MaxPool': {
      nhwc();
      return network.pool(node.op === 'AvgPool' ? 'avg' : 'max', value(0), spatial(attr.ksize, where), spatial(attr.strides, where), padding(attr, where), node.name);
    }
    case 'Mean': {
      const axes = integers(weight(1)).map((axis) => (axis < 0 ? axis + 4 : axis)).sort();
      if (axes.length !== 2 || axes[0] !== 1 || axes[1] !== 2) throw new UnsupportedModelError('Mean', `${where} averages axes [${axes.join(', ')}], not height and width`);
      return network.globalAveragePool(value(0), attr.keep_dims?.b === true, node.name);
    }
    case 'Pad':
    case 'PadV2': {
      if (node.op === 'PadV2' && floats(weight(2)).some((v) => v !== 0)) throw new UnsupportedModelError('PadV2', `${where} pads with a non-zero value`);
      const p = integers(weight(1));
      if (p.length !== 8 || p[0] !== 0 || p[1] !== 0 || p[6] !== 0 || p[7] !== 0) throw new UnsupportedModelError(node.op, `${where} pads [${p.join(', ')}] (batch or channels)`);
      return network.zeroPad(value(0), [p[2]!, p[4]!, p[3]!, p[5]!], node.name);
    }
    case 'Squeeze': {
      const x = value(0);
      const axes = (attr.squeeze_dims?.list?.i ?? attr.axis?.list?.i ?? []).map(Number).sort();
      if (x.kind === 'image' && x.height === 1 && x.width === 1 && (axes.length === 0 || (axes[0] === 1 && axes[1] === 2))) return network.flatten(x, node.name);
      throw new UnsupportedModelError('Squeeze', `${where} squeezes axes [${axes.join(', ')}]`);
    }
    case 'Reshape': {
      const x = value(0);
      const shape = integers(weight(1));
      const length = x.kind === 'image' ? x.channels * x.height * x.width : x.length;
      // [-1, features]: one row per image, in NHWC order, which is what flatten gives.
      if (shape.length === 2 && shape[0] === -1 && (shape[1] === -1 || shape[1] === length)) return network.flatten(x, node.name);
      throw new UnsupportedModelError('Reshape', `${where} to [${shape.join(', ')}]`);
    }
    case 'ConcatV2': {
      const inputs = (node.input ?? []).filter((name) => !name.startsWith('^'));
      const axis = integers(weight(inputs.length - 1))[0];
      const parts = inputs.slice(0, -1).map((_, i) => value(i));
      const rank = parts[0]?.kind === 'image' ? 4 : 2;
      if (axis !== -1 && axis !== rank - 1) throw new UnsupportedModelError('ConcatV2', `${where} joins along axis ${axis}, not the channels`);
      return network.concat(parts, node.name);
    }
    case 'MatMul':
    case '_FusedMatMul': {
      if (attr.transpose_a?.b || attr.transpose_b?.b) throw new UnsupportedModelError(node.op, `${where} with a transposed operand`);
      const kernel = weight(1);
      const fused = (attr.fused_ops?.list?.s ?? []).map(decode);
      if (fused.length > 2 || (fused[0] !== undefined && fused[0] !== 'BiasAdd')) throw new UnsupportedModelError(`${node.op} [${fused.join(', ')}]`, where);
      const act = fused[1] === undefined ? 'linear' : fusedActivation(fused[1], attr, where);
      return network.dense(value(0), floats(kernel), kernel.shape[1] ?? 0, fused[0] ? floats(weight(2)) : undefined, act, node.name);
    }
    default:
      throw new UnsupportedModelError(node.op, `${where} (supported ops: ${SUPPORTED_OPS.join(', ')})`);
  }
}

function readNodes(topology: unknown): NodeJson[] {
  const nodes = (topology as { node?: unknown } | undefined)?.node;
  if (!Array.isArray(nodes)) throw new UnsupportedModelError('graph model', 'model.json has no node list');
  const library = (topology as { library?: { function?: unknown[] } }).library?.function ?? [];
  if (library.length > 0) throw new UnsupportedModelError('graph functions', `the graph defines ${library.length} function(s) (control flow)`);
  return nodes as NodeJson[];
}

/** The inputs that carry data (not `^control` edges), without their `:0` output index. */
function dataInputs(node: NodeJson): string[] {
  return (node.input ?? []).filter((name) => !name.startsWith('^')).map((name) => tensorName(name, node));
}

/** A node name from an input reference; only each node's first output is ever read by the supported ops. */
function tensorName(input: string, reader: NodeJson): string {
  const match = /^(.*?)(?::(\d+))?$/.exec(input)!;
  if (match[2] !== undefined && match[2] !== '0') throw new UnsupportedModelError(reader.op, `node '${reader.name}' reads output ${match[2]} of '${match[1]}'`);
  return match[1]!;
}

function outputNode(nodes: readonly NodeJson[], readers: ReadonlyMap<string, number>, signature: unknown): string {
  const outputs = (signature as { outputs?: Record<string, { name?: string }> } | undefined)?.outputs;
  const named = outputs ? Object.values(outputs).map((o) => o.name?.replace(/:0$/, '')).filter((name): name is string => Boolean(name)) : [];
  if (named.length === 1) return named[0]!;
  const ends = nodes.filter((node) => !readers.has(node.name) && !['Const', 'NoOp', 'Placeholder'].includes(node.op)).map((node) => node.name);
  if (ends.length === 1) return ends[0]!;
  throw new UnsupportedModelError('graph output', `the graph has ${ends.length} outputs (${ends.slice(0, 5).join(', ')}); name the feature node with --feature-layer`);
}

/** Nodes the target depends on, each after its inputs (iterative: graphs are thousands of nodes deep). */
function topologicalOrder(target: string, byName: ReadonlyMap<string, NodeJson>): NodeJson[] {
  const order: NodeJson[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: { node: NodeJson; next: number }[] = [{ node: byName.get(target)!, next: 0 }];
  state.set(target, 'open');
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const inputs = dataInputs(top.node);
    if (top.next < inputs.length) {
      const name = inputs[top.next++]!;
      const node = byName.get(name);
      if (!node) throw new UnsupportedModelError(top.node.op, `node '${top.node.name}' reads '${name}', which is not in the graph`);
      const seen = state.get(name);
      if (seen === 'open') throw new UnsupportedModelError('graph', `a cycle through '${name}'`);
      if (seen === undefined) {
        state.set(name, 'open');
        stack.push({ node, next: 0 });
      }
      continue;
    }
    state.set(top.node.name, 'done');
    order.push(top.node);
    stack.pop();
  }
  return order;
}

function missingConstant(name: string): never {
  throw new UnsupportedModelError('Const', `constant '${name}' is not in the weights manifest`);
}

function isWeight(value: Value | Weight): value is Weight {
  return 'values' in value;
}

function decode(base64: string): string {
  return Buffer.from(base64, 'base64').toString('utf8');
}

function stringAttr(value: AttrValue | undefined): string | undefined {
  return value?.s === undefined ? undefined : decode(value.s);
}

function numberAttr(value: AttrValue | undefined): number | undefined {
  if (value?.f !== undefined) return Number(value.f);
  if (value?.i !== undefined) return Number(value.i);
  return undefined;
}

/** [1, h, w, 1] → [h, w] (NHWC strides, dilations, pool sizes). */
function spatial(value: AttrValue | undefined, where: string, fallback?: number[]): [number, number] {
  const list = value?.list?.i?.map(Number) ?? fallback;
  if (!list || list.length !== 4 || list[0] !== 1 || list[3] !== 1) throw new UnsupportedModelError('attribute', `${where}: ${JSON.stringify(value)}`);
  return [list[1]!, list[2]!];
}

function padding(attr: Readonly<Record<string, AttrValue>>, where: string): Padding {
  const mode = stringAttr(attr.padding);
  if (mode === 'SAME') return 'same';
  if (mode === 'VALID') return 'valid';
  if (mode === 'EXPLICIT') {
    const p = (attr.explicit_paddings?.list?.i ?? []).map(Number);
    if (p.length !== 8 || p[0] || p[1] || p[6] || p[7]) throw new UnsupportedModelError('padding EXPLICIT', `${where}: [${p.join(', ')}]`);
    return [p[2]!, p[4]!, p[3]!, p[5]!];
  }
  throw new UnsupportedModelError(`padding ${String(mode)}`, where);
}

function fusedActivation(name: string, attr: Readonly<Record<string, AttrValue>>, where: string): Activation {
  if (name === 'LeakyRelu') return { leakyRelu: numberAttr(attr.leakyrelu_alpha) ?? 0.2 };
  const activation = ACTIVATIONS[name];
  if (!activation) throw new UnsupportedModelError(`fused ${name}`, where);
  return activation;
}
