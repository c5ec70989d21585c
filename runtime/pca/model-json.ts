/**
 * The published PCA model file. Field names follow scikit-learn's fitted attributes so a data scientist can
 * load it next to `sklearn.decomposition.PCA` without a mapping table. Numbers are written by JSON.stringify,
 * which prints the shortest decimal that reads back as the same float64: the model round-trips exactly, except
 * the ratio curve, which is stored cumulative (what people read to choose k) and recovered by differences
 * (within 1 ulp of the cumulative sum). The curve covers every feature after a full decomposition, the leading
 * components the fit resolved (k at least) after the leading-eigenpair solver.
 */
import type { PcaModel } from './fit';

const MODEL_FIELDS = [
  'n_components_',
  'n_features_in_',
  'n_samples_',
  'mean_',
  'components_',
  'explained_variance_',
  'explained_variance_ratio_',
  'singular_values_',
  'noise_variance_',
  'cumulative_explained_variance_ratio',
] as const;

export function pcaModelToJson(model: PcaModel, extra: Record<string, unknown>): object {
  // Extra metadata (run id, model preset, ...) must never silently replace a fitted value.
  for (const key of Object.keys(extra)) {
    if ((MODEL_FIELDS as readonly string[]).includes(key)) {
      throw new RangeError(`Extra PCA model metadata may not override the fitted field "${key}"`);
    }
  }
  const p = model.nFeatures;
  const components: number[][] = [];
  for (let c = 0; c < model.nComponents; c++) {
    components.push(Array.from(model.components.subarray(c * p, (c + 1) * p)));
  }
  const cumulative: number[] = [];
  let sum = 0;
  // Rounding in the running sum may pass 1 by an ulp or two; a share of variance never does.
  for (const r of model.allExplainedVarianceRatio) cumulative.push(Math.min(1, (sum += r)));
  return {
    n_components_: model.nComponents,
    n_features_in_: p,
    n_samples_: model.nSamples,
    mean_: Array.from(model.mean),
    components_: components,
    explained_variance_: Array.from(model.explainedVariance),
    explained_variance_ratio_: Array.from(model.explainedVarianceRatio),
    singular_values_: Array.from(model.singularValues),
    noise_variance_: model.noiseVariance,
    cumulative_explained_variance_ratio: cumulative,
    ...extra,
  };
}

/** Reads a model written by pcaModelToJson (already JSON.parse'd); `source` names the file in errors. */
export function pcaModelFromJson(json: unknown, source = 'PCA model JSON'): PcaModel {
  const fail = (field: string, why: string): never => {
    throw new Error(`Invalid ${source}: field "${field}" ${why}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`Invalid ${source}: expected a JSON object`);
  }
  const o = json as Record<string, unknown>;
  const integer = (field: string, min: number): number => {
    const v = o[field];
    if (v === undefined) return fail(field, 'is missing');
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) return fail(field, `must be an integer >= ${min}`);
    return v;
  };
  const vector = (field: string, length: number, v: unknown = o[field]): Float64Array => {
    if (v === undefined) return fail(field, 'is missing');
    if (!Array.isArray(v) || v.length !== length) {
      return fail(field, `must be an array of ${length} numbers${Array.isArray(v) ? ` (got ${v.length})` : ''}`);
    }
    const out = new Float64Array(length);
    for (let i = 0; i < length; i++) {
      const x = v[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) return fail(field, `has a non-numeric value at index ${i}`);
      out[i] = x;
    }
    return out;
  };

  const nComponents = integer('n_components_', 1);
  const nFeatures = integer('n_features_in_', 1);
  const nSamples = integer('n_samples_', 2);
  if (nComponents > Math.min(nFeatures, nSamples)) {
    const max = Math.min(nFeatures, nSamples);
    fail('n_components_', `(${nComponents}) exceeds min(n_features_in_, n_samples_) = ${max}`);
  }
  const mean = vector('mean_', nFeatures);
  const rows = o.components_;
  if (rows === undefined) fail('components_', 'is missing');
  if (!Array.isArray(rows) || rows.length !== nComponents) {
    fail('components_', `must be an array of ${nComponents} rows (n_components_)`);
  }
  const components = new Float64Array(nComponents * nFeatures);
  (rows as unknown[]).forEach((row, c) => components.set(vector(`components_[${c}]`, nFeatures, row), c * nFeatures));
  const explainedVariance = vector('explained_variance_', nComponents);
  const explainedVarianceRatio = vector('explained_variance_ratio_', nComponents);
  const singularValues = vector('singular_values_', nComponents);
  const noiseVariance = o.noise_variance_;
  if (noiseVariance === undefined) fail('noise_variance_', 'is missing');
  if (typeof noiseVariance !== 'number' || !Number.isFinite(noiseVariance) || noiseVariance < 0) {
    fail('noise_variance_', 'must be a non-negative number');
  }
  // The whole curve from a full decomposition, its leading part from the leading-eigenpair solver (k values at least).
  const curve = o.cumulative_explained_variance_ratio;
  if (Array.isArray(curve) && (curve.length < nComponents || curve.length > nFeatures)) {
    fail('cumulative_explained_variance_ratio', `must be an array of ${nComponents} to ${nFeatures} numbers (got ${curve.length})`);
  }
  const cumulative = vector('cumulative_explained_variance_ratio', Array.isArray(curve) ? curve.length : nFeatures);
  const allExplainedVarianceRatio = cumulative.map((c, i) => (i === 0 ? c : c - cumulative[i - 1]));
  return {
    nFeatures,
    nSamples,
    nComponents,
    mean,
    components,
    explainedVariance,
    explainedVarianceRatio,
    allExplainedVarianceRatio,
    singularValues,
    noiseVariance: noiseVariance as number,
  };
}
