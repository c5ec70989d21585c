/**
 * Eigen-decomposition of a real symmetric matrix: Householder tridiagonalisation (tred2) followed by the
 * implicit QL algorithm with Wilkinson-type shifts (tql2).
 *
 * The algorithm is the one of EISPACK's tred2/tql2 (Smith et al., "Matrix Eigensystem Routines", 1976; derived
 * from the Algol procedures of Bowdler, Martin, Reinsch & Wilkinson, Numer. Math. 11, 1968) as translated by
 * JAMA (Hicklin et al., NIST/MathWorks, 1998) and by ml-matrix's EigenvalueDecomposition, which is what orchard
 * used before; Numerical Recipes (Press et al., 3rd ed., section 11.3-11.4) explains the same routines. It is
 * exact in the usual sense of dense eigensolvers: no truncation, no randomness, every eigenpair is computed to
 * working precision.
 *
 * What differs from ml-matrix is only how the work is laid out, not the arithmetic: every number goes through
 * the same floating-point operations in the same order (there is no fused multiply-add in JavaScript), so the
 * results are bit for bit those of ml-matrix 6.15.1. The speed comes from
 *   - one flat Float64Array instead of an array of rows behind get/set calls;
 *   - the eigenvector matrix kept transposed (row j holds the vector that ends up with eigenvalue j), so that
 *     every O(n^3) inner loop runs along a row, i.e. over contiguous memory;
 *   - register blocking: the O(n^3) loops of the tridiagonalisation treat 2 or 4 rows per pass over the
 *     shared vectors, and each Householder reflector is applied to 4 rows of Q at once, its update fused with
 *     the dot product for the next reflector;
 *   - deferring the Givens rotations of each QL sweep and applying 4 consecutive ones per pass over the rows
 *     (rotation i touches rows i and i + 1, so a run of 4 touches 5 rows, loaded and stored once instead of 4
 *     times).
 * At n = 1280 this takes about a fifth of the time ml-matrix does.
 */

import { PANEL, applyReflectors, blockedTridiagonal, type TridiagonalEngine } from './blocked-tridiagonal';

export interface SymmetricEigen {
  /** The n eigenvalues, in descending order (ties keep the order in which QL delivered them). */
  readonly values: Float64Array;
  /**
   * n x n row-major; ROW j (vectors[j*n .. j*n + n)) is the unit eigenvector of values[j]. The rows are
   * orthonormal. Signs are whatever the algorithm produced: an eigenvector is only defined up to sign.
   */
  readonly vectors: Float64Array;
}

/**
 * Eigenvalues and eigenvectors of the symmetric n x n matrix stored row-major in `matrix` (left unchanged).
 *
 * `vectorCount`, when given, is called with all n eigenvalues (descending) and says how many leading
 * eigenvectors to return; PCA needs only its k components, chosen from the spectrum. Up to n/4 of them are
 * computed without ever forming the n x n eigenvector matrix (inverse iteration on the tridiagonal matrix, see
 * `tridiagonalVectors`, then the reflectors, see `leadingVectors`), which skips the two O(n^3) vector phases:
 * the same vectors to rounding (about eps ||A|| / gap), signs of their own; more than that take the full path,
 * whose results are bit for bit ml-matrix's.
 *
 * Only the lower triangle (matrix[i*n + j] with i >= j) is read, so the result is that of the symmetric matrix
 * it defines; a matrix that is symmetric up to rounding (as a covariance merged from shards can be) is fine.
 * This is the triangle ml-matrix's symmetric path reads too. Throws a RangeError on a wrong size or a
 * non-finite entry, and an Error if QL fails to converge within LAPACK's bound of 30 n sweeps (which does not
 * happen on finite input in practice: about 2 n are typical).
 */
