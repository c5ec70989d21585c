import type { Tf } from '../backend';
import type { ModelFiles } from '../artifacts';

/** One named weight of a tfjs model, decoded (and de-quantised) exactly as tfjs decodes it. */
export interface Weight {
  readonly shape: readonly number[];
  /** float32 weights; int32 constants of graph models (axes, paddings, shapes) as well. */
  readonly values: Float32Array | Int32Array;
}

/**
 * Decodes every weight of a model through tfjs's own `io.decodeWeights`, so that quantised weights (uint8,
 * uint16, float16) become the very floats the tfjs engine computes with. The tensors live only long enough
 * to be copied out.
 */
export function decodeWeights(tf: Tf, files: ModelFiles): Map<string, Weight> {
  const specs = (files.modelJson.weightsManifest ?? []).flatMap((group) => group.weights);
  const tensors = tf.io.decodeWeights(files.weightData, specs);
  const weights = new Map<string, Weight>();
  try {
    for (const [name, tensor] of Object.entries(tensors)) {
      const data = tensor.dataSync();
      if (!(data instanceof Float32Array) && !(data instanceof Int32Array)) continue; // strings, booleans: no graph op here reads them
      weights.set(name, { shape: tensor.shape, values: data.slice() });
    }
  } finally {
    for (const tensor of Object.values(tensors)) tensor.dispose();
  }
  return weights;
}

/** The weight's values as float32 (int32 constants converted). */
export function floats(weight: Weight): Float32Array {
  return weight.values instanceof Float32Array ? weight.values : Float32Array.from(weight.values);
}

/** The weight's values as plain numbers (small integer constants: axes, paddings, shapes). */
export function integers(weight: Weight): number[] {
  return Array.from(weight.values, (v) => Math.round(v));
}
