import { EigenvalueDecomposition, Matrix, QrDecomposition } from 'ml-matrix';
import { symmetricEigen, symmetricEigenBlocked } from '../runtime/pca/symmetric-eigen';
import { applyReflectors, blockedTridiagonal, jsTridiagonalEngine, type TridiagonalEngine } from '../runtime/pca/blocked-tridiagonal';
import { ortTridiagonalEngine } from '../runtime/pca/ort-tridiagonal';
import { loadOrt } from '../runtime/onnx/runtime';
import { mulberry32 } from '../runtime/random';

type Sym = { a: Float64Array; n: number };

/** Symmetric with entries uniform in [-1, 1): an indefinite spectrum (Wigner semicircle). */
function randomSymmetric(n: number, seed: number): Sym {
  const r = mulberry32(seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = r() * 2 - 1;
      a[i * n + j] = v;
      a[j * n + i] = v;
    }
  }
  return { a, n };
}

/** B^T B / m with B m x n uniform: positive definite, a covariance-like spectrum. */
function randomSpd(n: number, seed: number): Sym {
  const r = mulberry32(seed);
  const m = 2 * n + 3;
  const b = Float64Array.from({ length: m * n }, () => r() * 2 - 1);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < m; k++) s += b[k * n + i] * b[k * n + j];
      a[i * n + j] = s / m;
      a[j * n + i] = s / m;
    }
  }
  return { a, n };
}

/** A random orthogonal matrix (row-major), from the QR decomposition of a random one. */
function randomOrthogonal(n: number, seed: number): Float64Array {
  const r = mulberry32(seed);
  const random = Matrix.from1DArray(n, n, Float64Array.from({ length: n * n }, () => r() * 2 - 1));
  return Float64Array.from(new QrDecomposition(random).orthogonalMatrix.to1DArray());
}

/** Q diag(values) Q^T: a symmetric matrix whose eigenvectors are the columns of Q. */
function withSpectrum(q: Float64Array, values: number[]): Sym {
  const n = values.length;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q[i * n + k] * values[k] * q[j * n + k];
      a[i * n + j] = s;
    }
  }
  // Exactly symmetric, as the solver's contract assumes (it reads the lower triangle).
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[j * n + i] = a[i * n + j];
  return { a, n };
}

/** ml-matrix's decomposition, as (values descending, row j = eigenvector of values[j]). */
function reference({ a, n }: Sym): { values: number[]; vectors: number[][] } {
  const evd = new EigenvalueDecomposition(Matrix.from1DArray(n, n, a), { assumeSymmetric: true });
  const order = evd.realEigenvalues.map((_, i) => i).sort((x, y) => evd.realEigenvalues[y] - evd.realEigenvalues[x]);
  return {
    values: order.map((i) => evd.realEigenvalues[i]),
    vectors: order.map((i) => evd.eigenvectorMatrix.getColumn(i)),
  };
}

const row = (v: Float64Array, n: number, j: number) => v.subarray(j * n, (j + 1) * n);
const maxAbs = (xs: ArrayLike<number>) => Array.from(xs).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/** max_j |A v_j - lambda_j v_j|_2 */
/** max |A v - lambda v| over the pairs given (as many as there are values). */
function residual({ a, n }: Sym, values: Float64Array, vectors: Float64Array): number {
  let worst = 0;
  for (let j = 0; j < values.length; j++) {
    const v = row(vectors, n, j);
    let sq = 0;
    for (let i = 0; i < n; i++) {
      let av = 0;
      for (let k = 0; k < n; k++) av += a[i * n + k] * v[k];
      sq += (av - values[j] * v[i]) ** 2;
    }
    worst = Math.max(worst, Math.sqrt(sq));
  }
  return worst;
}

