/** Projection of feature rows onto a fitted PCA model's components. */
import type { PcaModel } from './fit';

/**
 * n x nComponents row-major: (x - mean) . component for every row and component, accumulated in float64 and
 * stored as float32 (the precision the features themselves have).
 */
export function projectRows(rows: Float32Array, n: number, model: PcaModel): Float32Array {
  checkProjectionInput(rows, n, model);
  const p = model.nFeatures;
  const k = model.nComponents;
  const { mean, components } = model;
  const out = new Float32Array(n * k);
  // Centre each row once into float64 scratch, then take k dot products against contiguous component rows.
  const centred = new Float64Array(p);
  for (let r = 0; r < n; r++) {
    const base = r * p;
    for (let j = 0; j < p; j++) centred[j] = rows[base + j] - mean[j];
    for (let c = 0; c < k; c++) {
      const cb = c * p;
      let s0 = 0;
      let s1 = 0;
      let j = 0;
      // Two accumulators break the add dependency chain; the tail handles an odd feature count.
      for (; j + 1 < p; j += 2) {
        s0 += centred[j] * components[cb + j];
        s1 += centred[j + 1] * components[cb + j + 1];
      }
      if (j < p) s0 += centred[j] * components[cb + j];
      out[r * k + c] = s0 + s1;
    }
  }
  return out;
}

/** How a stage projects a block of rows: `projectRows`, or an engine's matrix product with the same result. */
export type Projector = (rows: Float32Array, n: number, model: PcaModel) => Promise<Float32Array>;

/** `projectRows` behind the asynchronous signature of the engines' projectors. */
export const projectInJs: Projector = async (rows, n, model) => projectRows(rows, n, model);

/** Every projector's check of its input: n rows of the model's feature count. */
export function checkProjectionInput(rows: Float32Array, n: number, model: PcaModel): void {
  const p = model.nFeatures;
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`Expected a non-negative integer row count but got ${n}`);
  if (rows.length !== n * p) {
    throw new RangeError(
      `Expected ${n} rows x ${p} features = ${n * p} values to project but got ${rows.length}` +
        ' (were the features made by a different model than the PCA was fitted on?)',
    );
  }
}
