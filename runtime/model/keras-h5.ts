import { createHash } from 'node:crypto';
import type { io } from '@tensorflow/tfjs';
import { Dataset, File, Group } from 'jsfive';
import { OrchardError, describeError } from '../errors';
import { KERAS_LAST_LAYER, KERAS_POOLING_LAYER } from './presets';

type ModelJSON = io.ModelJSON;

/** A Keras weights file as a float32 tfjs layers model (artifacts.ts adds where it was read from). */
export interface KerasModel {
  readonly modelJson: ModelJSON;
  readonly weightData: ArrayBuffer;
  /** SHA-256 of the .h5 file itself. */
  readonly weightsSha256: string;
}


/**
 * A Keras layers-model topology cut at `last`, with global average pooling after it (what Keras's
 * `MobileNetV2(include_top=False, pooling='avg')` builds): the nsfwjs model.json has Keras's exact layer names, so
 * its body up to `out_relu` is Keras Applications' MobileNetV2, and its weight manifest lists every weight the body
 * needs with its shape. Returns the topology and the expected weights, in the topology's layer order.
 */
export function cutTopology(reference: ModelJSON, last = KERAS_LAST_LAYER): { topology: unknown; expected: io.WeightsManifestEntry[] } {
  const topology = JSON.parse(JSON.stringify(reference.modelTopology)) as { model_config: { config: { layers: { name: string; class_name: string }[]; output_layers: unknown } } };
  const config = topology.model_config.config;
  const end = config.layers.findIndex((layer) => layer.name === last);
  if (end < 0) throw new OrchardError(`The reference topology has no layer '${last}'`, 'ERR_MODEL_LOAD');
  const kept = config.layers.slice(0, end + 1);
  const pooling = {
    class_name: 'GlobalAveragePooling2D',
    name: KERAS_POOLING_LAYER,
    config: { name: KERAS_POOLING_LAYER, trainable: false, data_format: 'channels_last' },
    inbound_nodes: [[[last, 0, 0, {}]]],
  };
  config.layers = [...kept, pooling as (typeof kept)[number]];
  config.output_layers = [[KERAS_POOLING_LAYER, 0, 0]];
  const specs = (reference.weightsManifest ?? []).flatMap((group) => group.weights);
  const expected = kept.flatMap((layer) => specs.filter((spec) => spec.name.startsWith(`${layer.name}/`)));
  return { topology, expected };
}

/**
 * Reads a weights file in Keras's HDF5 layout (root attribute `layer_names`; per layer a group with attribute
 * `weight_names` and a float dataset per name) for the network of `reference`, checking that every weight the
 * network needs is there with its exact shape. A file that is not a whole HDF5 file, or not this network, is an
 * OrchardError naming the first thing that differs. The result is a float32 layers model, as tfjs would load it.
 */
