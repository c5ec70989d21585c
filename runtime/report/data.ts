/**
 * The data a run report is drawn from, computed from rows streamed out of pca.csv and errors.csv and from the
 * published PCA model. Nothing here does I/O: build.ts feeds rows in, html.ts draws what comes out.
 *
 * Memory is bounded whatever the size of the run: the scatter keeps a uniform reservoir sample of at most
 * MAX_POINTS_PER_CLASS rows per class (O(classes × cap)), the error list keeps the first MAX_ERRORS_LISTED
 * errors and counts the rest, and each class remembers THUMBNAILS_PER_CLASS keys.
 */
import type { ComponentsSpec } from '../pca/fit';
import { compareLabels } from '../quality/labels';
import { hash32, mulberry32 } from '../random';

/** Scatter points kept per class: a uniform random sample (reservoir sampling) of that class's images. */
export const MAX_POINTS_PER_CLASS = 500;
/**
 * Scatter points kept in all. When classes × MAX_POINTS_PER_CLASS exceeds it (Fruits-360 has over 100
 * classes), every class keeps an equal share, still a uniform sample of the class, so the page stays light.
 */
export const MAX_POINTS_TOTAL = 20_000;
/** Errors listed in the report; the rest are counted (errors.csv has them all). */
export const MAX_ERRORS_LISTED = 1000;
/** Thumbnails shown per class (the first images of the class in pca.csv). */
export const THUMBNAILS_PER_CLASS = 4;
/** The scatter plots use PC1, PC2 and PC3 at most. */
export const SCATTER_COMPONENTS = 3;
/** Seed of the sampling: the same run always gives the same report. */
export const DEFAULT_SAMPLE_SEED = 0x5eed;

export interface ScatterPoint {
  readonly key: string;
  /** The first min(k, SCATTER_COMPONENTS) principal components of the image. */
  readonly pcs: readonly number[];
}

export interface ClassSample {
  /** The class name ('' when the run had --label-from none). */
  readonly label: string;
  /** Every image of the class in pca.csv, sampled or not. */
  readonly count: number;
  /** The sampled points, in pca.csv order. */
  readonly points: readonly ScatterPoint[];
  /** Keys of the first THUMBNAILS_PER_CLASS images of the class. */
  readonly thumbnailKeys: readonly string[];
}

interface ClassState {
  count: number;
  /** Reservoir of { arrival index, point }. */
  reservoir: { index: number; point: ScatterPoint }[];
  thumbnailKeys: string[];
  random: () => number;
}

export interface SamplerOptions {
  readonly capPerClass?: number;
  readonly seed?: number;
  readonly thumbnailsPerClass?: number;
}

/**
 * Per-class reservoir sampling (Vitter's algorithm R) over a stream of rows. Each class draws from its own
 * PRNG seeded by (seed, label), so which rows of a class are kept depends only on that class's rows: the same
 * input gives the same sample, however the classes are interleaved.
 */
export class ClassSampler {
  private readonly classes = new Map<string, ClassState>();
  private readonly cap: number;
  private readonly seed: number;
  private readonly thumbnails: number;
  private total = 0;

  constructor(options: SamplerOptions = {}) {
    this.cap = options.capPerClass ?? MAX_POINTS_PER_CLASS;
    this.seed = options.seed ?? DEFAULT_SAMPLE_SEED;
    this.thumbnails = options.thumbnailsPerClass ?? THUMBNAILS_PER_CLASS;
    if (!Number.isInteger(this.cap) || this.cap < 1) throw new RangeError(`capPerClass must be a positive integer, got ${this.cap}`);
  }

  /** Rows seen so far. */
  get rows(): number {
    return this.total;
  }

  /** `pcs` may be given as a function, called only if the row is kept (most are not, past the cap). */
  add(key: string, label: string, pcs: readonly number[] | (() => readonly number[])): void {
    let state = this.classes.get(label);
    if (!state) {
      state = { count: 0, reservoir: [], thumbnailKeys: [], random: mulberry32(hash32(`${this.seed}/${label}`)) };
      this.classes.set(label, state);
    }
    const index = state.count++;
    this.total += 1;
    if (state.thumbnailKeys.length < this.thumbnails) state.thumbnailKeys.push(key);
    const point = () => ({ key, pcs: (typeof pcs === 'function' ? pcs() : pcs).slice(0, SCATTER_COMPONENTS) });
    if (index < this.cap) {
      state.reservoir.push({ index, point: point() });
      return;
    }
    // Row `index` (0-based) replaces a random kept row with probability cap / (index + 1).
    const slot = Math.floor(state.random() * (index + 1));
    if (slot < this.cap) state.reservoir[slot] = { index, point: point() };
  }