export function symmetricEigen(matrix: Float64Array, n: number, vectorCount?: (values: Float64Array) => number): SymmetricEigen {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Expected a positive integer matrix size but got ${n}`);
  if (matrix.length !== n * n) {
    throw new RangeError(`Expected an ${n} x ${n} matrix (${n * n} values) but got ${matrix.length} values`);
  }

  // Work on the transpose of the lower triangle, i.e. the upper triangle of a copy: tred2 reads a[j][k], k >= j.
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = matrix[i * n + j];
      if (!Number.isFinite(v)) throw new RangeError(`Matrix entry (${i}, ${j}) is not finite: ${v}`);
      a[j * n + i] = v;
    }
  }

  const d = new Float64Array(n); // diagonal of the tridiagonal matrix, then the eigenvalues
  const e = new Float64Array(n); // its off-diagonal (e[i] couples i-1 and i), destroyed by QL
  householderTridiagonalise(a, n, d, e);
  const h = Float64Array.from(d); // h[i + 1]: normalisation of the reflector stored in row i + 1 of a
  for (let j = 0; j < n; j++) d[j] = a[j * n + j];
  e[0] = 0;

  // QL's eigenvalues do not depend on the vectors: one pass without them says how many are wanted. Few are
  // computed by inverse iteration on the tridiagonal matrix (see `tridiagonalVectors`), without any O(n^3)
  // vector phase; all of them (or many) by a second QL pass applying its rotations to the full Q, whose results
  // are bit for bit ml-matrix's.
  const diagonal = Float64Array.from(d);
  const offDiagonal = Float64Array.from(e);
  const wantAll = vectorCount === undefined;
  let q: Float64Array | undefined;
  if (wantAll) {
    q = accumulateReflectors(a, n, h);
    const full = q;
    implicitQl(n, d, e, (l, m, cos, sin) => applyRotations(full, n, l, m, cos, sin));
  } else {
    implicitQl(n, d, e, () => undefined);
  }

  // Descending order.
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x] || x - y);
  const values = Float64Array.from(order, (j) => d[j]);
  const count = wantAll ? n : vectorCount(values);
  if (!Number.isInteger(count) || count < 0 || count > n) {
    throw new RangeError(`Expected a number of eigenvectors between 0 and ${n} but got ${count}`);
  }
  if (!q && count > n / 4) {
    // Many vectors: QL again (same input, same arithmetic, same eigenvalues), its rotations applied to the full Q.
    const full = accumulateReflectors(a, n, h);
    q = full;
    implicitQl(n, diagonal, offDiagonal, (l, m, cos, sin) => applyRotations(full, n, l, m, cos, sin));
  }
  if (q) {
    // The working copy is free now and receives the sorted rows.
    for (let j = 0; j < count; j++) a.set(q.subarray(order[j] * n, order[j] * n + n), j * n);
    return { values, vectors: count === n ? a : a.slice(0, count * n) };
  }
  return { values, vectors: leadingVectors(a, n, h, tridiagonalVectors(diagonal, offDiagonal, values.subarray(0, count))) };
}

/**
 * `symmetricEigen` with the blocked reduction (blocked-tridiagonal.ts), whose matrix products run on `engine`
 * (an engine's float64 Gemm): the same eigenvalues to working precision, for about half the JavaScript work.
 * The k leading vectors come from inverse iteration on the tridiagonal matrix, back through the reflectors, as
 * on `symmetricEigen`'s path for few vectors; more than n/4 of them take `symmetricEigen` itself (its full path,
 * bit for bit ml-matrix's), from the start. With `original`, the reduction overwrites `matrix`, and the full
 * path starts from `original()`.
 */
export async function symmetricEigenBlocked(
  matrix: Float64Array,
  n: number,
  vectorCount: (values: Float64Array) => number,
  engine: TridiagonalEngine,
  original?: () => Float64Array,
): Promise<SymmetricEigen> {
  checkMatrix(matrix, n);
  // Given a way to have the matrix again (for the full path), the reduction may work in `matrix` itself.
  const reduced = await blockedTridiagonal(matrix, n, engine, PANEL, original !== undefined);
  // implicitQl's layout: e[i] couples i - 1 and i.
  const d = Float64Array.from(reduced.d);
  const e = new Float64Array(n);
  for (let i = 1; i < n; i++) e[i] = reduced.e[i - 1];
  const diagonal = Float64Array.from(d);
  const offDiagonal = Float64Array.from(e);
  implicitQl(n, d, e, () => undefined);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x] || x - y);
  const values = Float64Array.from(order, (j) => d[j]);
  const count = vectorCount(values);
  if (!Number.isInteger(count) || count < 0 || count > n) {
    throw new RangeError(`Expected a number of eigenvectors between 0 and ${n} but got ${count}`);
  }
  // Told again, with the full path's own eigenvalues: what the caller keeps is what that path computed.
  if (count > n / 4) return symmetricEigen(original ? original() : matrix, n, vectorCount);
  const columns = tridiagonalVectors(diagonal, offDiagonal, values.subarray(0, count)); // n x count
  const vectors = new Float64Array(count * n);
  for (let j = 0; j < count; j++) for (let i = 0; i < n; i++) vectors[j * n + i] = columns[i * count + j];
  applyReflectors(reduced, vectors, n);
  return { values, vectors };
}

/** The checks both solvers make: an n x n matrix whose lower triangle is finite. */
function checkMatrix(matrix: Float64Array, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Expected a positive integer matrix size but got ${n}`);
  if (matrix.length !== n * n) {
    throw new RangeError(`Expected an ${n} x ${n} matrix (${n * n} values) but got ${matrix.length} values`);
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = matrix[i * n + j];
      if (!Number.isFinite(v)) throw new RangeError(`Matrix entry (${i}, ${j}) is not finite: ${v}`);
    }
  }
}

