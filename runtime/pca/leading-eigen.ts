/**
 * The leading eigenpairs of a symmetric matrix by block Lanczos with full reorthogonalisation and Rayleigh–Ritz
 * (Golub & Underwood, 1977; Golub & Van Loan, "Matrix Computations", 4th ed., sections 10.3 and 10.1.4), for a
 * PCA that keeps k components of many features: at 1,280 features and k about 26, a Krylov space of about 150
 * vectors gives the k leading eigenpairs to working precision, where a full reduction (blocked-
 * tridiagonal.ts) reads the whole matrix once per column.
 *
 * Nothing here is approximate by design: a pair is accepted only when its residual ‖A y − θ y‖ is at rounding
 * level (`RESIDUAL_TOLERANCE` of the largest eigenvalue), which bounds the eigenvalue's error by that residual
 * and the vector's by residual / gap. When the k pairs do not get there within the space allowed (a spectrum
 * whose k-th eigenvalue has a near twin, or a k too large for the method to pay), the solver says so and the
 * caller takes the full reduction instead.
 *
 * All products run on `products` (ONNX Runtime's float64 Gemm: ort-products.ts, or JavaScript for tests). Vectors
 * are stored as rows (a block of b vectors is b x n, row-major), so every product is one Gemm.
 */
import { mulberry32 } from '../random';
import { orthogonalise, symmetricEigen } from './symmetric-eigen';

/** opA(a) · opB(b), minus `from` when given (out = from − opA(a)·opB(b)): all row-major float64. */
export interface MatrixProducts {
  product(a: Float64Array, aRows: number, aCols: number, b: Float64Array, bRows: number, bCols: number, options?: ProductOptions): Promise<Float64Array>;
}

export interface ProductOptions {
  readonly transposeA?: boolean;
  readonly transposeB?: boolean;
  /** out = from − opA(a)·opB(b); `from` has the result's shape. */
  readonly subtractFrom?: Float64Array;
}

/**
 * Vectors per Lanczos block. Small blocks reach a given accuracy with a smaller space (a higher polynomial degree
 * per vector), and the dense Rayleigh–Ritz solve grows with its cube: at 1,280 features the 26 leading pairs of
 * a real run converge in a space of 144 vectors with blocks of 8, of 320 with blocks of 32 (0.13 against 0.33 s).
 * Every product still reads the whole matrix once per block, as a Gemm.
 */
export const BLOCK = 8;

/** A pair is converged when its residual is at most this much of the largest eigenvalue: rounding level at 1,280 (about 1e-15 is reached). */
export const RESIDUAL_TOLERANCE = 1e-12;

/**
 * Past the k components, a value joins the curve when its residual is at most this much of the largest: a Ritz
 * value is within its residual of an eigenvalue, so its share of the variance is exact to about 1e-8 of the
 * largest share, far below the curve's 6 printed digits.
 */
export const CURVE_TOLERANCE = 1e-8;

/** Leading values this close (relative to the largest) count as one repeated eigenvalue. */
const CLUSTER = 1e-10;

/** Past this many vectors, and 6k, the space is taken to be too large to pay (see `leadingEigen`). */
const MIN_SPACE = 192;

/** The Rayleigh–Ritz solve is tried from 4 blocks on, each time the space has grown by this factor since the last. */
const RR_GROWTH = 1.1;

export interface LeadingEigen {
  /** The leading eigenvalues, descending, each converged (at least k of them): the curve the method resolved. */
  readonly values: Float64Array;
  /** k x n row-major unit eigenvectors, row j for values[j]. */
  readonly vectors: Float64Array;
}

/**
 * How many vectors the Ritz values (descending; the leading ones converge first) call for: k; 'more' when they do
 * not tell yet; 'full' when this method should not decide (k too large for it, or too close a call).
 */
export type LeadingCount = number | 'more' | 'full';

