/**
 * Blocked Householder reduction of a symmetric matrix to tridiagonal form, LAPACK's dsytrd (uplo 'L', with
 * dlatrd for the panels; Dongarra, Sorensen & Hammarling, "Block reduction of matrices to condensed forms for
 * eigenvalue computations", J. Comput. Appl. Math. 27, 1989).
 *
 * The unblocked reduction (symmetric-eigen.ts) makes two passes over the trailing matrix per column: A u, then the
 * rank-2 update A -= u q^T + q u^T. Here the columns go in panels of PANEL: within a panel only A u is computed
 * against the trailing matrix as it was when the panel began (the panel's earlier reflectors enter through its
 * V and W, n x PANEL each), and the panel's updates are applied at once, A -= V W^T + W V^T — a rank-2·PANEL update
 * that runs as two matrix products on an engine's float64 Gemm (`TrailingUpdate`). Half the reduction's flops
 * leave JavaScript. Same algorithm, same reflectors up to rounding: the eigenvalues of the tridiagonal matrix
 * are those of the input to working precision.
 */
import { mirrorTriangle } from '../stats/mirror';

/** Columns per panel: LAPACK's block size for dsytrd on most machines. */
export const PANEL = 32;

/**
 * The two matrix products of the reduction, on an engine (ONNX Runtime's float64 Gemm: ort-tridiagonal.ts) or
 * in JavaScript (`jsTridiagonalEngine`). Matrices are row-major float64.
 */
export interface TridiagonalEngine {
  /**
   * y = a u - v (w^T u) - w (v^T u), with a the m x m symmetric trailing matrix as the panel found it, u a
   * reflector (zero up to and including the panel's current column, whose entries of y are not used) and v, w
   * the panel's m x b reflectors and updates so far (zero in the columns not reached yet).
   */
  panelProduct(a: Float64Array, m: number, u: Float64Array, v: Float64Array, w: Float64Array, b: number): Float64Array | Promise<Float64Array>;
  /**
   * After a panel of b columns: of the m x m symmetric `a`, the block from row and column b on, minus
   * v w^T + w v^T, with v and w (m - b) x b; written to `out`, (m - b) x (m - b), which does not overlap `a`.
   */
  trailingUpdate(a: Float64Array, m: number, b: number, v: Float64Array, w: Float64Array, out: Float64Array): void | Promise<void>;
}

/** Both products in JavaScript: the reference the engines' are tested against. */
export const jsTridiagonalEngine: TridiagonalEngine = {
  panelProduct(a, m, u, v, w, b) {
    const y = new Float64Array(m);
    for (let r = 0; r < m; r++) {
      let s = 0;
      for (let c = 0; c < m; c++) s += a[r * m + c] * u[c];
      y[r] = s;
    }
    const t1 = new Float64Array(b);
    const t2 = new Float64Array(b);
    for (let q = 0; q < m; q++) {
      for (let c = 0; c < b; c++) {
        t1[c] += w[q * b + c] * u[q];
        t2[c] += v[q * b + c] * u[q];
      }
    }
    for (let q = 0; q < m; q++) for (let c = 0; c < b; c++) y[q] -= v[q * b + c] * t1[c] + w[q * b + c] * t2[c];
    return y;
  },
  trailingUpdate(a, m, b, v, w, out) {
    const r = m - b;
    for (let i = 0; i < r; i++) {
      const row = (i + b) * m + b;
      for (let j = 0; j < r; j++) {
        let s = 0;
        for (let c = 0; c < b; c++) s += v[i * b + c] * w[j * b + c] + w[i * b + c] * v[j * b + c];
        out[i * r + j] = a[row + j] - s;
      }
    }
  },
};

export interface Tridiagonal {
  /** The diagonal, n values. */
  readonly d: Float64Array;
  /** The off-diagonal: e[i] couples i and i + 1 (e[n - 1] = 0). */
  readonly e: Float64Array;
  /**
   * The reflectors, packed: v_i's entries i + 1..n-1 (the first is 1) from `reflectorStart(i, n)`, and
   * H_i = I - tau_i v_i v_i^T; the input is Q T Q^T with Q = H_0 H_1 ... H_{n-2}.
   */
  readonly reflectors: Float64Array;
  readonly tau: Float64Array;
}