/**
 * Eigenvectors of the symmetric tridiagonal matrix T (diagonal d, e[i] coupling i - 1 and i) for the given
 * eigenvalues (descending, accurate to working precision: QL's), by inverse iteration as LAPACK's dstein does
 * it: LU of T - lambda I with partial pivoting, three solves from a fixed pseudo-random start, and vectors of
 * eigenvalues closer than 1e-3 ||T|| kept orthogonal to each other (modified Gram-Schmidt at every solve), equal
 * eigenvalues nudged apart by a few ulps. O(n) per solve. Returned as n x k, row-major (row i holds entry i of
 * every vector), unit vectors of arbitrary sign.
 */
function tridiagonalVectors(d: Float64Array, e: Float64Array, wanted: Float64Array): Float64Array {
  const n = d.length;
  const k = wanted.length;
  let norm = 0;
  for (let i = 0; i < n; i++) norm = Math.max(norm, Math.abs(d[i]) + Math.abs(e[i]) + (i + 1 < n ? Math.abs(e[i + 1]) : 0));
  const eps = Number.EPSILON;
  const tiny = eps * Math.max(norm, Number.MIN_VALUE);
  const clusterGap = 1e-3 * norm;
  const u0 = new Float64Array(n);
  const u1 = new Float64Array(n);
  const u2 = new Float64Array(n);
  const mult = new Float64Array(n);
  const swapped = new Uint8Array(n);
  const vectors = new Float64Array(k * n); // row j: vector j, while they are built
  let x = new Float64Array(n);
  let seed = 0x2545f491;
  let clusterStart = 0;
  let previous = Infinity;
  for (let j = 0; j < k; j++) {
    let lambda = wanted[j];
    if (previous - lambda > clusterGap) clusterStart = j;
    const nudge = 10 * eps * Math.max(Math.abs(lambda), tiny);
    if (j > 0 && previous - lambda < nudge) lambda = previous - nudge;
    previous = lambda;
    // LU of T - lambda I: at step i the active row holds columns i and i + 1 (r0, r1).
    let r0 = d[0] - lambda;
    let r1 = n > 1 ? e[1] : 0;
    for (let i = 0; i < n - 1; i++) {
      const s0 = e[i + 1];
      const s1 = d[i + 1] - lambda;
      const s2 = i + 2 < n ? e[i + 2] : 0;
      if (Math.abs(r0) >= Math.abs(s0)) {
        if (r0 === 0) r0 = tiny;
        swapped[i] = 0;
        u0[i] = r0;
        u1[i] = r1;
        u2[i] = 0;
        const m = s0 / r0;
        mult[i] = m;
        r0 = s1 - m * r1;
        r1 = s2;
      } else {
        swapped[i] = 1;
        u0[i] = s0;
        u1[i] = s1;
        u2[i] = s2;
        const m = r0 / s0;
        mult[i] = m;
        r0 = r1 - m * s1;
        r1 = -m * s2;
      }
    }
    u0[n - 1] = Math.abs(r0) < tiny ? tiny : r0;
    for (let i = 0; i < n - 1; i++) if (Math.abs(u0[i]) < tiny) u0[i] = u0[i] < 0 ? -tiny : tiny;

    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      x[i] = seed / 4294967296 - 0.5;
    }
    for (let iteration = 0; iteration < 3; iteration++) {
      orthogonalise(x, vectors, n, clusterStart, j);
      // Solve (T - lambda I) y = x: the row swaps and L, then U by back-substitution.
      for (let i = 0; i < n - 1; i++) {
        if (swapped[i]) {
          const t = x[i];
          x[i] = x[i + 1];
          x[i + 1] = t;
        }
        x[i + 1] -= mult[i] * x[i];
      }
      x[n - 1] /= u0[n - 1];
      if (n > 1) x[n - 2] = (x[n - 2] - u1[n - 2] * x[n - 1]) / u0[n - 2];
      for (let i = n - 3; i >= 0; i--) x[i] = (x[i] - u1[i] * x[i + 1] - u2[i] * x[i + 2]) / u0[i];
      normalise(x);
    }
    orthogonalise(x, vectors, n, clusterStart, j);
    normalise(x);
    vectors.set(x, j * n);
    x = new Float64Array(n);
  }
  const out = new Float64Array(n * k);
  for (let j = 0; j < k; j++) for (let i = 0; i < n; i++) out[i * k + j] = vectors[j * n + i];
  return out;
}