export interface LeadingOptions {
  /** The largest Krylov space tried, in vectors (default: half the matrix, at most 640). */
  readonly maxDimension?: number;
  readonly vectorCount: (values: Float64Array) => LeadingCount;
}

/**
 * The k leading eigenpairs of the n x n symmetric `matrix` (row-major, left unchanged), k decided by
 * `vectorCount` from the converged leading eigenvalues; undefined when they do not converge within the space
 * allowed (the caller then uses a full reduction). Deterministic: the starting block comes from a fixed seed.
 */
export async function leadingEigen(matrix: Float64Array, n: number, products: MatrixProducts, options: LeadingOptions): Promise<LeadingEigen | undefined> {
  const b = BLOCK;
  const maxDimension = Math.min(options.maxDimension ?? Math.min(640, Math.floor(n / 2)), n - b);
  if (maxDimension < 2 * b) return undefined;
  const random = mulberry32(0x5eed);
  const basis = new Float64Array(maxDimension * n); // rows: the orthonormal Krylov basis
  const images = new Float64Array(maxDimension * n); // rows: A times each basis vector
  const projected = new Float64Array(maxDimension * maxDimension); // Bᵀ A B, filled a block column at a time
  const start = new Float64Array(b * n);
  for (let i = 0; i < start.length; i++) start[i] = random() - 0.5;
  if (orthonormalise(start, b, n, basis, 0, random) < b) return undefined;
  basis.set(start, 0);

  let nextCheck = 4 * b;
  let best = Infinity; // the smallest residual of the k pairs' largest so far, and the space it was seen at
  let bestAt = 0;
  for (let d = b; d <= maxDimension; d += b) {
    const block = basis.subarray((d - b) * n, d * n);
    // A is symmetric: the rows of (A Qᵀ)ᵀ are Q A.
    const image = await products.product(block, b, n, matrix, n, n);
    images.set(image, (d - b) * n);
    // The new block column of Bᵀ A B, read before the image is orthogonalised: exact, not the Lanczos recurrence's.
    const column = await products.product(basis.subarray(0, d * n), d, n, image, b, n, { transposeB: true }); // d x b
    for (let r = 0; r < d; r++) {
      for (let c = 0; c < b; c++) {
        projected[r * maxDimension + d - b + c] = column[r * b + c];
        projected[(d - b + c) * maxDimension + r] = column[r * b + c];
      }
    }

    // The Ritz pairs cost a dense eigen-solve of the d x d projection: tried as the space grows by RR_GROWTH.
    if (d >= nextCheck || d + b > maxDimension) {
      nextCheck = Math.ceil(d * RR_GROWTH);
      const found = await rayleighRitz(projected, maxDimension, d, basis, images, n, products, options);
      if (found === 'full') return undefined;
      if ('vectors' in found) return found;
      // A space grown by half without that residual halving has stalled (the pair's rounding level, or a spectrum
      // too flat to resolve it), and a small k that needs a space many times its size is in a spectrum too flat
      // for this method to pay: the full path decides now rather than at maxDimension.
      if (found.residual < best / 2) {
        best = found.residual;
        bestAt = d;
      } else if (bestAt > 0 && d >= 1.5 * bestAt) {
        return undefined;
      }
      if (found.k !== undefined && d > Math.max(MIN_SPACE, 6 * found.k)) return undefined;
    }
    if (d + b > maxDimension) return undefined;

    // The next block: the image against the whole basis, twice (one pass loses orthogonality to rounding).
    const scales = Float64Array.from({ length: b }, (_, r) => norm(image.subarray(r * n, r * n + n)));
    let next = await products.product(column, d, b, basis.subarray(0, d * n), d, n, { transposeA: true, subtractFrom: image });
    const again = await products.product(basis.subarray(0, d * n), d, n, next, b, n, { transposeB: true });
    next = await products.product(again, d, b, basis.subarray(0, d * n), d, n, { transposeA: true, subtractFrom: next });
    if (orthonormalise(next, b, n, basis.subarray(0, d * n), d, random, scales) < b) return undefined;
    basis.set(next, d * n);
  }
  return undefined;
}

