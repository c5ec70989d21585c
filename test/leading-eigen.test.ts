import { fitPcaBlocked, fitPcaLeading, LEADING_MIN_FEATURES, type ComponentsSpec, type PcaModel } from '../runtime/pca/fit';
import { BLOCK, jsMatrixProducts, leadingEigen, type MatrixProducts } from '../runtime/pca/leading-eigen';
import { pcaModelFromJson, pcaModelToJson } from '../runtime/pca/model-json';
import { ortMatrixProducts } from '../runtime/pca/ort-products';
import { ortTridiagonalEngine } from '../runtime/pca/ort-tridiagonal';
import { symmetricEigen } from '../runtime/pca/symmetric-eigen';
import { loadOrt } from '../runtime/onnx/runtime';
import { mulberry32 } from '../runtime/random';
import { covariance, momentsOf, type Moments } from '../runtime/stats/moments';

const products = ortMatrixProducts(loadOrt(), 2);
const engine = ortTridiagonalEngine(loadOrt(), 2);

/** A random n x n orthogonal matrix (rows orthonormal), by Gram–Schmidt twice on uniform noise. */
function orthogonal(n: number, seed: number): Float64Array {
  const random = mulberry32(seed);
  const q = Float64Array.from({ length: n * n }, () => random() - 0.5);
  for (let r = 0; r < n; r++) {
    const row = q.subarray(r * n, r * n + n);
    for (let pass = 0; pass < 2; pass++) {
      for (let s = 0; s < r; s++) {
        const other = q.subarray(s * n, s * n + n);
        let dot = 0;
        for (let i = 0; i < n; i++) dot += row[i] * other[i];
        for (let i = 0; i < n; i++) row[i] -= dot * other[i];
      }
    }
    const norm = Math.hypot(...row);
    for (let i = 0; i < n; i++) row[i] /= norm;
  }
  return q;
}

/** Qᵀ diag(values) Q: the symmetric matrix whose eigenvectors are Q's rows. */
function withSpectrum(q: Float64Array, values: readonly number[]): Float64Array {
  const n = values.length;
  const a = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const v = q.subarray(k * n, k * n + n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] += values[k] * v[i] * v[j];
  }
  return a;
}

/** Moments whose covariance is `cov` (count rows, mean 0). */
function momentsWithCovariance(cov: Float64Array, n: number, count: number): Moments {
  return { dim: n, count, mean: new Float64Array(n), comoment: cov.map((x) => x * (count - 1)) };
}

/** The largest difference between rows of two k x n matrices, each row compared up to sign. */
function vectorsApart(a: Float64Array, b: Float64Array, n: number): number {
  let worst = 0;
  for (let r = 0; r < a.length / n; r++) {
    let dot = 0;
    for (let i = 0; i < n; i++) dot += a[r * n + i] * b[r * n + i];
    const sign = dot < 0 ? -1 : 1;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(a[r * n + i] - sign * b[r * n + i]));
  }
  return worst;
}

function expectSameModel(fast: PcaModel, full: PcaModel): void {
  expect(fast.nComponents).toBe(full.nComponents);
  const k = full.nComponents;
  const p = full.nFeatures;
  for (let i = 0; i < k; i++) expect(Math.abs(fast.explainedVariance[i] / full.explainedVariance[i] - 1)).toBeLessThan(1e-12);
  for (let i = 0; i < k; i++) expect(Math.abs(fast.explainedVarianceRatio[i] - full.explainedVarianceRatio[i])).toBeLessThan(1e-13);
  expect(vectorsApart(fast.components, full.components, p)).toBeLessThan(1e-9);
  if (full.noiseVariance === 0) expect(fast.noiseVariance).toBe(0);
  else expect(Math.abs(fast.noiseVariance / full.noiseVariance - 1)).toBeLessThan(1e-9);
  // The curve is the leading part of the full one.
  expect(fast.allExplainedVarianceRatio.length).toBeGreaterThanOrEqual(k);
  expect(fast.allExplainedVarianceRatio.length).toBeLessThanOrEqual(p);
  fast.allExplainedVarianceRatio.forEach((ratio, i) => expect(Math.abs(ratio - full.allExplainedVarianceRatio[i])).toBeLessThan(1e-12));
}