/** Removes from x its components along vectors from..to-1 (rows of `vectors`), one after the other. */
export function orthogonalise(x: Float64Array, vectors: Float64Array, n: number, from: number, to: number): void {
  for (let v = from; v < to; v++) {
    const o = v * n;
    let dot = 0;
    for (let i = 0; i < n; i++) dot += vectors[o + i] * x[i];
    for (let i = 0; i < n; i++) x[i] -= dot * vectors[o + i];
  }
}

function normalise(x: Float64Array): void {
  let max = 0;
  for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]));
  if (max === 0 || !Number.isFinite(max)) throw new Error('Symmetric eigensolver: inverse iteration produced no vector');
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += (x[i] / max) ** 2;
  const scale = 1 / (max * Math.sqrt(sum));
  for (let i = 0; i < x.length; i++) x[i] *= scale;
}

/**
 * The eigenvectors of the original matrix from k eigenvectors of its tridiagonal form, given as the columns of
 * wt (n x k, row-major): the Householder reflectors P_0, P_1, ..., P_{n-2} applied to each, O(k n^2) in all
 * instead of the O(n^3) of forming Q.
 */
function leadingVectors(a: Float64Array, n: number, h: Float64Array, wt: Float64Array): Float64Array {
  const k = wt.length / n;
  const out = new Float64Array(k * n);
  for (let r = 0; r < k; r++) {
    const x = out.subarray(r * n, r * n + n);
    for (let i = 0; i < n; i++) x[i] = wt[i * k + r];
    for (let i = 0; i < n - 1; i++) {
      const hi = h[i + 1];
      if (hi === 0) continue;
      const u = (i + 1) * n;
      let g = 0;
      for (let t = 0; t <= i; t++) g += a[u + t] * x[t];
      g /= hi;
      for (let t = 0; t <= i; t++) x[t] -= g * a[u + t];
    }
  }
  return out;
}

/** sqrt(a^2 + b^2) without overflow or destructive underflow (JAMA's Maths.hypot, kept for identical rounding). */
function hypot(a: number, b: number): number {
  if (Math.abs(a) > Math.abs(b)) {
    const r = b / a;
    return Math.abs(a) * Math.sqrt(1 + r * r);
  }
  if (b !== 0) {
    const r = a / b;
    return Math.abs(b) * Math.sqrt(1 + r * r);
  }
  return 0;
}

/**
 * First half of tred2: reduces the symmetric matrix held in the upper triangle of `a` (a[j][k], k >= j) to
 * tridiagonal form by n - 2 Householder reflections, eliminating column i above the subdiagonal for
 * i = n-1 down to 2. On return:
 *   - e[1..n) is the off-diagonal of the tridiagonal matrix;
 *   - a[j][j] its diagonal;
 *   - row i of the lower triangle (a[i][0..i)) holds the Householder vector u of step i, and d[i] its
 *     normalisation h = |u|^2 / 2 (0 when the step was skipped because the column was already zero);
 *   - the strict upper triangle is zero.
 * As in JAMA, d and e double as scratch vectors within a step (d: the current column, then u; e: p = A u / h,
 * then q = p - K u), so the off-diagonal e[i] and h = d[i] are written only once step i has no use for them.
 */