export function kerasH5ToModelFiles(h5: Buffer, reference: ModelJSON, loadedFrom: string): KerasModel {
  const fail = (reason: string): never => {
    throw new OrchardError(
      `${loadedFrom} is not Keras's MobileNetV2 weights file: ${reason}. Fix: give --model the ` +
        'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 file of Keras Applications (or a file saved by ' +
        "Keras's model.save_weights for the same network)",
      'ERR_MODEL_LOAD',
    );
  };
  const short = truncation(h5);
  if (short) fail(short);
  let file: File;
  try {
    file = new File(h5.buffer.slice(h5.byteOffset, h5.byteOffset + h5.byteLength) as ArrayBuffer, loadedFrom);
  } catch (error) {
    return fail(`it cannot be read as HDF5 (${describeError(error)}; a truncated download?)`);
  }
  const read = <T>(what: string, get: () => T): T => {
    try {
      return get();
    } catch (error) {
      return fail(`${what} cannot be read (${describeError(error)}; the file is truncated or damaged)`);
    }
  };
  const layerNames = read('its root attribute layer_names', () => strings(file.attrs.layer_names));
  if (layerNames.length === 0) fail('it has no root attribute layer_names (Keras writes one in every weights file)');
  const { topology, expected } = cutTopology(reference);
  const values: Float32Array[] = [];
  const weights: io.WeightsManifestEntry[] = [];
  const groups = new Map<string, { group: Group; names: string[] }>();
  for (const spec of expected) {
    const layer = spec.name.slice(0, spec.name.lastIndexOf('/'));
    const short = spec.name.slice(layer.length + 1);
    if (!groups.has(layer)) {
      if (!layerNames.includes(layer)) fail(`layer '${layer}' is missing (layer_names has ${layerNames.length} layers)`);
      const group = read(`layer '${layer}'`, () => file.get(layer));
      if (!(group instanceof Group)) return fail(`layer '${layer}' is listed in layer_names but has no group`);
      groups.set(layer, { group, names: read(`layer '${layer}'s weight_names`, () => strings(group.attrs.weight_names)) });
    }
    const { group, names } = groups.get(layer)!;
    // Keras names a weight `<layer>/<name>:0` (older files) or `<name>:0`: matched on the last segment, `:0` cut.
    const weightName = names.find((name) => name.replace(/:\d+$/, '').split('/').pop() === short);
    if (weightName === undefined) fail(`weight '${layer}/${short}' is missing (the layer has ${names.join(', ') || 'no weights'})`);
    const dataset = read(`weight '${weightName}'`, () => group.get(weightName!));
    if (!(dataset instanceof Dataset)) return fail(`weight '${weightName}' is listed in weight_names but has no dataset`);
    const shape = read(`weight '${weightName}'`, () => dataset.shape);
    if (shape.length !== spec.shape.length || shape.some((size, i) => size !== spec.shape[i])) {
      fail(`weight '${weightName}' has shape [${shape.join(', ')}], expected [${spec.shape.join(', ')}]`);
    }
    const data = read(`weight '${weightName}'`, () => Float32Array.from(dataset.value));
    const count = spec.shape.reduce((a, b) => a * b, 1);
    if (data.length !== count) fail(`weight '${weightName}' holds ${data.length} values, expected ${count}`);
    values.push(data);
    weights.push({ name: spec.name, shape: spec.shape, dtype: 'float32' });
  }
  const bytes = Buffer.concat(values.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
  const modelJson: ModelJSON = { modelTopology: topology as ModelJSON['modelTopology'], weightsManifest: [{ paths: ['weights.bin'], weights }], format: 'layers-model' };
  return {
    modelJson,
    weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    // The file's own hash: what models/ pins and what the manifest shows (`sha256sum` of the download gives it).
    weightsSha256: createHash('sha256').update(h5).digest('hex'),
  };
}

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Why the file is shorter than HDF5 says it is, if it is: the superblock records the end-of-file address, so a cut
 * download is named as such before any object is read (HDF5 keeps much of its metadata at the end of the file).
 */
function truncation(h5: Buffer): string | undefined {
  if (h5.length < 8 || !h5.subarray(0, 8).equals(HDF5_SIGNATURE)) return 'it does not start with the HDF5 signature';
  const version = h5[8]!;
  // Superblock versions 0 and 1: size of offsets at byte 13, base address at 24 (28 for v1); versions 2 and 3: at 9 and 12.
  const offsetSize = version <= 1 ? h5[13]! : h5[9]!;
  const base = version === 0 ? 24 : version === 1 ? 28 : 12;
  const endAt = base + 2 * offsetSize;
  if (offsetSize !== 8 || h5.length < endAt + 8) return h5.length < endAt + 8 ? `it is truncated: ${h5.length} bytes, not even a whole superblock` : undefined;
  const expected = Number(h5.readBigUInt64LE(base) + h5.readBigUInt64LE(endAt));
  return h5.length < expected ? `it is truncated: ${h5.length} bytes, but its superblock says ${expected}` : undefined;
}

/** An HDF5 string-array attribute (fixed-length bytes in Keras's files) as strings. */
function strings(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : Array.from(value as ArrayLike<unknown>);
  return list.map((item) => (item instanceof Uint8Array ? Buffer.from(item).toString('utf8') : String(item)).replace(/\0+$/, ''));
}
