import { chooseComponents, fitPca, fitPcaBlocked, type PcaModel } from '../runtime/pca/fit';
import { jsTridiagonalEngine } from '../runtime/pca/blocked-tridiagonal';
import { ortTridiagonalEngine } from '../runtime/pca/ort-tridiagonal';
import { projectRows } from '../runtime/pca/project';
import { pcaModelFromJson, pcaModelToJson } from '../runtime/pca/model-json';
import { initTf } from '../runtime/model/backend';
import { emptyMoments, momentsOf } from '../runtime/stats/moments';
import { tensorCoMoment } from '../runtime/stats/tensor-comoment';
import { ortCoMoment } from '../runtime/stats/ort-comoment';
import { loadOrt } from '../runtime/onnx/runtime';
import { compareAll, fixtureRows, loadFixture, shardedMoments, type Differences } from './fixtures/compare-pca';

const fixture = loadFixture();

describe('PCA against scikit-learn (test/fixtures/pca-fixture.json)', () => {
  let results: Differences[];
  beforeAll(async () => {
    results = await compareAll(fixture);
    // The measured figures, for the record (regenerate with: npx tsx test/fixtures/compare-pca.ts).
    console.log(
      `PCA vs scikit-learn ${fixture.sklearn_version}:\n` +
        results
          .map(
            (d) =>
              `  ${d.case}: k ${d.kOurs}/${d.kSklearn}, ratio abs ${d.ratioAbs.toExponential(2)}, ` +
              `variance rel ${d.varianceRel.toExponential(2)}, components abs ${d.componentsAbs.toExponential(2)}, ` +
              `noise rel ${d.noiseRel.toExponential(2)}, projection abs ${d.projectionAbs.toExponential(2)}`,
          )
          .join('\n'),
    );
  });

  it('covers the cases it should', () => {
    expect(results.map((d) => d.case)).toEqual([
      'n_components=10',
      'n_components=0.95',
      `n_components=0.95, first ${fixture.few_rows} rows`,
    ]);
    // A variance fraction that lands on a single component would not test the rule.
    expect(fixture.variance_0_95.n_components_).toBeGreaterThan(5);
  });

  /** The runtime issue's tolerances: ratios within 1e-6, components equal up to sign. */
  function expectLikeSklearn(d: Differences): void {
    expect(d.kOurs).toBe(d.kSklearn);
    expect(d.ratioAbs).toBeLessThan(1e-6);
    expect(d.varianceRel).toBeLessThan(1e-6);
    expect(d.singularRel).toBeLessThan(1e-6);
    expect(d.componentsAbs).toBeLessThan(1e-6);
    expect(d.noiseRel).toBeLessThan(1e-6);
    expect(d.meanAbs).toBeLessThan(1e-9);
    // Outputs are float32: about 7 significant digits of projections of magnitude ~10.
    expect(d.projectionAbs).toBeLessThan(1e-5);
    if (!Number.isNaN(d.curveAbs)) expect(d.curveAbs).toBeLessThan(1e-6);
  }

  it.each([0, 1, 2])('case %i: same k, ratios, variances, components (up to sign), noise and mean', (i) => {
    expectLikeSklearn(results[i]);
  });

  it.each([0, 1, 2])(
    "case %i with the tfjs engine's co-moment kernel (float32 matMul on the wasm backend): within the same tolerances",
    async (i) => {
      expectLikeSklearn((await compareAll(fixture, tensorCoMoment((await initTf('wasm')).tf)))[i]);
    },
  );

  it.each([0, 1, 2])(
    "case %i with the onnx engine's co-moment kernel (float64 Gemm on ONNX Runtime): within the same tolerances",
    async (i) => {
      expectLikeSklearn((await compareAll(fixture, ortCoMoment(loadOrt(), 2)))[i]);
    },
  );

  it.each([0, 1, 2])(
    'case %i fitted by the blocked reduction, its products on ONNX Runtime (the pipeline\'s fit): within the same tolerances',
    async (i) => {
      const engine = ortTridiagonalEngine(loadOrt(), 2);
      expectLikeSklearn((await compareAll(fixture, ortCoMoment(loadOrt(), 2), (moments, spec) => fitPcaBlocked(moments, spec, engine)))[i]);
    },
  );

  it.each([0, 1, 2])('case %i fitted by the blocked reduction in JavaScript: within the same tolerances', async (i) => {
    expectLikeSklearn((await compareAll(fixture, undefined, (moments, spec) => fitPcaBlocked(moments, spec, jsTridiagonalEngine)))[i]);
  });

  it('returns unit components with their largest entry positive, and a descending spectrum', () => {
    const p = fixture.n_features;
    const rows = fixtureRows(fixture);
    const model = fitPca(momentsOf(rows, fixture.n_samples, p), { kind: 'components', count: 10 });
    for (let c = 0; c < model.nComponents; c++) {
      const v = model.components.subarray(c * p, (c + 1) * p);
      let norm = 0;
      let largest = 0;
      for (const x of v) {
        norm += x * x;
        if (Math.abs(x) > Math.abs(largest)) largest = x;
      }
      expect(Math.sqrt(norm)).toBeCloseTo(1, 12);
      expect(largest).toBeGreaterThan(0);
      if (c > 0) expect(model.explainedVariance[c]).toBeLessThanOrEqual(model.explainedVariance[c - 1]);
    }
    const total = model.allExplainedVarianceRatio.reduce((a, b) => a + b, 0);
    expect(total).toBeCloseTo(1, 12);
    expect(model.allExplainedVarianceRatio).toHaveLength(p);
  });

  it('fits the same model whatever the sharding', async () => {
    const p = fixture.n_features;
    const n = fixture.n_samples;
    const rows = fixtureRows(fixture);
    const spec = { kind: 'variance', fraction: 0.95 } as const;
    const one = fitPca(momentsOf(rows, n, p), spec);
    const many = fitPca(await shardedMoments(rows, n, p, [0, 3, 4, 4, 250, 599]), spec);
    expect(many.nComponents).toBe(one.nComponents);
    for (let i = 0; i < one.components.length; i++) expect(many.components[i]).toBeCloseTo(one.components[i], 10);
  });
});