function householderTridiagonalise(a: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let j = 0; j < n; j++) d[j] = a[j * n + n - 1];
  for (let i = n - 1; i > 0; i--) {
    const ui = i * n; // row i receives u
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      // Nothing to eliminate: column i is already zero above the subdiagonal.
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = a[j * n + i - 1];
        a[j * n + i] = 0;
        a[ui + j] = 0;
      }
      d[i] = h;
      continue;
    }

    // u = x - sigma e_{i-1}, with x the scaled column and sigma = -sign(x_{i-1}) |x|.
    for (let k = 0; k < i; k++) {
      d[k] /= scale;
      h += d[k] * d[k];
    }
    let f = d[i - 1];
    let g = Math.sqrt(h);
    if (f > 0) g = -g;
    e[i] = scale * g;
    h -= f * g;
    d[i - 1] = f - g;
    for (let j = 0; j < i; j++) e[j] = 0;

    // e = A u, reading only the upper triangle: row j gives e[j] (its dot product with u) and, through
    // symmetry, a[j][k] u[j] to every e[k], k > j. Two rows per pass; row j's contribution to e[j + 1] must
    // land before row j + 1 starts from it.
    let j = 0;
    for (; j + 1 < i; j += 2) {
      const r0 = j * n;
      const r1 = r0 + n;
      const f0 = d[j];
      const f1 = d[j + 1];
      a[ui + j] = f0;
      a[ui + j + 1] = f1;
      let g0 = e[j] + a[r0 + j] * f0;
      const v = a[r0 + j + 1];
      g0 += v * d[j + 1];
      e[j + 1] += v * f0;
      let g1 = e[j + 1] + a[r1 + j + 1] * f1;
      for (let k = j + 2; k < i; k++) {
        const v0 = a[r0 + k];
        const v1 = a[r1 + k];
        const dk = d[k];
        g0 += v0 * dk;
        g1 += v1 * dk;
        let ek = e[k] + v0 * f0;
        ek += v1 * f1;
        e[k] = ek;
      }
      e[j] = g0;
      e[j + 1] = g1;
    }
    if (j < i) {
      const r0 = j * n;
      const f0 = d[j];
      a[ui + j] = f0;
      let g0 = e[j] + a[r0 + j] * f0;
      for (let k = j + 1; k < i; k++) {
        const v = a[r0 + k];
        g0 += v * d[k];
        e[k] += v * f0;
      }
      e[j] = g0;
    }

    // p = A u / h, K = u.p / 2h, q = p - K u.
    f = 0;
    for (let k = 0; k < i; k++) {
      e[k] /= h;
      f += e[k] * d[k];
    }
    const hh = f / (h + h);
    for (let k = 0; k < i; k++) e[k] -= hh * d[k];

    // A -= u q^T + q u^T on the upper triangle, four rows per pass, then read off the next column.
    for (j = 0; j + 3 < i; j += 4) {
      const r0 = j * n;
      const r1 = r0 + n;
      const r2 = r1 + n;
      const r3 = r2 + n;
      const f0 = d[j], g0 = e[j];
      const f1 = d[j + 1], g1 = e[j + 1];
      const f2 = d[j + 2], g2 = e[j + 2];
      const f3 = d[j + 3], g3 = e[j + 3];
      // The triangle's corner: rows start at their own diagonal.
      a[r0 + j] -= f0 * e[j] + g0 * d[j];
      for (let k = j + 1; k < j + 3; k++) {
        a[r0 + k] -= f0 * e[k] + g0 * d[k];
        a[r1 + k] -= f1 * e[k] + g1 * d[k];
      }
      a[r2 + j + 2] -= f2 * e[j + 2] + g2 * d[j + 2];
      for (let k = j + 3; k < i; k++) {
        const ek = e[k];
        const dk = d[k];
        a[r0 + k] -= f0 * ek + g0 * dk;
        a[r1 + k] -= f1 * ek + g1 * dk;
        a[r2 + k] -= f2 * ek + g2 * dk;
        a[r3 + k] -= f3 * ek + g3 * dk;
      }
      for (let r = 0; r < 4; r++) {
        d[j + r] = a[(j + r) * n + i - 1];
        a[(j + r) * n + i] = 0;
      }
    }
    for (; j < i; j++) {
      const r0 = j * n;
      const f0 = d[j];
      const g0 = e[j];
      for (let k = j; k < i; k++) a[r0 + k] -= f0 * e[k] + g0 * d[k];
      d[j] = a[r0 + i - 1];
      a[r0 + i] = 0;
    }
    d[i] = h;
  }
}