/**
 * Reduces the symmetric n x n matrix whose lower triangle is `matrix` (row-major; the upper triangle is not read,
 * and `matrix` is left unchanged unless `overwrite`) to tridiagonal form, panel by panel, the products on `engine`.
 */
/** Where reflector i starts in the packed reflectors of an n x n reduction (n - 1 - i entries each). */
export function reflectorStart(i: number, n: number): number {
  return i * (n - 1) - (i * (i - 1)) / 2;
}

/**
 * Memory stays two n x n buffers and the packed reflectors: each trailing update is written into the buffer the
 * panel before did not use.
 */
export async function blockedTridiagonal(
  matrix: Float64Array,
  n: number,
  engine: TridiagonalEngine = jsTridiagonalEngine,
  panel = PANEL,
  overwrite = false,
): Promise<Tridiagonal> {
  if (!Number.isInteger(panel) || panel < 1) throw new RangeError(`Expected a positive panel width but got ${panel}`);
  // With `overwrite`, the input itself is the first buffer (13 MB less at 1280 features).
  const buffers = [overwrite ? matrix : new Float64Array(n * n), new Float64Array(n > panel + 1 ? (n - panel) * (n - panel) : 0)];
  let a = buffers[0]!;
  let current = 0;
  if (a !== matrix) a.set(matrix);
  mirrorTriangle(a, n, 'lower');
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const reflectors = new Float64Array((n * (n - 1)) / 2);
  const tau = new Float64Array(n);
  let start = 0;
  while (start < n) {
    const m = n - start;
    // The last panel takes every column left, with nothing after it to update.
    const last = m - 1 <= panel;
    const b = last ? m : panel;
    const { v, w } = await reducePanel(engine, a, m, b, start, d, e, reflectors, tau);
    if (last) break;
    current = 1 - current;
    const out = buffers[current]!.subarray(0, (m - b) * (m - b));
    await engine.trailingUpdate(a, m, b, v.subarray(b * b), w.subarray(b * b), out);
    a = out;
    start += b;
  }
  return { d, e, reflectors, tau };
}

/**
 * dlatrd: reduces columns 0..b-1 of the m x m trailing matrix `a` (row-major, both triangles; its column j is
 * updated in place as the panel reaches it), which starts at row and column `start` of the whole matrix.
 * Returns the panel's V and W (m x b row-major, zero above each column's reflector).
 */
