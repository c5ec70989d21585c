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
 * computed without ever forming the n x n eigenvector matrix (see `leadingVectors`), which skips the two
 * O(n^3) vector phases; more than that take the full path, whose results are bit for bit ml-matrix's.
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

  // QL's eigenvalues do not depend on the vectors, so one pass can record the rotations and decide later how
  // many vectors to build from them. The full path applies them to Q as they come (no log to keep).
  const wantAll = vectorCount === undefined;
  let q: Float64Array | undefined;
  let log: RotationLog | undefined;
  if (wantAll) {
    q = accumulateReflectors(a, n, h);
    const full = q;
    implicitQl(n, d, e, (l, m, cos, sin) => applyRotations(full, n, l, m, cos, sin));
  } else {
    const recorder = new RotationLog(n);
    log = recorder;
    implicitQl(n, d, e, (l, m, cos, sin) => recorder.push(l, m, cos, sin));
  }

  // Descending order.
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x] || x - y);
  const values = Float64Array.from(order, (j) => d[j]);
  const count = wantAll ? n : vectorCount(values);
  if (!Number.isInteger(count) || count < 0 || count > n) {
    throw new RangeError(`Expected a number of eigenvectors between 0 and ${n} but got ${count}`);
  }
  if (!q && count > n / 4) {
    // Many vectors: the log would cost more than it saves. Replay it on the full Q instead.
    q = accumulateReflectors(a, n, h);
    log!.replay(q);
  }
  if (q) {
    // The working copy is free now and receives the sorted rows.
    for (let j = 0; j < count; j++) a.set(q.subarray(order[j] * n, order[j] * n + n), j * n);
    return { values, vectors: count === n ? a : a.slice(0, count * n) };
  }
  return { values, vectors: leadingVectors(a, n, h, log!, order.slice(0, count)) };
}

/**
 * The Givens rotations of every QL sweep, in order, so that they can be applied afterwards to as many or as
 * few eigenvectors as are wanted. A covariance of 1280 features recorded about 1.06 million of them (17 MB).
 */
class RotationLog {
  private data: Float64Array;
  private used = 0;
  /** Per sweep: l, m and the offset of its (cos, sin) pairs for i = m-1 down to l. */
  private readonly sweeps: number[] = [];

  constructor(n: number) {
    this.data = new Float64Array(Math.max(64, 2 * n * n));
  }

  push(l: number, m: number, cos: Float64Array, sin: Float64Array): void {
    const need = this.used + 2 * (m - l);
    if (need > this.data.length) {
      const grown = new Float64Array(Math.max(need, 2 * this.data.length));
      grown.set(this.data.subarray(0, this.used));
      this.data = grown;
    }
    this.sweeps.push(l, m, this.used);
    for (let i = m - 1; i >= l; i--) {
      this.data[this.used++] = cos[i];
      this.data[this.used++] = sin[i];
    }
  }

  /** Applies every sweep, in order, to the rows of q (what the full path does during QL). */
  replay(q: Float64Array): void {
    const n = Math.sqrt(q.length);
    const cos = new Float64Array(n);
    const sin = new Float64Array(n);
    for (let t = 0; t < this.sweeps.length; t += 3) {
      const [l, m, start] = [this.sweeps[t], this.sweeps[t + 1], this.sweeps[t + 2]];
      for (let i = m - 1, o = start; i >= l; i--, o += 2) {
        cos[i] = this.data[o];
        sin[i] = this.data[o + 1];
      }
      applyRotations(q, n, l, m, cos, sin);
    }
  }

  /**
   * w := w S_T ... S_1 for the k columns of w stored as rows of wt (n x k, row-major), where sweep S = G_l ...
   * G_{m-1} and G_i maps rows (i, i+1) to (c x_i - s x_{i+1}, s x_i + c x_{i+1}): last sweep first, and within
   * a sweep rotation l first. Each rotation costs O(k) here instead of O(n) on the full matrix.
   */
  applyTransposed(wt: Float64Array, k: number): void {
    for (let t = this.sweeps.length - 3; t >= 0; t -= 3) {
      const [l, m, start] = [this.sweeps[t], this.sweeps[t + 1], this.sweeps[t + 2]];
      // Pairs were stored from i = m-1 down to l; walk them backwards to go from l up.
      for (let i = l, o = start + 2 * (m - 1 - l); i < m; i++, o -= 2) {
        const c = this.data[o];
        const s = this.data[o + 1];
        const r0 = i * k;
        const r1 = r0 + k;
        for (let r = 0; r < k; r++) {
          const x = wt[r0 + r];
          const y = wt[r1 + r];
          wt[r0 + r] = c * x + s * y;
          wt[r1 + r] = c * y - s * x;
        }
      }
    }
  }
}

/**
 * The eigenvectors for the QL positions `picked` (row j of the result belongs to picked[j]) without forming
 * the full eigenvector matrix V = R Q^T, where R is the product of all rotations and Q = P_0 ... P_{n-2} the
 * Householder reflectors: the k rows wanted are E^T R Q^T with E the k picked columns of the identity. The
 * rotations are applied to E from the right (O(k) each, see RotationLog), then the reflectors P_0, P_1, ...,
 * P_{n-2} to each of the k resulting vectors: O(k n^2) in all instead of O(n^3).
 */
function leadingVectors(a: Float64Array, n: number, h: Float64Array, log: RotationLog, picked: number[]): Float64Array {
  const k = picked.length;
  const wt = new Float64Array(n * k);
  picked.forEach((position, r) => (wt[position * k + r] = 1));
  log.applyTransposed(wt, k);

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