/**
 * Second half of tred2: Q = P_0 P_1 ... P_{n-2} with P_i = I - u u^T / h the reflector stored in row i + 1
 * of `a` (and h in d[i + 1]), returned transposed: row j of the result is row j of JAMA's V^T. JAMA builds
 * Q in place, applying reflector i to all rows at once; rows do not interact, so here each block of 4 rows
 * goes through all the reflectors while it stays in cache. Row j starts as e_j and meets reflectors j..n-2
 * (the earlier ones leave it unchanged, bit for bit). The dot product with u_i and the update by reflector
 * i - 1 share one pass. Per element, the operations and their order are JAMA's.
 */
function accumulateReflectors(a: Float64Array, n: number, d: Float64Array): Float64Array {
  // w_i = u_i / h_i, packed: reflector i has i + 1 entries starting at i (i + 1) / 2.
  const w = new Float64Array((n * (n - 1)) / 2);
  for (let i = 0; i < n - 1; i++) {
    const h = d[i + 1];
    if (h === 0) continue;
    const off = (i * (i + 1)) / 2;
    const u = (i + 1) * n;
    for (let k = 0; k <= i; k++) w[off + k] = a[u + k] / h;
  }

  const q = new Float64Array(n * n);
  q[n * n - 1] = 1; // the last row meets no reflector
  let j0 = 0;
  for (; j0 + 4 <= n - 1; j0 += 4) {
    const q0 = j0 * n;
    const q1 = q0 + n;
    const q2 = q1 + n;
    const q3 = q2 + n;
    q[q0 + j0] = 1;
    q[q1 + j0 + 1] = 1;
    q[q2 + j0 + 2] = 1;
    q[q3 + j0 + 3] = 1;
    // The pending update x -= p w_{i'} (of length len) by the previous reflector i', if any.
    let pending = -1;
    let len = 0;
    let p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    for (let i = j0; i < n - 1; i++) {
      if (d[i + 1] === 0) continue;
      const u = (i + 1) * n;
      let g0 = 0, g1 = 0, g2 = 0, g3 = 0;
      let k = 0;
      if (pending >= 0) {
        for (; k < len; k++) {
          const wk = w[pending + k];
          const uk = a[u + k];
          const x0 = q[q0 + k] - p0 * wk;
          const x1 = q[q1 + k] - p1 * wk;
          const x2 = q[q2 + k] - p2 * wk;
          const x3 = q[q3 + k] - p3 * wk;
          q[q0 + k] = x0;
          q[q1 + k] = x1;
          q[q2 + k] = x2;
          q[q3 + k] = x3;
          g0 += uk * x0;
          g1 += uk * x1;
          g2 += uk * x2;
          g3 += uk * x3;
        }
      }
      for (; k <= i; k++) {
        const uk = a[u + k];
        g0 += uk * q[q0 + k];
        g1 += uk * q[q1 + k];
        g2 += uk * q[q2 + k];
        g3 += uk * q[q3 + k];
      }
      pending = (i * (i + 1)) / 2;
      len = i + 1;
      p0 = g0;
      p1 = g1;
      p2 = g2;
      p3 = g3;
    }
    for (let k = 0; k < len; k++) {
      const wk = w[pending + k];
      q[q0 + k] -= p0 * wk;
      q[q1 + k] -= p1 * wk;
      q[q2 + k] -= p2 * wk;
      q[q3 + k] -= p3 * wk;
    }
  }
  // The last (n - 1) mod 4 rows, one at a time, unfused.
  for (let j = j0; j < n - 1; j++) {
    const qj = j * n;
    q[qj + j] = 1;
    for (let i = j; i < n - 1; i++) {
      if (d[i + 1] === 0) continue;
      const u = (i + 1) * n;
      const off = (i * (i + 1)) / 2;
      let g = 0;
      for (let k = 0; k <= i; k++) g += a[u + k] * q[qj + k];
      for (let k = 0; k <= i; k++) q[qj + k] -= g * w[off + k];
    }
  }
  return q;
}