async function reducePanel(
  engine: TridiagonalEngine,
  a: Float64Array,
  m: number,
  b: number,
  start: number,
  d: Float64Array,
  e: Float64Array,
  reflectors: Float64Array,
  tau: Float64Array,
): Promise<{ v: Float64Array; w: Float64Array }> {
  const v = new Float64Array(m * b);
  const w = new Float64Array(m * b);
  const u = new Float64Array(m); // the current reflector, contiguous (v's column is strided)
  // Column j, rows j..m-1, gathered: updated, normed and scaled here, then written back, two passes over a
  // column that strides over the matrix by whole rows instead of five.
  const column = new Float64Array(m);
  for (let j = 0; j < b; j++) {
    for (let r = j; r < m; r++) column[r] = a[r * m + j];
    // Column j (rows j..m-1) gets the panel's earlier updates: A -= V W^T + W V^T, this column only.
    if (j > 0) {
      const jb = j * b;
      for (let r = j; r < m; r++) {
        const rb = r * b;
        let s = 0;
        for (let c = 0; c < j; c++) s += v[rb + c] * w[jb + c] + w[rb + c] * v[jb + c];
        column[r] -= s;
      }
    }
    d[start + j] = column[j];
    if (j + 1 >= m) {
      a[j * m + j] = column[j];
      break;
    }

    // The reflector H = I - t u u^T with u = (1, x / (alpha - beta)) mapping (alpha, x) to (beta, 0): dlarfg.
    const alpha = column[j + 1];
    let sumSquares = 0;
    for (let r = j + 2; r < m; r++) sumSquares += column[r] * column[r];
    let norm = Math.sqrt(sumSquares);
    // Past float64's range either way (not a covariance's), the slow sum that neither overflows nor underflows.
    if (!Number.isFinite(sumSquares) || (sumSquares < 1e-290 && sumSquares > 0)) {
      norm = 0;
      for (let r = j + 2; r < m; r++) norm = Math.hypot(norm, column[r]);
    }
    let t = 0;
    let beta = alpha;
    // Reflector start + j's entry for row start + r is at first + r - j - 1.
    const first = reflectorStart(start + j, start + m) - j - 1;
    if (norm !== 0) {
      beta = -Math.sign(alpha || 1) * Math.hypot(alpha, norm);
      t = (beta - alpha) / beta;
      const scale = 1 / (alpha - beta);
      for (let r = j + 2; r < m; r++) column[r] *= scale;
    }
    for (let r = j; r < m; r++) a[r * m + j] = column[r];
    e[start + j] = beta;
    tau[start + j] = t;
    // u lives in v's column j (rows j+1..m-1) and in the reflector's row.
    v[(j + 1) * b + j] = 1;
    reflectors[first + j + 1] = 1;
    u[j + 1] = 1;
    for (let r = j + 2; r < m; r++) {
      const value = norm !== 0 ? column[r] : 0;
      v[r * b + j] = value;
      reflectors[first + r] = value;
      u[r] = value;
    }
    if (t === 0) continue; // H = I: w stays zero

    // y = A22 u - (V W^T + W V^T) u: A22 (rows and columns j+1..m-1) as the panel found it, less the panel's
    // earlier updates, which are applied to the trailing matrix only once the panel is done.
    const u0 = j + 1;
    u[j] = 0;
    const y = await engine.panelProduct(a, m, u, v, w, b);
    // w = t y - (t^2 / 2)(y . u) u: the symmetric rank-2 update A - u w^T - w u^T applies H on both sides.
    let dot = 0;
    for (let q = u0; q < m; q++) dot += y[q] * u[q];
    const half = -0.5 * t * t * dot;
    for (let q = u0; q < m; q++) w[q * b + j] = t * y[q] + half * u[q];
  }
  return { v, w };
}

/**
 * x := Q x for each of the k vectors (rows of `x`, n values each), Q = H_0 H_1 ... H_{n-2}: the eigenvectors of
 * the input from those of its tridiagonal form, O(k n^2). Each reflector is read once and applied to every
 * vector while it is in cache, to four vectors per pass (the last few one by one).
 */
export function applyReflectors(t: Tridiagonal, x: Float64Array, n: number): void {
  const { reflectors, tau } = t;
  const k = x.length / n;
  for (let i = n - 2; i >= 0; i--) {
    const ti = tau[i];
    if (ti === 0) continue;
    const u = reflectorStart(i, n) - i - 1; // entry q of v_i at u + q
    let r = 0;
    for (; r + 3 < k; r += 4) {
      const o0 = r * n;
      const o1 = o0 + n;
      const o2 = o1 + n;
      const o3 = o2 + n;
      let g0 = 0;
      let g1 = 0;
      let g2 = 0;
      let g3 = 0;
      for (let q = i + 1; q < n; q++) {
        const uq = reflectors[u + q];
        g0 += uq * x[o0 + q];
        g1 += uq * x[o1 + q];
        g2 += uq * x[o2 + q];
        g3 += uq * x[o3 + q];
      }
      g0 *= ti;
      g1 *= ti;
      g2 *= ti;
      g3 *= ti;
      for (let q = i + 1; q < n; q++) {
        const uq = reflectors[u + q];
        x[o0 + q] -= g0 * uq;
        x[o1 + q] -= g1 * uq;
        x[o2 + q] -= g2 * uq;
        x[o3 + q] -= g3 * uq;
      }
    }
    for (; r < k; r++) {
      const o = r * n;
      let g = 0;
      for (let q = i + 1; q < n; q++) g += reflectors[u + q] * x[o + q];
      g *= ti;
      for (let q = i + 1; q < n; q++) x[o + q] -= g * reflectors[u + q];
    }
  }
}
