import { Network, UnsupportedModelError, type Activation, type Padding, type Pads, type Value } from './network';
import { floats, type Weight } from './weights';

/**
 * Keras layers model (tfjs `layers-model` model.json: snake_case Keras config) → ONNX, up to the feature layer.
 * Every layer class the feature path crosses must be one of these; any other is an UnsupportedModelError naming
 * the class and the layer, never a graph that computes something else.
 */
export const SUPPORTED_LAYERS = [
  'InputLayer',
  'ZeroPadding2D',
  'Conv2D',
  'DepthwiseConv2D',
  'BatchNormalization',
  'ReLU',
  'LeakyReLU',
  'Activation',
  'Add',
  'Multiply',
  'Maximum',
  'Minimum',
  'Concatenate',
  'AveragePooling2D',
  'MaxPooling2D',
  'GlobalAveragePooling2D',
  'Flatten',
  'Dropout',
  'SpatialDropout2D',
  'Dense',
] as const;

interface LayerJson {
  readonly name: string;
  readonly class_name: string;
  readonly config: Record<string, unknown>;
  readonly inbound_nodes?: unknown[];
}

export interface LayersSource {
  readonly topology: unknown;
  readonly weights: ReadonlyMap<string, Weight>;
  readonly inputSize: number;
  /** The layer whose output is the feature vector; the model's output when absent. */
  readonly featureLayer?: string;
}

export function compileLayersModel(source: LayersSource, network: Network): Value {
  const { layers, outputs } = readTopology(source.topology);
  const byName = new Map(layers.map((layer) => [layer.name, layer]));
  const target = source.featureLayer ?? outputs[0];
  if (!target || !byName.has(target)) {
    const last = layers.slice(-8).map((layer) => layer.name).join(', ');
    throw new UnsupportedModelError('feature layer', `the model has no layer named '${target}' (last layers: ${last})`);
  }
  const inputsOf = new Map(layers.map((layer, index) => [layer.name, inboundOf(layer, index > 0 ? layers[index - 1] : undefined)]));
  const readers = new Map<string, number>();
  for (const names of inputsOf.values()) for (const name of names) readers.set(name, (readers.get(name) ?? 0) + 1);

  // Only the layers the feature layer depends on are translated (a classifier head after it is not).
  const needed = new Set<string>();
  const stack = [target];
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (needed.has(name)) continue;
    needed.add(name);
    for (const input of inputsOf.get(name) ?? []) stack.push(input);
  }

  const values = new Map<string, Value>();
  const weight = (layer: LayerJson, name: string, required = true) => findWeight(source.weights, layer.name, name, required);
  for (const layer of layers) {
    if (!needed.has(layer.name)) continue;
    const inputNames = inputsOf.get(layer.name) ?? [];
    const inputs = inputNames.map((name) => {
      const value = values.get(name);
      if (!value) throw new UnsupportedModelError(layer.class_name, `layer '${layer.name}' reads '${name}', which comes later in the model`);
      return value;
    });
    // A batch norm folds into the convolution before it only when nothing else reads that convolution's output.
    const readersOfInput = inputNames.length === 1 ? (readers.get(inputNames[0]!) ?? 0) : 0;
    values.set(layer.name, translate(layer, inputs, network, weight, readersOfInput, source.inputSize));
  }
  return values.get(target)!;
}

type WeightOf = (layer: LayerJson, name: string, required?: boolean) => Float32Array | undefined;