describe('chooseComponents', () => {
  const ratios = Float64Array.from([0.5, 0.25, 0.125, 0.125]);

  it('takes the smallest k whose cumulative ratio is strictly above the fraction (as sklearn)', () => {
    expect(chooseComponents(ratios, { kind: 'variance', fraction: 0.5 }, 4)).toBe(2); // exactly at a boundary
    expect(chooseComponents(ratios, { kind: 'variance', fraction: 0.4999 }, 4)).toBe(1);
    expect(chooseComponents(ratios, { kind: 'variance', fraction: 0.75 }, 4)).toBe(3);
    expect(chooseComponents(ratios, { kind: 'variance', fraction: 0.875 }, 4)).toBe(4);
  });

  it("agrees with sklearn's choice on the fixture's full curve", () => {
    const curve = Float64Array.from(fixture.full_explained_variance_ratio_);
    expect(chooseComponents(curve, { kind: 'variance', fraction: 0.95 }, 64)).toBe(fixture.variance_0_95.n_components_);
  });

  it('never returns more than maxComponents, even when rounding keeps the sum under the fraction', () => {
    expect(chooseComponents(ratios, { kind: 'variance', fraction: 0.9 }, 2)).toBe(2);
    const short = Float64Array.from([0.3, 0.3, 0.3]); // sums to 0.9 < 0.95
    expect(chooseComponents(short, { kind: 'variance', fraction: 0.95 }, 3)).toBe(3);
  });

  it('returns a count as given, and rejects one the data cannot provide', () => {
    expect(chooseComponents(ratios, { kind: 'components', count: 3 }, 4)).toBe(3);
    expect(chooseComponents(ratios, { kind: 'components', count: 4 }, 4)).toBe(4);
    expect(() => chooseComponents(ratios, { kind: 'components', count: 5 }, 4)).toThrow(RangeError);
    expect(() => chooseComponents(ratios, { kind: 'components', count: 5 }, 4)).toThrow(
      /--components 5 .*at most .* = 4/,
    );
  });

  it.each([0, 1, 1.5, -0.2, Number.NaN, Number.POSITIVE_INFINITY])('rejects the fraction %p naming --variance', (f) => {
    expect(() => chooseComponents(ratios, { kind: 'variance', fraction: f }, 4)).toThrow(RangeError);
    expect(() => chooseComponents(ratios, { kind: 'variance', fraction: f }, 4)).toThrow(/--variance/);
  });

  it.each([0, -1, 2.5, Number.NaN])('rejects the count %p naming --components', (c) => {
    expect(() => chooseComponents(ratios, { kind: 'components', count: c }, 4)).toThrow(/--components/);
  });
});

describe('fitPca input checks', () => {
  it('rejects too many components before doing any decomposition', () => {
    const rows = fixtureRows(fixture, 5);
    expect(() => fitPca(momentsOf(rows, 5, fixture.n_features), { kind: 'components', count: 10 })).toThrow(
      /--components 10 .*= 5/,
    );
  });

  it('needs two rows and some variance', () => {
    expect(() => fitPca(emptyMoments(3), { kind: 'variance', fraction: 0.5 })).toThrow(RangeError);
    const constant = Float32Array.from([1, 2, 3, 1, 2, 3, 1, 2, 3]);
    expect(() => fitPca(momentsOf(constant, 3, 3), { kind: 'components', count: 1 })).toThrow(/constant/);
  });
});