  /**
   * The classes, sorted by label, each with its count, its sampled points (at most capPerClass, and at most an
   * equal share of `totalCap`) in arrival order, and its thumbnail keys.
   */
  result(totalCap = MAX_POINTS_TOTAL): ClassSample[] {
    const labels = [...this.classes.keys()].sort(compareLabels);
    const share = Math.max(1, Math.floor(totalCap / Math.max(labels.length, 1)));
    return labels.map((label) => {
      const state = this.classes.get(label)!;
      let kept = state.reservoir;
      if (kept.length > share) {
        // A uniform subsample of a uniform sample is a uniform sample: partial Fisher-Yates, seeded.
        const random = mulberry32(hash32(`${this.seed}/${label}/share`));
        kept = [...kept];
        for (let i = 0; i < share; i++) {
          const j = i + Math.floor(random() * (kept.length - i));
          [kept[i], kept[j]] = [kept[j]!, kept[i]!];
        }
        kept = kept.slice(0, share);
      }
      const points = [...kept].sort((a, b) => a.index - b.index).map((entry) => entry.point);
      return { label, count: state.count, points, thumbnailKeys: [...state.thumbnailKeys] };
    });
  }
}

/** Images per class, in the order of the classes given. */
export function classCounts(classes: readonly ClassSample[]): { label: string; count: number }[] {
  return classes.map(({ label, count }) => ({ label, count }));
}


/** The fields of pca-model.json the variance curve needs. */
export interface PcaModelCurveFields {
  readonly n_components_: number;
  readonly n_features_in_?: number;
  readonly explained_variance_ratio_?: readonly number[];
  /** The curve, cumulative: one value per feature, or the leading ones the fit resolved (k at least). */
  readonly cumulative_explained_variance_ratio?: readonly number[];
}

export interface VarianceCurve {
  /** Explained variance ratio of components 1..shown. */
  readonly ratio: readonly number[];
  /** Cumulative explained variance ratio of components 1..shown. */
  readonly cumulative: readonly number[];
  /** The chosen number of components. */
  readonly k: number;
  /** Cumulative explained variance ratio at k. */
  readonly explained: number;
  /** The variance target, when the run chose k from a fraction (--variance). */
  readonly target?: number;
  /** Components with a non-zero share of the variance (the rank of the data, at most the feature count). */
  readonly available: number;
  /** Where the model's curve stops short of all the variance (the fit computed the leading shares only). */
  readonly partial?: { readonly components: number; readonly explained: number };
}

/** Components drawn in the scree plot: enough past k to see the curve flatten, never thousands of bars. */
export function curveLength(k: number, available: number): number {
  return Math.min(available, Math.max(k + 10, Math.min(2 * k, 200), 20));
}

/**
 * The scree and cumulative curves from the published model, with the chosen k and (for a --variance run) the
 * target. The per-component ratios are recovered from the cumulative curve by differences.
 */
export function varianceCurve(model: PcaModelCurveFields, spec?: ComponentsSpec): VarianceCurve {
  const k = model.n_components_;
  let cumulative = model.cumulative_explained_variance_ratio;
  if (!cumulative || cumulative.length < k) {
    // Only the kept components are known: the curve stops at k.
    let sum = 0;
    cumulative = (model.explained_variance_ratio_ ?? []).map((r) => (sum += r));
  }
  const ratio = cumulative.map((c, i) => (i === 0 ? c : c - cumulative[i - 1]!));
  // Past the rank of the data the ratios are 0 (or rounding noise): they would only stretch the x axis.
  let available = ratio.length;
  while (available > k && !(ratio[available - 1]! > 1e-12)) available -= 1;
  const shown = curveLength(k, available);
  const last = cumulative[cumulative.length - 1] ?? 0;
  const partial = model.n_features_in_ !== undefined && cumulative.length < model.n_features_in_ && last < 1 - 1e-9 ? { components: cumulative.length, explained: last } : undefined;
  return {
    ratio: ratio.slice(0, shown),
    cumulative: cumulative.slice(0, shown),
    k,
    explained: cumulative[k - 1] ?? 0,
    target: spec?.kind === 'variance' ? spec.fraction : undefined,
    available,
    ...(partial ? { partial } : {}),
  };
}

export interface ErrorEntry {
  readonly key: string;
  readonly reason: string;
}

export interface ErrorList {
  /** The first entries, at most the cap. */
  readonly listed: readonly ErrorEntry[];
  /** Every error, listed or not. */
  readonly total: number;
}

/** Keeps the first `cap` errors of a stream and counts them all. */
export class ErrorCollector {
  private readonly listed: ErrorEntry[] = [];
  private total = 0;

  constructor(private readonly cap = MAX_ERRORS_LISTED) {}

  add(key: string, reason: string): void {
    this.total += 1;
    if (this.listed.length < this.cap) this.listed.push({ key, reason });
  }

  result(): ErrorList {
    return { listed: [...this.listed], total: this.total };
  }
}

/** A point's coordinates rounded to 4 significant digits: plenty for a plot, and a third of the bytes. */
export function roundForPlot(value: number): number {
  return Number.isFinite(value) ? Number(value.toPrecision(4)) : 0;
}