function translate(layer: LayerJson, inputs: Value[], network: Network, weight: WeightOf, readersOfInput: number, inputSize: number): Value {
  const c = layer.config;
  const where = `layer '${layer.name}'`;
  const x = inputs[0];
  const one = (): Value => {
    if (inputs.length !== 1 || !x) throw new UnsupportedModelError(layer.class_name, `${where} has ${inputs.length} inputs`);
    return x;
  };
  channelsLast(layer);
  switch (layer.class_name) {
    case 'InputLayer': {
      const shape = (c.batch_input_shape ?? c.batch_shape) as (number | null)[] | undefined;
      const [, h, w, channels] = shape ?? [null, null, null, 3];
      if ((h != null && h !== inputSize) || (w != null && w !== inputSize)) {
        throw new UnsupportedModelError('InputLayer', `${where} takes ${h}×${w} images, but the model is run at ${inputSize}×${inputSize}`);
      }
      if (channels != null && channels !== 3) throw new UnsupportedModelError('InputLayer', `${where} takes ${channels} channels; images have 3`);
      return network.input();
    }
    case 'ZeroPadding2D':
      return network.zeroPad(one(), zeroPadding(c.padding, where), layer.name);
    case 'Conv2D':
    case 'DepthwiseConv2D': {
      const depthwise = layer.class_name === 'DepthwiseConv2D';
      if (!depthwise && typeof c.groups === 'number' && c.groups !== 1) throw new UnsupportedModelError('Conv2D', `${where}: grouped convolution (groups ${c.groups})`);
      const kernelName = depthwise ? 'depthwise_kernel' : 'kernel';
      const kernel = weight(layer, kernelName)!;
      const input = one();
      const [kh, kw] = pair(c.kernel_size, `${where} kernel_size`);
      const inChannels = input.kind === 'image' ? input.channels : 0;
      const last = depthwise ? numberOr(c.depth_multiplier, 1) : numberOr(c.filters, 0);
      return network.conv(input, {
        source: layer.name,
        kernel,
        kernelShape: [kh, kw, inChannels, last],
        depthwise,
        strides: pair(c.strides ?? 1, `${where} strides`),
        dilations: pair(c.dilation_rate ?? 1, `${where} dilation_rate`),
        padding: padding(c.padding, where),
        bias: c.use_bias === false ? undefined : weight(layer, 'bias'),
        activation: activation(c.activation, where),
      });
    }
    case 'BatchNormalization': {
      const axis = Array.isArray(c.axis) ? c.axis : [c.axis ?? -1];
      const input = one();
      const last = input.kind === 'image' ? 3 : 1;
      if (axis.length !== 1 || (axis[0] !== -1 && axis[0] !== last)) {
        throw new UnsupportedModelError('BatchNormalization', `${where} normalises axis ${JSON.stringify(c.axis)}, not the channels`);
      }
      return network.batchNorm(
        input,
        {
          source: layer.name,
          gamma: c.scale === false ? undefined : weight(layer, 'gamma'),
          beta: c.center === false ? undefined : weight(layer, 'beta'),
          mean: weight(layer, 'moving_mean')!,
          variance: weight(layer, 'moving_variance')!,
          epsilon: numberOr(c.epsilon, 1e-3),
        },
        readersOfInput,
      );
    }
    case 'ReLU': {
      const slope = numberOr(c.negative_slope, 0);
      const threshold = numberOr(c.threshold, 0);
      if (threshold !== 0) throw new UnsupportedModelError('ReLU', `${where}: threshold ${threshold}`);
      const max = c.max_value == null ? undefined : numberOr(c.max_value, 0);
      if (slope !== 0) {
        if (max !== undefined) throw new UnsupportedModelError('ReLU', `${where}: negative_slope with max_value`);
        return network.activation(one(), { leakyRelu: slope }, layer.name);
      }
      return max === undefined ? network.activation(one(), 'relu', layer.name) : network.clip(one(), max, layer.name);
    }
    case 'LeakyReLU':
      return network.activation(one(), { leakyRelu: numberOr(c.alpha ?? c.negative_slope, 0.3) }, layer.name);
    case 'Activation':
      return network.activation(one(), activation(c.activation, where), layer.name);
    case 'Add':
    case 'Multiply':
    case 'Maximum':
    case 'Minimum': {
      const op = ({ Add: 'Add', Multiply: 'Mul', Maximum: 'Max', Minimum: 'Min' } as const)[layer.class_name];
      if (inputs.length < 2) throw new UnsupportedModelError(layer.class_name, `${where} has ${inputs.length} input`);
      return inputs.slice(1).reduce((sum, value, i) => network.binary(op, sum, value, i === inputs.length - 2 ? layer.name : `${layer.name}/${i}`), inputs[0]!);
    }
    case 'Concatenate': {
      const axis = numberOr(c.axis, -1);
      const rank = x?.kind === 'image' ? 3 : 1;
      if (axis !== -1 && axis !== rank) throw new UnsupportedModelError('Concatenate', `${where} joins along axis ${axis}, not the channels`);
      return network.concat(inputs, layer.name);
    }
    case 'AveragePooling2D':
    case 'MaxPooling2D': {
      const size = pair(c.pool_size ?? 2, `${where} pool_size`);
      const strides = c.strides == null ? size : pair(c.strides, `${where} strides`);
      return network.pool(layer.class_name === 'AveragePooling2D' ? 'avg' : 'max', one(), size, strides, padding(c.padding ?? 'valid', where), layer.name);
    }
    case 'GlobalAveragePooling2D':
      return network.globalAveragePool(one(), c.keepdims === true, layer.name);
    case 'Flatten':
      return network.flatten(one(), layer.name);
    case 'Dropout':
    case 'SpatialDropout2D':
      return one(); // inference: the identity
    case 'Dense': {
      const units = numberOr(c.units, 0);
      return network.dense(one(), weight(layer, 'kernel')!, units, c.use_bias === false ? undefined : weight(layer, 'bias'), activation(c.activation, where), layer.name);
    }
    default:
      throw new UnsupportedModelError(layer.class_name, `${where} (supported layers: ${SUPPORTED_LAYERS.join(', ')})`);
  }
}