/** The values of the curve sought past k: about what a report draws (runtime/report/data.ts `curveLength`). */
function curveLength(k: number): number {
  return Math.max(2 * k, k + 10, 20);
}

/** Where the Ritz pairs are, while not all k converged: k if decided, and the largest residual / θ₁ of the k pairs. */
interface Pending {
  readonly k?: number;
  readonly residual: number;
}

/**
 * The Ritz pairs of the space so far, once k is decided and its pairs are converged: the k vectors, and the
 * converged leading values of the curve (up to 2k, and k + 10 or 20); until then how far they are, and 'full' if
 * the caller said so.
 */
async function rayleighRitz(
  projected: Float64Array,
  stride: number,
  d: number,
  basis: Float64Array,
  images: Float64Array,
  n: number,
  products: MatrixProducts,
  options: LeadingOptions,
): Promise<LeadingEigen | 'full' | Pending> {
  const t = new Float64Array(d * d);
  for (let r = 0; r < d; r++) t.set(projected.subarray(r * stride, r * stride + d), r * d);
  // Ritz values first; how many vectors to check follows from them (with a margin for the curve).
  let wanted = 0;
  let decided: LeadingCount = 'more';
  const { values, vectors } = symmetricEigen(t, d, (ritz) => {
    decided = options.vectorCount(ritz);
    // Up to the curve's length, within a quarter of d (symmetricEigen's path for few vectors), and k at least.
    wanted = typeof decided === 'number' && decided <= d >> 1 ? Math.max(decided, Math.min(d >> 2, curveLength(decided))) : 0;
    return wanted;
  });
  const k = decided as LeadingCount;
  if (typeof k !== 'number') return k === 'full' ? 'full' : { residual: Infinity };
  if (k < 1 || wanted === 0) return { k, residual: Infinity };
  const scale = Math.abs(values[0]) || 1;
  const { y, converged: proven, residual } = await converged(vectors, values, 0, wanted, k, d, basis, images, n, products, scale);
  if (proven < k) return { k, residual };
  let curve = proven;
  // The curve past the k-th value: its Ritz vectors, when the cheap path above stopped short, at the cost of one
  // full dense solve (the same values, every vector); what converges joins the curve.
  const longer = Math.min(curveLength(k), d >> 1);
  if (curve === wanted && wanted < longer && values[curve] > CLUSTER * scale) {
    const all = symmetricEigen(t, d, () => longer).vectors;
    curve += (await converged(all.subarray(wanted * d, longer * d), values, wanted, longer, k, d, basis, images, n, products, scale)).converged;
  }
  // A Krylov space holds at most b directions of an eigenvalue repeated (to rounding) more than b times, and its
  // Ritz pairs there converge all the same: b equal leading values may hide more of them. The full path decides.
  for (let j = 0, run = 1; j + 1 < curve; j++) {
    run = values[j] - values[j + 1] <= CLUSTER * scale ? run + 1 : 1;
    if (run >= BLOCK) return 'full';
  }
  // k was decided on values that are now proven; the curve is the converged prefix (the k values at least).
  return { values: values.slice(0, curve), vectors: y.slice(0, k * n) };
}

/**
 * How many of the Ritz pairs from..to (their coordinates `coordinates`, (to - from) x d) are converged, in order:
 * the first k to RESIDUAL_TOLERANCE, the rest to CURVE_TOLERANCE; values at rounding level past k belong to the
 * null space (fewer samples than features) and end the count. Also the Ritz vectors, Y = S B, and the largest
 * residual (over `scale`) among the first k pairs, the solver's progress.
 */