describe('the leading-eigenpair solver (block Lanczos)', () => {
  const n = 300;
  const q = orthogonal(n, 1);
  const decaying = Array.from({ length: n }, (_, i) => 10 * 0.95 ** i);

  it('runs its products on ONNX Runtime as JavaScript computes them, in every form', async () => {
    const random = mulberry32(7);
    const fill = (length: number) => Float64Array.from({ length }, () => random() - 0.5);
    const a = fill(6 * 5);
    const b = fill(5 * 4);
    const c = fill(6 * 4);
    const bt = fill(4 * 5);
    const at = fill(5 * 6);
    const cases: [Parameters<MatrixProducts['product']>, string][] = [
      [[a, 6, 5, b, 5, 4], 'plain'],
      [[a, 6, 5, bt, 4, 5, { transposeB: true }], 'b transposed'],
      [[at, 5, 6, b, 5, 4, { transposeA: true, subtractFrom: c }], 'a transposed, subtracted'],
      [[a, 6, 5, b, 5, 4, { subtractFrom: c }], 'subtracted'],
    ];
    for (const [args, form] of cases) {
      const expected = await jsMatrixProducts.product(...args);
      const actual = await products.product(...args);
      expect({ form, length: actual.length }).toEqual({ form, length: 24 });
      actual.forEach((value, i) => expect(Math.abs(value - expected[i])).toBeLessThan(1e-14));
    }
  });

  it('finds the k leading eigenpairs of a matrix of known spectrum to working precision, the same on either products', async () => {
    const a = withSpectrum(q, decaying);
    const results = [];
    for (const on of [products, jsMatrixProducts]) {
      const found = await leadingEigen(a, n, on, { vectorCount: () => 12 });
      expect(found).toBeDefined();
      results.push(found!);
      expect(found!.vectors).toHaveLength(12 * n);
      expect(found!.values.length).toBeGreaterThanOrEqual(12);
      found!.values.forEach((value, i) => expect(Math.abs(value - decaying[i])).toBeLessThan(1e-13 * decaying[0]));
      expect(vectorsApart(found!.vectors, q.subarray(0, 12 * n), n)).toBeLessThan(1e-10);
    }
    expect(vectorsApart(results[0]!.vectors, results[1]!.vectors, n)).toBeLessThan(1e-11);
    // The same input gives the same output: the starting block is seeded.
    const again = await leadingEigen(a, n, products, { vectorCount: () => 12 });
    expect(again!.vectors).toEqual(results[0]!.vectors);
    expect(a).toEqual(withSpectrum(q, decaying)); // left unchanged
  });

  it('finds every copy of a leading eigenvalue repeated fewer times than its block, and gives up on one repeated more', async () => {
    const fewer = [12, 12, 12, ...decaying.slice(3)];
    const found = await leadingEigen(withSpectrum(q, fewer), n, products, { vectorCount: () => 5 });
    expect(found).toBeDefined();
    found!.values.slice(0, 5).forEach((value, i) => expect(Math.abs(value - fewer[i]!)).toBeLessThan(1e-12 * 10));
    // The three vectors span the eigenspace of 12: each is orthogonal to every other eigenvector.
    for (let j = 0; j < 3; j++) {
      for (let other = 3; other < 20; other++) {
        let dot = 0;
        for (let i = 0; i < n; i++) dot += found!.vectors[j * n + i] * q[other * n + i];
        expect(Math.abs(dot)).toBeLessThan(1e-10);
      }
    }

    const more = [...Array.from({ length: BLOCK + 2 }, () => 12), ...decaying.slice(BLOCK + 2)];
    expect(await leadingEigen(withSpectrum(q, more), n, products, { vectorCount: () => 5 })).toBeUndefined();
  });

  it('gives up early, not at the largest space, when its pairs stop converging', async () => {
    // 40 rows of 1,280 features, all 39 components: the smallest pairs stall at about 1e-12 of the largest.
    const random = mulberry32(3);
    const rows = Float32Array.from({ length: 40 * 1280 }, () => random() - 0.5);
    const cov = covariance(momentsOf(rows, 40, 1280));
    let largest = 0;
    const counting: MatrixProducts = {
      product: (...args) => {
        largest = Math.max(largest, args[1]);
        return products.product(...args);
      },
    };
    expect(await leadingEigen(cov, 1280, counting, { vectorCount: () => 39 })).toBeUndefined();
    expect(largest).toBeLessThan(200); // the space allowed is 640
  });

  it("stops when the caller says the full path should decide, or the space allowed is used up", async () => {
    const a = withSpectrum(q, decaying);
    let calls = 0;
    expect(await leadingEigen(a, n, products, { vectorCount: () => (calls++, 'full') })).toBeUndefined();
    expect(calls).toBe(1);
    calls = 0;
    expect(await leadingEigen(a, n, products, { vectorCount: () => (calls++, 'more'), maxDimension: 80 })).toBeUndefined();
    expect(calls).toBeGreaterThan(1);
  });
});