/** The layer list and output names of a Functional/Model or Sequential topology, old and new Keras formats. */
function readTopology(topology: unknown): { layers: LayerJson[]; outputs: string[] } {
  const root = (isRecord(topology) && isRecord(topology.model_config) ? topology.model_config : topology) as Record<string, unknown>;
  const className = root?.class_name;
  const config = root?.config;
  if (className === 'Sequential') {
    const layers = (Array.isArray(config) ? config : isRecord(config) ? config.layers : undefined) as LayerJson[] | undefined;
    if (!Array.isArray(layers) || layers.length === 0) throw new UnsupportedModelError('Sequential', 'a Sequential model without layers');
    // A Sequential model's first layer may carry the input shape itself: give it an explicit input layer.
    const first = layers[0]!;
    const withInput: LayerJson[] =
      first.class_name === 'InputLayer'
        ? layers
        : [{ name: '__input__', class_name: 'InputLayer', config: { batch_input_shape: first.config.batch_input_shape ?? first.config.batch_shape } }, ...layers];
    // Sequential layers carry their name in their config only.
    const named = withInput.map((layer) => ({ ...layer, name: layer.name ?? String(layer.config.name), inbound_nodes: undefined }));
    return { layers: named, outputs: [named[named.length - 1]!.name] };
  }
  if ((className === 'Model' || className === 'Functional') && isRecord(config) && Array.isArray(config.layers)) {
    const outputs = (config.output_layers as unknown[] | undefined) ?? [];
    return { layers: config.layers as LayerJson[], outputs: outputs.map((entry) => (Array.isArray(entry) ? String(entry[0]) : String(entry))) };
  }
  throw new UnsupportedModelError(String(className ?? 'model'), 'not a Keras Functional or Sequential model');
}

/**
 * Names of the layers feeding a layer: the legacy form `[[["name", node, tensor, {}], ...]]` or Keras 3's
 * `[{"args": [{"config": {"keras_history": ["name", node, tensor]}}]}]`; Sequential layers read the previous one.
 */
function inboundOf(layer: LayerJson, previous: LayerJson | undefined): string[] {
  const nodes = layer.inbound_nodes;
  if (nodes === undefined) return previous ? [previous.name] : [];
  if (nodes.length === 0) return [];
  if (nodes.length > 1) throw new UnsupportedModelError(layer.class_name, `layer '${layer.name}' is shared (called ${nodes.length} times)`);
  const node = nodes[0];
  if (Array.isArray(node)) return node.map((entry) => String((entry as unknown[])[0]));
  const names: string[] = [];
  const visit = (value: unknown) => {
    if (Array.isArray(value)) value.forEach(visit);
    else if (isRecord(value)) {
      const history = isRecord(value.config) ? value.config.keras_history : undefined;
      if (Array.isArray(history)) names.push(String(history[0]));
      else Object.values(value).forEach(visit);
    }
  };
  visit(isRecord(node) ? node.args : node);
  return names;
}

function findWeight(weights: ReadonlyMap<string, Weight>, layer: string, name: string, required: boolean): Float32Array | undefined {
  const exact = weights.get(`${layer}/${name}`);
  if (exact) return floats(exact);
  // Some exporters prefix the model's scope: `model/block_1_expand/kernel`.
  for (const [key, weight] of weights) if (key.endsWith(`/${layer}/${name}`)) return floats(weight);
  if (required) throw new UnsupportedModelError('weights', `no weight '${layer}/${name}' in the weights manifest`);
  return undefined;
}

function channelsLast(layer: LayerJson): void {
  const format = layer.config.data_format;
  if (format !== undefined && format !== null && format !== 'channels_last') {
    throw new UnsupportedModelError(layer.class_name, `layer '${layer.name}' uses data_format ${String(format)}`);
  }
}

function activation(value: unknown, where: string): Activation {
  const name = value ?? 'linear';
  if (name === 'linear' || name === 'relu' || name === 'relu6' || name === 'sigmoid' || name === 'tanh' || name === 'elu') return name;
  throw new UnsupportedModelError(`activation ${String(name)}`, `${where}`);
}

function padding(value: unknown, where: string): Padding {
  if (value === 'same' || value === 'valid') return value;
  throw new UnsupportedModelError(`padding ${String(value)}`, where);
}

function zeroPadding(value: unknown, where: string): Pads {
  if (typeof value === 'number') return [value, value, value, value];
  if (Array.isArray(value) && value.length === 2) {
    const [y, x] = value as unknown[];
    if (typeof y === 'number' && typeof x === 'number') return [y, x, y, x];
    if (Array.isArray(y) && Array.isArray(x)) return [Number(y[0]), Number(x[0]), Number(y[1]), Number(x[1])];
  }
  throw new UnsupportedModelError('ZeroPadding2D', `${where}: padding ${JSON.stringify(value)}`);
}

function pair(value: unknown, where: string): [number, number] {
  if (typeof value === 'number') return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number')) return [value[0], value[1]];
  throw new UnsupportedModelError('layer config', `${where}: ${JSON.stringify(value)}`);
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' ? value : fallback;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