async function converged(
  coordinates: Float64Array,
  values: Float64Array,
  from: number,
  to: number,
  k: number,
  d: number,
  basis: Float64Array,
  images: Float64Array,
  n: number,
  products: MatrixProducts,
  scale: number,
): Promise<{ y: Float64Array; converged: number; residual: number }> {
  const count = to - from;
  // A Y = S (A B): the images were kept, so no product with A itself.
  const y = await products.product(coordinates, count, d, basis.subarray(0, d * n), d, n);
  const ay = await products.product(coordinates, count, d, images.subarray(0, d * n), d, n);
  let done = 0;
  let residual = 0;
  let pending = false;
  for (let q = 0; q < count; q++) {
    const j = from + q;
    // Past k only the converged prefix counts; up to k every pair's residual is measured, for the progress.
    if (pending && j >= k) break;
    if (j >= k && !(values[j] > CLUSTER * scale)) break;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const r = ay[q * n + i] - values[j] * y[q * n + i];
      sum += r * r;
    }
    const relative = Math.sqrt(sum) / scale;
    if (j < k) residual = Math.max(residual, relative);
    if (!(relative <= (j < k ? RESIDUAL_TOLERANCE : CURVE_TOLERANCE))) pending = true;
    if (!pending) done += 1;
  }
  return { y, converged: done, residual };
}

/**
 * Orthonormalises the `count` rows of `block` (count x n) in place (modified Gram–Schmidt, twice); they are
 * already orthogonal to the basis (its first `against` rows), which the Gemms saw to. A row that vanishes (the
 * Krylov space became invariant, as with fewer samples than features) is replaced by a random one, made
 * orthogonal to the basis too; `scales` are the rows' norms before the Gemms, what "vanishes" is measured
 * against. Returns the rows made orthonormal (count, unless the space is exhausted).
 */
function orthonormalise(block: Float64Array, count: number, n: number, basis: Float64Array, against: number, random: () => number, scales?: Float64Array): number {
  for (let r = 0; r < count; r++) {
    const row = block.subarray(r * n, r * n + n);
    let ok = false;
    for (let attempt = 0; attempt < 3 && !ok; attempt++) {
      // What is left of a row is measured against the row before any orthogonalisation (its Krylov image).
      const before = attempt === 0 && scales ? scales[r] : norm(row);
      for (let pass = 0; pass < 2; pass++) {
        if (attempt > 0) orthogonalise(row, basis, n, 0, against);
        orthogonalise(row, block, n, 0, r);
      }
      const after = norm(row);
      // A remainder this small is mostly rounding, orthogonal to the basis only roughly: a random direction serves the
      // method as well (any orthonormal extension does) and keeps the basis orthonormal to working precision.
      if (after > 1e-6 * before && after > 0) {
        for (let i = 0; i < n; i++) row[i] /= after;
        ok = true;
      } else {
        for (let i = 0; i < n; i++) row[i] = random() - 0.5;
      }
    }
    if (!ok) return r;
  }
  return count;
}

function norm(v: Float64Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

/** The products in JavaScript: the reference the ONNX Runtime ones are tested against, and the solver's tests. */
export const jsMatrixProducts: MatrixProducts = {
  async product(a, aRows, aCols, b, bRows, bCols, options = {}) {
    const [m, inner] = options.transposeA ? [aCols, aRows] : [aRows, aCols];
    const [innerB, cols] = options.transposeB ? [bCols, bRows] : [bRows, bCols];
    if (inner !== innerB) throw new RangeError(`Cannot multiply ${m} x ${inner} by ${innerB} x ${cols}`);
    const out = options.subtractFrom ? Float64Array.from(options.subtractFrom) : new Float64Array(m * cols);
    const sign = options.subtractFrom ? -1 : 1;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < cols; j++) {
        let s = 0;
        for (let p = 0; p < inner; p++) {
          const x = options.transposeA ? a[p * aCols + i] : a[i * aCols + p];
          const y = options.transposeB ? b[j * bCols + p] : b[p * bCols + j];
          s += x * y;
        }
        out[i * cols + j] += sign * s;
      }
    }
    return out;
  },
};