describe('fitPcaLeading', () => {
  const p = 320;
  expect(p).toBeGreaterThanOrEqual(LEADING_MIN_FEATURES);

  /** count rows of p features with a decaying spectrum and some noise, as CNN features have. */
  function rows(count: number, seed: number): Float32Array {
    const random = mulberry32(seed);
    const q = orthogonal(p, seed + 1);
    const scales = Array.from({ length: p }, (_, i) => 3 * 0.97 ** i + 0.01);
    const out = new Float32Array(count * p);
    for (let r = 0; r < count; r++) {
      for (let c = 0; c < p; c++) {
        const z = (random() + random() + random() - 1.5) * scales[c]!;
        const direction = q.subarray(c * p, c * p + p);
        for (let i = 0; i < p; i++) out[r * p + i] += z * direction[i];
      }
      for (let i = 0; i < p; i++) out[r * p + i] += 1 + i / p; // a mean
    }
    return out;
  }

  const many = momentsOf(rows(1500, 3), 1500, p);
  const few = momentsOf(rows(60, 4), 60, p); // fewer rows than features: rank 59

  it.each([
    ['a count of components', many, { kind: 'components', count: 20 }],
    ['a share of variance', many, { kind: 'variance', fraction: 0.6 }],
    ['a share of variance, fewer rows than features', few, { kind: 'variance', fraction: 0.8 }],
  ] as [string, Moments, ComponentsSpec][])('fits the model the full reduction fits, for %s', async (_, moments, spec) => {
    const fast = await fitPcaLeading(moments, spec, products, engine);
    const full = await fitPcaBlocked(moments, spec, engine);
    expectSameModel(fast, full);
    // It did take the leading path: its curve stops where its solver stopped.
    expect(fast.allExplainedVarianceRatio.length).toBeLessThan(p);
    // And the model file keeps the shorter curve.
    const back = pcaModelFromJson(JSON.parse(JSON.stringify(pcaModelToJson(fast, {}))));
    expect(back.allExplainedVarianceRatio).toHaveLength(fast.allExplainedVarianceRatio.length);
    back.allExplainedVarianceRatio.forEach((ratio, i) => expect(ratio).toBeCloseTo(fast.allExplainedVarianceRatio[i]!, 14));
  });

  it('has no noise variance left when k reaches the rank, as the full path', async () => {
    // The trace less the k values would leave rounding (about 1e-12 of them) here.
    const random = mulberry32(11);
    const four = momentsOf(Float32Array.from({ length: 4 * 1280 }, () => random() - 0.5), 4, 1280);
    const fast = await fitPcaLeading(four, { kind: 'components', count: 3 }, products, engine);
    expect(fast.allExplainedVarianceRatio.length).toBeLessThan(1280); // the leading path
    expect(fast.noiseVariance).toBe(0);
    expectSameModel(fast, await fitPcaBlocked(four, { kind: 'components', count: 3 }, engine));
  });

  it('leaves a share of variance met within rounding to the full path, whose curve covers every feature', async () => {
    const full = await fitPcaBlocked(many, { kind: 'variance', fraction: 0.6 }, engine);
    let exact = 0;
    for (let i = 0; i < 15; i++) exact += full.allExplainedVarianceRatio[i]!;
    const spec = { kind: 'variance', fraction: exact } as const;
    const fast = await fitPcaLeading(many, spec, products, engine);
    expect(fast.allExplainedVarianceRatio).toHaveLength(p);
    expect(fast.nComponents).toBe((await fitPcaBlocked(many, spec, engine)).nComponents);
  });

  it('leaves few features, and more components than an eighth of them, to the full path', async () => {
    const small = momentsOf(rows(200, 5).subarray(0, 200 * 100), 200, 100);
    expect((await fitPcaLeading(small, { kind: 'components', count: 5 }, products, engine)).allExplainedVarianceRatio).toHaveLength(100);
    const wide = await fitPcaLeading(many, { kind: 'components', count: p / 8 + 1 }, products, engine);
    expect(wide.allExplainedVarianceRatio).toHaveLength(p);
    expectSameModel(wide, await fitPcaBlocked(many, { kind: 'components', count: p / 8 + 1 }, engine));
  });

  it('takes the covariance as given: a matrix of known spectrum comes back with its eigenvalues', async () => {
    const q = orthogonal(p, 9);
    const spectrum = Array.from({ length: p }, (_, i) => 0.9 ** i);
    const model = await fitPcaLeading(momentsWithCovariance(withSpectrum(q, spectrum), p, 1000), { kind: 'components', count: 8 }, products, engine);
    const total = spectrum.reduce((a, b) => a + b, 0);
    model.explainedVariance.forEach((value, i) => expect(Math.abs(value - spectrum[i]!)).toBeLessThan(1e-13));
    model.explainedVarianceRatio.forEach((ratio, i) => expect(Math.abs(ratio - spectrum[i]! / total)).toBeLessThan(1e-14));
    expect(model.noiseVariance).toBeCloseTo(spectrum.slice(8).reduce((a, b) => a + b, 0) / (p - 8), 13);
    // Sanity of the reference: the dense solver agrees on the matrix.
    expect(symmetricEigen(withSpectrum(q, spectrum), p, () => 0).values[0]).toBeCloseTo(1, 12);
  });
});
