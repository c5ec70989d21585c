/**
 * PCA from merged moments: eigen-decompose the sample covariance and keep the top k directions.
 *
 * The results follow scikit-learn's PCA (svd_solver='full') field by field, which is the reference the quality
 * bar is measured against: same ddof, same rule for choosing k from a variance fraction, same noise variance.
 * Working from the covariance rather than an SVD of the data is what lets the fit stage read O(dim^2) merged
 * state instead of every feature row; the price is that eigenvalues below ~1e-16 of the largest are rounding
 * noise (they are clamped at 0), which does not move any ratio by more than that.
 */
import { covariance, type Moments } from '../stats/moments';
import type { TridiagonalEngine } from './blocked-tridiagonal';
import { leadingEigen, type LeadingCount, type MatrixProducts } from './leading-eigen';
import { symmetricEigen, symmetricEigenBlocked, type SymmetricEigen } from './symmetric-eigen';

export type ComponentsSpec =
  | { readonly kind: 'components'; readonly count: number }
  | { readonly kind: 'variance'; readonly fraction: number };

export interface PcaModel {
  readonly nFeatures: number;
  readonly nSamples: number;
  readonly nComponents: number;
  /** nFeatures */
  readonly mean: Float64Array;
  /** nComponents x nFeatures row-major unit vectors; the largest-magnitude entry of each is positive. */
  readonly components: Float64Array;
  /** nComponents eigenvalues of the covariance (ddof = 1), descending. */
  readonly explainedVariance: Float64Array;
  /** nComponents, each over the total variance (the covariance's trace). */
  readonly explainedVarianceRatio: Float64Array;
  /**
   * The curve, for reports: all nFeatures ratios (zeros past the rank) from a full decomposition; from the
   * leading-eigenpair solver (`fitPcaLeading`), the leading ratios it resolved, k of them at least.
   */
  readonly allExplainedVarianceRatio: Float64Array;
  /** sqrt(eigenvalue * (nSamples - 1)): the singular values of the centred data matrix, as scikit-learn reports. */
  readonly singularValues: Float64Array;
  /** Mean of the discarded eigenvalues up to min(nSamples, nFeatures), 0 if none (scikit-learn's definition). */
  readonly noiseVariance: number;
}

/** Rejects a malformed spec, and a component count the data cannot provide, before any expensive work. */
export function validateComponentsSpec(spec: ComponentsSpec, maxComponents: number): void {
  if (spec.kind === 'variance') {
    const f = spec.fraction;
    // 1 is excluded on purpose: with rounding, "100 % of the variance" may never be reached, and if it is, it
    // means "all components", which --components says unambiguously.
    if (typeof f !== 'number' || !Number.isFinite(f) || f <= 0 || f >= 1) {
      throw new RangeError(`Expected a fraction strictly between 0 and 1 for --variance but got ${f}`);
    }
  } else if (spec.kind === 'components') {
    const c = spec.count;
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1) {
      throw new RangeError(`Expected an integer >= 1 for --components but got ${c}`);
    }
    if (c > maxComponents) {
      throw new RangeError(
        `--components ${c} is more than the data can give: at most min(samples, features) = ${maxComponents}`,
      );
    }
  } else {
    throw new RangeError(`Unknown components spec kind ${JSON.stringify((spec as { kind: unknown }).kind)}`);
  }
}

/**
 * scikit-learn's rule: for a fraction, the smallest k whose cumulative ratio is strictly greater than the
 * fraction (np.searchsorted(cumsum, f, side='right') + 1); for a count, the count itself. Either way at most
 * maxComponents (= min(nSamples, nFeatures)); a count above that is a RangeError.
 */
export function chooseComponents(ratios: Float64Array, spec: ComponentsSpec, maxComponents: number): number {
  validateComponentsSpec(spec, maxComponents);
  const limit = Math.min(maxComponents, ratios.length);
  if (spec.kind === 'components') return spec.count;
  let cumulative = 0;
  for (let k = 0; k < limit; k++) {
    cumulative += ratios[k];
    if (cumulative > spec.fraction) return k + 1;
  }
  // Only reachable when rounding keeps the cumulative sum at or below a fraction just under 1: keep everything.
  return limit;
}