/**
 * QL sweeps allowed per eigenvalue on average, LAPACK's bound (dsteqr: 30 n in all). About 2 are typical;
 * JAMA has no bound, EISPACK gives up after 30 on a single eigenvalue.
 */
const MAX_SWEEPS_PER_VALUE = 30;

/**
 * tql2: diagonalises the symmetric tridiagonal matrix (diagonal d, off-diagonal e[1..n)) by implicit QL
 * with shifts, handing the Givens rotations of each sweep to `onSweep` (which applies them to the rows of Q
 * for row j of Q to become the eigenvector of d[j], or records them). On return d holds the eigenvalues,
 * unsorted.
 */
function implicitQl(
  n: number,
  d: Float64Array,
  e: Float64Array,
  onSweep: (l: number, m: number, cos: Float64Array, sin: Float64Array) => void,
): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  // The rotations of one sweep, applied to q after the sweep: rotation i is (cos[i], sin[i]) on rows i, i+1.
  const cos = new Float64Array(n);
  const sin = new Float64Array(n);
  let sweepsLeft = MAX_SWEEPS_PER_VALUE * n;
  let f = 0;
  let tst1 = 0;
  const eps = Number.EPSILON;
  for (let l = 0; l < n; l++) {
    // Find a small subdiagonal element: e[m] negligible splits the matrix; QL works on the block l..m.
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]) > eps * tst1) m++;

    if (m > l) {
      do {
        if (--sweepsLeft < 0) {
          const limit = MAX_SWEEPS_PER_VALUE * n;
          throw new Error(`Symmetric eigensolver: QL did not converge in ${limit} sweeps (n = ${n})`);
        }
        // Shift.
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;

        // Implicit QL sweep from m - 1 up to l.
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          cos[i] = c;
          sin[i] = s;
        }
        onSweep(l, m, cos, sin);
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/**
 * Applies rotations i = m-1, m-2, ..., l (in that order) to q: rows (i, i+1) become
 * (c x_i - s x_{i+1}, s x_i + c x_{i+1}). Four at a time where possible: per column, the value rotation i
 * leaves in row i is carried in a register into rotation i - 1.
 */
function applyRotations(q: Float64Array, n: number, l: number, m: number, cos: Float64Array, sin: Float64Array): void {
  let i = m - 1;
  for (; i - 3 >= l; i -= 4) {
    const c1 = cos[i], s1 = sin[i];
    const c2 = cos[i - 1], s2 = sin[i - 1];
    const c3 = cos[i - 2], s3 = sin[i - 2];
    const c4 = cos[i - 3], s4 = sin[i - 3];
    const r0 = (i - 3) * n;
    const r1 = r0 + n;
    const r2 = r1 + n;
    const r3 = r2 + n;
    const r4 = r3 + n;
    for (let k = 0; k < n; k++) {
      let y = q[r4 + k];
      let x = q[r3 + k];
      q[r4 + k] = s1 * x + c1 * y;
      y = c1 * x - s1 * y;
      x = q[r2 + k];
      q[r3 + k] = s2 * x + c2 * y;
      y = c2 * x - s2 * y;
      x = q[r1 + k];
      q[r2 + k] = s3 * x + c3 * y;
      y = c3 * x - s3 * y;
      x = q[r0 + k];
      q[r1 + k] = s4 * x + c4 * y;
      q[r0 + k] = c4 * x - s4 * y;
    }
  }
  for (; i >= l; i--) {
    const c = cos[i];
    const s = sin[i];
    const r0 = i * n;
    const r1 = r0 + n;
    for (let k = 0; k < n; k++) {
      const y = q[r1 + k];
      const x = q[r0 + k];
      q[r1 + k] = s * x + c * y;
      q[r0 + k] = c * x - s * y;
    }
  }
}