/** max |V V^T - I| over the rows of vectors. */
function orthonormalityError(vectors: Float64Array, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let dot = 0;
      for (let k = 0; k < n; k++) dot += vectors[i * n + k] * vectors[j * n + k];
      worst = Math.max(worst, Math.abs(dot - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

/** Tolerances scale with n and the matrix's size |A|_2 = max |lambda|, as backward-stable error bounds do. */
const tol = (n: number, norm: number, factor = 1e-14) => factor * Math.max(n, 10) * Math.max(norm, 1e-300);

describe('symmetricEigen against ml-matrix EigenvalueDecomposition', () => {
  const cases: [string, Sym][] = [];
  for (const n of [1, 2, 5, 7, 64, 200]) {
    cases.push([`indefinite n=${n}`, randomSymmetric(n, 1000 + n)]);
    cases.push([`positive definite n=${n}`, randomSpd(n, 2000 + n)]);
  }

  it.each(cases)('%s: same eigenvalues and (up to sign) eigenvectors, small residual, orthonormal', (_, m) => {
    const { n } = m;
    const { values, vectors } = symmetricEigen(m.a, n);
    const ref = reference(m);
    expect(values).toHaveLength(n);
    expect(vectors).toHaveLength(n * n);
    const norm = maxAbs(ref.values);

    for (let j = 0; j < n; j++) {
      expect(Math.abs(values[j] - ref.values[j])).toBeLessThanOrEqual(1e-10 * norm);
      if (j > 0) expect(values[j]).toBeLessThanOrEqual(values[j - 1]);
      const v = row(vectors, n, j);
      const w = ref.vectors[j];
      const sign = v.reduce((s, x, k) => s + x * w[k], 0) < 0 ? -1 : 1;
      expect(maxAbs(v.map((x, k) => sign * x - w[k]))).toBeLessThan(1e-8);
    }
    expect(residual(m, values, vectors)).toBeLessThan(tol(n, norm));
    expect(orthonormalityError(vectors, n)).toBeLessThan(tol(n, 1));
  });

  it('leaves its input alone and reads only the lower triangle', () => {
    const m = randomSymmetric(9, 7);
    const before = Float64Array.from(m.a);
    const expected = symmetricEigen(m.a, m.n);
    expect(m.a).toEqual(before);
    const scribbled = Float64Array.from(m.a);
    for (let i = 0; i < m.n; i++) for (let j = i + 1; j < m.n; j++) scribbled[i * m.n + j] = 1e6 * (i - j);
    expect(symmetricEigen(scribbled, m.n)).toEqual(expected);
  });
});

describe('symmetricEigen on degenerate spectra', () => {
  it('returns a diagonal matrix exactly: its entries, sorted, and signed unit vectors', () => {
    const diag = [3, -1, 0, 7.5, 3, -2, 1e-300, 0];
    const n = diag.length;
    const a = new Float64Array(n * n);
    diag.forEach((x, i) => (a[i * n + i] = x));
    const { values, vectors } = symmetricEigen(a, n);
    expect(Array.from(values)).toEqual([...diag].sort((x, y) => y - x));
    for (let j = 0; j < n; j++) {
      const v = row(vectors, n, j);
      const at = v.findIndex((x) => x !== 0);
      expect(Math.abs(v[at])).toBe(1);
      expect(v.filter((x) => x !== 0)).toHaveLength(1);
      expect(diag[at]).toBe(values[j]);
    }
    expect(orthonormalityError(vectors, n)).toBe(0);
  });

  it('returns zeros and an orthonormal basis for the zero matrix', () => {
    for (const n of [1, 2, 6]) {
      const { values, vectors } = symmetricEigen(new Float64Array(n * n), n);
      expect(Array.from(values)).toEqual(new Array(n).fill(0));
      expect(orthonormalityError(vectors, n)).toBe(0);
    }
  });

  it('handles the 1 x 1 case', () => {
    const { values, vectors } = symmetricEigen(Float64Array.of(-4.25), 1);
    expect(Array.from(values)).toEqual([-4.25]);
    expect(Math.abs(vectors[0])).toBe(1);
  });

  it.each([
    ['a triple and a double eigenvalue', [5, 5, 5, 2, 2, -1, 0.5, 0.25, 3, 4, 1.5, -3]],
    ['a rank-3 matrix (37-fold zero eigenvalue, as with fewer images than features)', [9, 4, 1, ...Array(37).fill(0)]],
    ['a scaled identity', new Array(10).fill(2.5)],
  ])('repeated eigenvalues, %s: right values, invariant subspaces, orthonormal vectors', (_, spectrum) => {
    const n = spectrum.length;
    const q = randomOrthogonal(n, 31 + n);
    const m = withSpectrum(q, spectrum);
    const { values, vectors } = symmetricEigen(m.a, n);
    const sorted = [...spectrum].sort((x, y) => y - x);
    const norm = maxAbs(sorted);
    for (let j = 0; j < n; j++) expect(Math.abs(values[j] - sorted[j])).toBeLessThan(tol(n, norm));
    expect(residual(m, values, vectors)).toBeLessThan(tol(n, norm));
    expect(orthonormalityError(vectors, n)).toBeLessThan(tol(n, 1));

    // Within a cluster the vectors are any orthonormal basis of the eigenspace: compare the projectors
    // V_c^T V_c (computed) and Q_c Q_c^T (built in) rather than the vectors.
    for (const lambda of new Set(spectrum)) {
      const ours = sorted.flatMap((x, j) => (x === lambda ? [j] : []));
      const truth = spectrum.flatMap((x, k) => (x === lambda ? [k] : []));
      let worst = 0;
      for (let r = 0; r < n; r++) {
        for (let c = 0; c < n; c++) {
          let p = 0;
          for (const j of ours) p += vectors[j * n + r] * vectors[j * n + c];
          let t = 0;
          for (const k of truth) t += q[r * n + k] * q[c * n + k];
          worst = Math.max(worst, Math.abs(p - t));
        }
      }
      // Eigenspaces are only as well determined as the gap to the rest of the spectrum allows.
      expect(worst).toBeLessThan(1e-12);
    }
  });
});

describe('symmetricEigen with only the leading eigenvectors', () => {
  const m = randomSpd(120, 77);
  const full = symmetricEigen(m.a, m.n);

  it.each([
    ['one vector', 1],
    ['a few, by inverse iteration on the tridiagonal matrix', 7],
    ['n/4, the most inverse iteration serves', 30],
    ['more than n/4, by a second QL pass on the full Q', 31],
    ['all of them', 120],
  ])('%s: same values and, up to rounding, the same leading rows as the full decomposition', (_, k) => {
    let seen: Float64Array | undefined;
    const part = symmetricEigen(m.a, m.n, (values) => {
      seen = Float64Array.from(values);
      return k;
    });
    expect(seen).toEqual(full.values);
    expect(part.values).toEqual(full.values);
    expect(part.vectors).toHaveLength(k * m.n);
    // The same vectors up to sign (inverse iteration picks its own), equal to rounding: a vector is determined to
    // about eps ||A|| / gap, the residual below being the check that matters.
    for (let j = 0; j < k; j++) {
      const ours = row(part.vectors, m.n, j);
      const theirs = row(full.vectors, m.n, j);
      const sign = ours.reduce((sum, x, i) => sum + x * theirs[i], 0) < 0 ? -1 : 1;
      expect(maxAbs(ours.map((x, i) => sign * x - theirs[i]))).toBeLessThan(k > m.n / 4 ? 1e-13 : 1e-10);
    }
    expect(residual(m, part.values.slice(0, k), part.vectors)).toBeLessThan(tol(m.n, maxAbs(full.values)));
  });

  it('takes no vectors at all, and refuses a count outside 0..n', () => {
    expect(symmetricEigen(m.a, m.n, () => 0).vectors).toHaveLength(0);
    expect(() => symmetricEigen(m.a, m.n, () => 121)).toThrow(/between 0 and 120 but got 121/);
    expect(() => symmetricEigen(m.a, m.n, () => 2.5)).toThrow(RangeError);
  });

  it('gives an invariant subspace for a repeated leading eigenvalue cut through the middle', () => {
    const spectrum = [6, 6, 6, 2, 1, 0.5, 0.25, 0.1, 0, 0, 0, 0];
    const n = spectrum.length;
    const sym = withSpectrum(randomOrthogonal(n, 5), spectrum);
    const { values, vectors } = symmetricEigen(sym.a, n, () => 2);
    expect(residual(sym, values.slice(0, 2), vectors)).toBeLessThan(tol(n, 6));
    let dot = 0;
    for (let t = 0; t < n; t++) dot += vectors[t] * vectors[n + t];
    expect(Math.abs(dot)).toBeLessThan(1e-13);
  });
});

describe('symmetricEigen input checks', () => {
  it('rejects a wrong size, a non-integer or empty size, and non-finite entries', () => {
    expect(() => symmetricEigen(new Float64Array(5), 2)).toThrow(/2 x 2 matrix \(4 values\) but got 5/);
    expect(() => symmetricEigen(new Float64Array(0), 0)).toThrow(RangeError);
    expect(() => symmetricEigen(new Float64Array(4), 1.5)).toThrow(RangeError);
    expect(() => symmetricEigen(Float64Array.of(1, 0, Number.NaN, 1), 2)).toThrow(/\(1, 0\) is not finite: NaN/);
    expect(() => symmetricEigen(Float64Array.of(Number.POSITIVE_INFINITY), 1)).toThrow(RangeError);
  });
});

describe('the blocked reduction (blocked-tridiagonal.ts)', () => {
  const engines: [string, TridiagonalEngine][] = [
    ['JavaScript', jsTridiagonalEngine],
    ['ONNX Runtime', ortTridiagonalEngine(loadOrt(), 2)],
  ];

  /** Q T Q^T, rebuilt from the reduction: applying Q to the columns of T and then to the rows. */
  function rebuild(t: Awaited<ReturnType<typeof blockedTridiagonal>>, n: number): Float64Array {
    const tri = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      tri[i * n + i] = t.d[i];
      if (i + 1 < n) tri[i * n + i + 1] = tri[(i + 1) * n + i] = t.e[i];
    }
    // Rows of tri are columns too (symmetric): Q T, then (Q (Q T)^T)^T = Q T Q^T.
    applyReflectors(t, tri, n);
    const back = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) back[i * n + j] = tri[j * n + i];
    applyReflectors(t, back, n);
    return back;
  }

  it.each(engines)('on %s: Q T Q^T is the input, for sizes around the panel width and narrow panels', async (_, engine) => {
    for (const [n, panel] of [[1, 32], [2, 32], [3, 1], [33, 32], [34, 32], [70, 32], [100, 7], [65, 64]] as const) {
      const m = n % 2 ? randomSymmetric(n, n) : randomSpd(n, n);
      const t = await blockedTridiagonal(m.a, n, engine, panel);
      expect(maxAbs(rebuild(t, n).map((x, i) => x - m.a[i]))).toBeLessThan(tol(n, maxAbs(m.a) * n));
      expect(t.e[n - 1]).toBe(0);
    }
  });

  it('gives ONNX Runtime products equal to the JavaScript reference', async () => {
    const ort = ortTridiagonalEngine(loadOrt(), 2);
    const r = mulberry32(3);
    const m = 45;
    const b = 6;
    const { a } = randomSymmetric(m, 9);
    const u = Float64Array.from({ length: m }, (_, i) => (i < 4 ? 0 : r() - 0.5));
    const v = Float64Array.from({ length: m * b }, () => r() - 0.5);
    const w = Float64Array.from({ length: m * b }, () => r() - 0.5);
    const near = (x: ArrayLike<number>, y: ArrayLike<number>) => maxAbs(Array.from(x, (value, i) => value - y[i]!));
    expect(near(await ort.panelProduct(a, m, u, v, w, b), await jsTridiagonalEngine.panelProduct(a, m, u, v, w, b))).toBeLessThan(1e-13);
    const tail = v.subarray(b * b);
    const wTail = w.subarray(b * b);
    const expected = new Float64Array((m - b) * (m - b));
    await jsTridiagonalEngine.trailingUpdate(a, m, b, tail, wTail, expected);
    // Into the middle of a larger buffer, as the reduction's second buffer is used: nothing written around it.
    const buffer = new Float64Array(expected.length + 20).fill(7);
    await ort.trailingUpdate(a, m, b, tail, wTail, buffer.subarray(10, 10 + expected.length));
    expect(near(buffer.subarray(10, 10 + expected.length), expected)).toBeLessThan(1e-13);
    expect(Array.from(buffer.subarray(0, 10))).toEqual(new Array(10).fill(7));
    expect(Array.from(buffer.subarray(10 + expected.length))).toEqual(new Array(10).fill(7));
    expect(maxAbs(expected)).toBeGreaterThan(0.1);
  });

  it.each(engines)('on %s, symmetricEigenBlocked: the eigenvalues and leading vectors of symmetricEigen, to rounding', async (_, engine) => {
    const m = randomSpd(120, 77);
    const full = symmetricEigen(m.a, m.n);
    const k = 9;
    let seen: Float64Array | undefined;
    const part = await symmetricEigenBlocked(m.a, m.n, (values) => ((seen = values), k), engine);
    expect(maxAbs(part.values.map((x, i) => x - full.values[i]))).toBeLessThan(tol(m.n, maxAbs(full.values)));
    expect(seen).toEqual(part.values);
    expect(residual(m, part.values.slice(0, k), part.vectors)).toBeLessThan(tol(m.n, maxAbs(full.values)));
    for (let j = 0; j < k; j++) {
      const ours = row(part.vectors, m.n, j);
      const theirs = row(full.vectors, m.n, j);
      const sign = ours.reduce((sum, x, i) => sum + x * theirs[i], 0) < 0 ? -1 : 1;
      expect(maxAbs(ours.map((x, i) => sign * x - theirs[i]))).toBeLessThan(1e-10);
    }
  });

  it('takes symmetricEigen\'s own path, bit for bit, for more than n/4 vectors; checks its input as it does', async () => {
    const m = randomSpd(40, 5);
    const counts: number[] = [];
    const many = await symmetricEigenBlocked(m.a, m.n, (values) => (counts.push(values.length), 11), jsTridiagonalEngine);
    expect(many).toEqual(symmetricEigen(m.a, m.n, () => 11));
    expect(counts).toEqual([40, 40]); // told once by each path: the model keeps what the full path computed
    // Allowed to work in its input: the same results, and the full path from the matrix given again.
    const scratch = Float64Array.from(m.a);
    expect(await symmetricEigenBlocked(scratch, m.n, () => 11, jsTridiagonalEngine, () => Float64Array.from(m.a))).toEqual(many);
    expect(scratch).not.toEqual(m.a);
    const few = await symmetricEigenBlocked(m.a, m.n, () => 3, jsTridiagonalEngine);
    expect(await symmetricEigenBlocked(Float64Array.from(m.a), m.n, () => 3, jsTridiagonalEngine, () => m.a)).toEqual(few);
    await expect(symmetricEigenBlocked(Float64Array.of(1, 0, Number.NaN, 1), 2, () => 1, jsTridiagonalEngine)).rejects.toThrow(/\(1, 0\) is not finite: NaN/);
    await expect(symmetricEigenBlocked(new Float64Array(5), 2, () => 1, jsTridiagonalEngine)).rejects.toThrow(/2 x 2 matrix/);
  });
});