export function fitPca(moments: Moments, spec: ComponentsSpec): PcaModel {
  const fit = startFit(moments, spec);
  return fit.finish(symmetricEigen(fit.cov, moments.dim, fit.vectorCount));
}

/**
 * `fitPca` with the blocked reduction, its matrix products on `engine` (ONNX Runtime's: ort-tridiagonal.ts):
 * the same model to rounding, the eigen-solve about twice as fast at 1280 features.
 */
export async function fitPcaBlocked(moments: Moments, spec: ComponentsSpec, engine: TridiagonalEngine): Promise<PcaModel> {
  const fit = startFit(moments, spec);
  // The covariance is this fit's own: the reduction works in it, and computes it again in the rare case it needs it.
  return fit.finish(await symmetricEigenBlocked(fit.cov, moments.dim, fit.vectorCount, engine, () => covariance(moments)));
}

/**
 * Below this many features a full decomposition is cheap (a few ms at 256) and the Krylov space would be most of
 * the matrix: the leading-eigenpair solver is not tried.
 */
export const LEADING_MIN_FEATURES = 256;

/**
 * A share of variance this close to the fraction asked for is too close to call on the leading solver's values
 * (they are exact to about 1e-15 of the largest, the full path's to its own rounding): the full path decides.
 */
const CLOSE_CALL = 1e-9;

/**
 * The fit that keeps k components of many features: the k leading eigenpairs by block Lanczos (leading-eigen.ts,
 * its products on `products`), k chosen from them and the total variance (the covariance's trace), so that no
 * full decomposition is needed: 0.1–0.3 s at 1,280 features where `fitPcaBlocked` takes 0.7–1 s. The same
 * model to rounding (eigenvalues within about 1e-15 of the largest, components within about 1e-12); the curve
 * (`allExplainedVarianceRatio`) then holds the leading ratios the solver resolved, not all nFeatures. Falls back
 * to `fitPcaBlocked` when the solver cannot decide or would not pay: few features, k above an eighth of them or
 * the rank, a variance fraction met within 1e-9, or pairs that do not converge in the space allowed.
 */
export async function fitPcaLeading(moments: Moments, spec: ComponentsSpec, products: MatrixProducts, engine: TridiagonalEngine): Promise<PcaModel> {
  const fit = startFit(moments, spec);
  // A non-finite entry is refused by the full path, with its place in the covariance named.
  if (moments.dim >= LEADING_MIN_FEATURES && fit.cov.every(Number.isFinite)) {
    const leading = await leadingEigen(fit.cov, moments.dim, products, { vectorCount: fit.leadingCount });
    if (leading) return fit.finishLeading(leading.values, leading.vectors);
  }
  return fit.finish(await symmetricEigenBlocked(fit.cov, moments.dim, fit.vectorCount, engine, () => covariance(moments)));
}

