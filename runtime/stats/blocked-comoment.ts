import type { AsyncCoMomentKernel } from './moments';

/**
 * Rows per matrix product. Engines sum in float32, so each block's sums are kept short (128 terms: about 1e-7
 * relative error, against 4e-6 for one 4096-row product) and the blocks are added up in float64. Smaller
 * blocks buy little more accuracy (the centred values are rounded to float32 anyway) and cost speed.
 */
export const BLOCK_ROWS = 128;

/** D^T D of one block of centred rows (b × dim, row-major, in the kernel's precision), as a dim × dim matrix. */
export type BlockProduct<T extends Float32Array | Float64Array> = (centred: T, b: number, dim: number) => ArrayLike<number> | Promise<ArrayLike<number>>;

/**
 * The co-moment pass of the moments by an engine's matrix product: the rows are centred in float64 (then held
 * in the product's precision, float32 by default), multiplied block by block, and the blocks summed in float64.
 * The result is symmetrised, as a product computed in blocks need not be to the last bit.
 */
export function blockedCoMoment(product: BlockProduct<Float32Array>, blockRows?: number): AsyncCoMomentKernel;
export function blockedCoMoment(product: BlockProduct<Float64Array>, blockRows: number, precision: Float64ArrayConstructor): AsyncCoMomentKernel;
export function blockedCoMoment(
  product: BlockProduct<Float32Array> | BlockProduct<Float64Array>,
  blockRows = BLOCK_ROWS,
  precision: Float32ArrayConstructor | Float64ArrayConstructor = Float32Array,
): AsyncCoMomentKernel {
  if (!Number.isInteger(blockRows) || blockRows < 1) throw new RangeError(`Expected a positive block size but got ${blockRows}`);
  const multiply = product as BlockProduct<Float32Array | Float64Array>;
  return async (rows, n, dim, mean) => {
    const out = new Float64Array(dim * dim);
    const centred = new precision(Math.min(blockRows, n) * dim);
    for (let r0 = 0; r0 < n; r0 += blockRows) {
      const b = Math.min(blockRows, n - r0);
      for (let r = 0; r < b; r++) {
        const src = (r0 + r) * dim;
        const dst = r * dim;
        for (let j = 0; j < dim; j++) centred[dst + j] = rows[src + j] - mean[j];
      }
      const block = await multiply(centred.subarray(0, b * dim), b, dim);
      for (let i = 0; i < out.length; i++) out[i] += block[i];
    }
    return symmetrise(out, dim);
  };
}

/** The mean of each pair of mirrored entries, in place: a product computed in blocks need not be symmetric to the last bit. */
export function symmetrise(out: Float64Array, dim: number): Float64Array {
  for (let i = 0; i < dim; i++) {
    for (let j = i + 1; j < dim; j++) {
      const v = (out[i * dim + j] + out[j * dim + i]) / 2;
      out[i * dim + j] = v;
      out[j * dim + i] = v;
    }
  }
  return out;
}
