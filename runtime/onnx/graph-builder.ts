import * as os from 'node:os';
import { onnx } from 'onnx-proto';

/**
 * A small writer of ONNX graphs: named initializers, nodes and one input and output, serialised with the
 * protobuf classes of `onnx-proto` (generated from onnx.proto; no bytes are encoded by hand here).
 *
 * Tensors are stored as raw little-endian bytes, which is what ONNX specifies: Float32Array's own bytes on the
 * little-endian CPUs orchard runs on (x86-64, arm64); a big-endian host is refused rather than writing garbage.
 */

/** The operator set every graph declares: Clip takes min/max as inputs, Pad its pads as an input (opset ≥ 11). */
export const OPSET = 13;
/** ONNX IR version of onnx 1.10 (what onnx-proto 8 was generated from), read by every ONNX Runtime since 1.10. */
const IR_VERSION = 8;

const { AttributeType } = onnx.AttributeProto;
const { DataType } = onnx.TensorProto;

export type AttributeValue = number | readonly number[] | string;
/** Integers and integer lists are written as INT/INTS; a value with a fraction (or `float()`-tagged) as FLOAT. */
export type Attributes = Readonly<Record<string, AttributeValue | FloatAttribute>>;

export interface FloatAttribute {
  readonly float: number;
}
export const float = (value: number): FloatAttribute => ({ float: value });

export interface GraphIo {
  readonly name: string;
  /** Dimensions; a string is a symbolic (dynamic) dimension such as the batch. */
  readonly dims: readonly (number | string)[];
  /** @default 'float32' */
  readonly type?: 'float32' | 'float64' | 'uint8' | 'int64';
}

/** ONNX's code for the element type float32, as Cast's `to` attribute takes it. */
export const FLOAT32 = DataType.FLOAT;

export class OnnxGraphBuilder {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly initializers = new Map<string, onnx.ITensorProto>();
  /** Float initializers keep their array until `build`, so that batch-norm folding can still change it. */
  private readonly floatData = new Map<string, Float32Array>();
  private readonly used = new Set<string>();

  constructor() {
    if (os.endianness() !== 'LE') throw new Error('ONNX graphs can only be written on a little-endian CPU');
  }

  /** Keeps names (the graph's input and output) out of `unique`'s reach, so no node can take them. */
  reserve(...names: string[]): void {
    for (const name of names) this.used.add(name);
  }

  /** A name not used yet in this graph, derived from `base` (source layer or node names stay readable). */
  unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./:-]+/g, '_') || 'v';
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  /** A float32 initializer; `values` may be changed by the caller until `build` (batch-norm folding does). */
  floats(base: string, dims: readonly number[], values: Float32Array): string {
    checkLength(base, dims, values.length);
    const name = this.unique(base);
    this.initializers.set(name, { name, dims: [...dims], dataType: DataType.FLOAT });
    this.floatData.set(name, values);
    return name;
  }

  /** An int64 initializer (shapes, pads, axes). */
  int64s(base: string, values: readonly number[]): string {
    const name = this.unique(base);
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    this.initializers.set(name, { name, dims: [values.length], dataType: DataType.INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  /** A float32 scalar initializer (Clip bounds). */
  scalar(base: string, value: number): string {
    const name = this.unique(base);
    this.initializers.set(name, { name, dims: [], dataType: DataType.FLOAT, rawData: new Uint8Array(Float32Array.of(value).buffer) });
    return name;
  }

  /**
   * Adds a node with one output and returns the output's name: a new name derived from `base`, or exactly
   * `output` (a reserved name: the graph's output).
   */
  node(opType: string, inputs: readonly string[], attributes: Attributes = {}, base: string = opType, output = this.unique(base)): string {
    this.nodes.push({
      opType,
      name: output,
      input: [...inputs],
      output: [output],
      attribute: Object.entries(attributes).map(([name, value]) => attribute(name, value)),
    });
    return output;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  /** Serialises the model: one input and output, opset 13, and string metadata (identity of the source). */
  build(input: GraphIo, output: GraphIo, metadata: Readonly<Record<string, string>>, graphName = 'orchard'): Uint8Array {
    return this.buildWithInputs([input], output, graphName, metadata);
  }

  /** The same with several inputs. */
  buildWithInputs(inputs: readonly GraphIo[], output: GraphIo, graphName: string, metadata: Readonly<Record<string, string>> = {}): Uint8Array {
    return this.buildWithOutputs(inputs, [output], graphName, metadata);
  }

  /** The same with several inputs and outputs. */
  buildWithOutputs(inputs: readonly GraphIo[], outputs: readonly GraphIo[], graphName: string, metadata: Readonly<Record<string, string>> = {}): Uint8Array {
    const model: onnx.IModelProto = {
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'orchard',
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: [...this.initializers.values()].map((tensor) => {
          const values = this.floatData.get(tensor.name!);
          return values ? { ...tensor, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) } : tensor;
        }),
        input: inputs.map(valueInfo),
        output: outputs.map(valueInfo),
      },
      metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    };
    return onnx.ModelProto.encode(model).finish();
  }
}

function checkLength(name: string, dims: readonly number[], length: number): void {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (expected !== length) throw new Error(`initializer ${name}: ${length} values for dims [${dims.join(', ')}]`);
}

function attribute(name: string, value: AttributeValue | FloatAttribute): onnx.IAttributeProto {
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: Buffer.from(value, 'utf8') };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: AttributeType.INT, i: value } : { name, type: AttributeType.FLOAT, f: value };
  }
  if ('float' in value) return { name, type: AttributeType.FLOAT, f: value.float };
  return { name, type: AttributeType.INTS, ints: [...value] };
}

function valueInfo(io: GraphIo): onnx.IValueInfoProto {
  return {
    name: io.name,
    type: {
      tensorType: {
        elemType: io.type === 'uint8' ? DataType.UINT8 : io.type === 'int64' ? DataType.INT64 : io.type === 'float64' ? DataType.DOUBLE : DataType.FLOAT,
        shape: { dim: io.dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}