describe('projectRows', () => {
  it('projects hand-computable data', () => {
    const model: PcaModel = {
      nFeatures: 3,
      nSamples: 4,
      nComponents: 2,
      mean: Float64Array.from([1, 1, 1]),
      components: Float64Array.from([1, 0, 0, 0, Math.SQRT1_2, Math.SQRT1_2]),
      explainedVariance: Float64Array.from([2, 1]),
      explainedVarianceRatio: Float64Array.from([0.5, 0.25]),
      allExplainedVarianceRatio: Float64Array.from([0.5, 0.25, 0.25]),
      singularValues: Float64Array.from([Math.sqrt(6), Math.sqrt(3)]),
      noiseVariance: 1,
    };
    const out = projectRows(Float32Array.from([3, 1, 1, 1, 2, 4]), 2, model);
    expect(out).toBeInstanceOf(Float32Array);
    expect(Array.from(out)).toEqual([2, 0, 0, Math.fround(4 * Math.SQRT1_2)]);
    expect(projectRows(new Float32Array(0), 0, model)).toHaveLength(0);
    expect(() => projectRows(new Float32Array(5), 2, model)).toThrow(/2 rows x 3 features = 6 values/);
  });
});

describe('PCA model JSON', () => {
  const p = fixture.n_features;
  const model = fitPca(momentsOf(fixtureRows(fixture), fixture.n_samples, p), { kind: 'variance', fraction: 0.95 });

  it('uses scikit-learn field names, the full cumulative curve and the extra metadata', () => {
    const json = pcaModelToJson(model, { run_id: 'r1', variance: 0.95 }) as Record<string, unknown>;
    expect(json).toMatchObject({
      n_components_: model.nComponents,
      n_features_in_: p,
      n_samples_: fixture.n_samples,
      run_id: 'r1',
      variance: 0.95,
    });
    expect(json.components_).toHaveLength(model.nComponents);
    expect((json.components_ as number[][])[0]).toHaveLength(p);
    const cumulative = json.cumulative_explained_variance_ratio as number[];
    expect(cumulative).toHaveLength(p);
    expect(cumulative[p - 1]).toBeCloseTo(1, 12);
    expect(() => pcaModelToJson(model, { mean_: [] })).toThrow(/mean_/);
  });

  it('round-trips through JSON text', () => {
    const back = pcaModelFromJson(JSON.parse(JSON.stringify(pcaModelToJson(model, { run_id: 'r1' }))));
    const { allExplainedVarianceRatio, ...rest } = back;
    const { allExplainedVarianceRatio: original, ...expected } = model;
    expect(rest).toEqual(expected); // exact: JSON numbers keep every float64 bit
    for (let i = 0; i < p; i++) expect(Math.abs(allExplainedVarianceRatio[i] - original[i])).toBeLessThan(1e-15);
  });

  it('names the missing or invalid field', () => {
    const good = JSON.parse(JSON.stringify(pcaModelToJson(model, {}))) as Record<string, unknown>;
    const without = (field: string) => {
      const copy = { ...good };
      delete copy[field];
      return copy;
    };
    expect(() => pcaModelFromJson(without('mean_'), 'out/pca-model.json')).toThrow(
      /out\/pca-model\.json: field "mean_" is missing/,
    );
    expect(() => pcaModelFromJson(without('noise_variance_'))).toThrow(/"noise_variance_" is missing/);
    const rows = good.components_ as number[][];
    const shortRow = { ...good, components_: rows.map((r, i) => (i === 1 ? r.slice(1) : r)) };
    expect(() => pcaModelFromJson(shortRow)).toThrow(/"components_\[1\]" must be an array of 64 numbers \(got 63\)/);
    expect(() => pcaModelFromJson({ ...good, n_components_: 1.5 })).toThrow(/"n_components_" must be an integer/);
    expect(() => pcaModelFromJson({ ...good, explained_variance_: ['x'] })).toThrow(/"explained_variance_"/);
    expect(() => pcaModelFromJson({ ...good, mean_: [...(good.mean_ as number[]).slice(1), null] })).toThrow(
      /"mean_" has a non-numeric value at index 63/,
    );
    expect(() => pcaModelFromJson([])).toThrow(/expected a JSON object/);
    // A curve may stop past k (the leading-eigenpair solver's), not before it nor past the features.
    const curve = good.cumulative_explained_variance_ratio as number[];
    const k = good.n_components_ as number;
    expect(pcaModelFromJson({ ...good, cumulative_explained_variance_ratio: curve.slice(0, k) }).allExplainedVarianceRatio).toHaveLength(k);
    expect(() => pcaModelFromJson({ ...good, cumulative_explained_variance_ratio: curve.slice(0, k - 1) })).toThrow(
      new RegExp(`"cumulative_explained_variance_ratio" must be an array of ${k} to 64 numbers \\(got ${k - 1}\\)`),
    );
    expect(() => pcaModelFromJson({ ...good, cumulative_explained_variance_ratio: [...curve, 1] })).toThrow(/of \d+ to 64 numbers \(got 65\)/);
  });
});