/** What every fit does around the eigen-solve: the checks and covariance first, the model from its result after. */
function startFit(moments: Moments, spec: ComponentsSpec) {
  const p = moments.dim;
  const n = moments.count;
  const maxComponents = Math.min(n, p);
  validateComponentsSpec(spec, maxComponents);
  const cov = covariance(moments); // throws on fewer than 2 rows

  let total = 0;
  for (let i = 0; i < p; i++) total += cov[i * p + i];
  if (!(total > 0)) {
    throw new RangeError(`PCA needs some variance but all ${p} features are constant over ${n} rows`);
  }

  // Exact symmetric decomposition (Householder tridiagonalisation + implicit QL), O(p^3), eigenvalues descending.
  // k depends on the spectrum only, so the solver is told it as soon as the eigenvalues are known and builds
  // just the k eigenvectors wanted. Rounding can leave tiny negative eigenvalues on a positive semi-definite
  // matrix: clamp them, a variance is never negative.
  let eigen = new Float64Array(0);
  let allExplainedVarianceRatio = new Float64Array(0);
  let k = 0;
  // The centred data of n rows has rank at most n - 1: eigenvalues past it are rounding noise, and so are
  // negative ones. Both are zero here, and the ratios are shares of what remains, so that they sum to 1 as
  // scikit-learn's do (its total is the sum of its explained variances), and the curve never passes 1.
  const rank = Math.min(n - 1, p);
  const vectorCount = (values: Float64Array) => {
    eigen = values.map((v, i) => (i < rank ? Math.max(0, v) : 0));
    const sum = eigen.reduce((a, b) => a + b, 0);
    allExplainedVarianceRatio = Float64Array.from(eigen, (v) => v / sum);
    k = chooseComponents(allExplainedVarianceRatio, spec, maxComponents);
    return k;
  };

  // The leading solver's choice of k: the ratios over the trace (the sum of every eigenvalue), as the full path's
  // over the sum of its eigenvalues; k no larger than an eighth of the features (past that its space nears the
  // matrix's size, and the full path is faster) nor the rank (directions past it are any basis of a null space).
  const leadingLimit = Math.min(rank, Math.floor(p / 8));
  const leadingCount = (ritz: Float64Array): LeadingCount => {
    if (spec.kind === 'components') return spec.count <= leadingLimit ? spec.count : 'full';
    // No eigenvalue exceeds the largest: when even leadingLimit of them cannot reach the fraction, k is past the
    // limit (a flat spectrum), and the full path decides at once.
    if ((leadingLimit * ritz[0]) / total < spec.fraction) return 'full';
    let cumulative = 0;
    for (let i = 0; i < ritz.length && i < leadingLimit; i++) {
      const before = cumulative;
      cumulative += Math.max(0, ritz[i]) / total;
      if (cumulative > spec.fraction) {
        return cumulative - spec.fraction < CLOSE_CALL || spec.fraction - before < CLOSE_CALL ? 'full' : i + 1;
      }
    }
    return ritz.length >= leadingLimit ? 'full' : 'more';
  };
  const finishLeading = (values: Float64Array, vectors: Float64Array): PcaModel => {
    eigen = values.map((v) => Math.max(0, v));
    allExplainedVarianceRatio = Float64Array.from(eigen, (v) => v / total);
    k = vectors.length / p;
    return finish({ values, vectors }, total);
  };

  const finish = ({ vectors }: SymmetricEigen, trace?: number): PcaModel => {
    const components = new Float64Array(k * p);
    for (let c = 0; c < k; c++) {
      const row = c * p;
      components.set(vectors.subarray(row, row + p), row); // row c of vectors is the eigenvector of eigen[c]
      let pivot = 0;
      for (let j = 1; j < p; j++) if (Math.abs(components[row + j]) > Math.abs(components[row + pivot])) pivot = j;
      // Eigenvectors are only defined up to sign; fix it so the same data always gives the same model.
      if (components[row + pivot] < 0) for (let j = 0; j < p; j++) components[row + j] = -components[row + j];
    }

    const explainedVariance = eigen.slice(0, k);
    let discarded = 0;
    if (trace === undefined) {
      for (let i = k; i < maxComponents; i++) discarded += eigen[i];
    } else {
      // Every eigenvalue sums to the trace: what the k components leave is the rest of it; nothing, when they
      // reach the rank (the rest would be rounding).
      discarded = trace;
      for (let i = 0; i < k; i++) discarded -= eigen[i];
      discarded = k >= rank ? 0 : Math.max(0, discarded);
    }
    return {
      nFeatures: p,
      nSamples: n,
      nComponents: k,
      mean: Float64Array.from(moments.mean),
      components,
      explainedVariance,
      explainedVarianceRatio: allExplainedVarianceRatio.slice(0, k),
      allExplainedVarianceRatio,
      singularValues: Float64Array.from(explainedVariance, (v) => Math.sqrt(v * (n - 1))),
      noiseVariance: k < maxComponents ? discarded / (maxComponents - k) : 0,
    };
  };
  return { cov, vectorCount, finish, leadingCount, finishLeading };
}
