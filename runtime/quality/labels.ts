/**
 * How well a run's features separate its labels, and which labels look wrong. Pure maths on a sample of PCA
 * rows (sample.ts picks it): no I/O.
 *
 * - Accuracy: k-fold cross-validated 1-nearest-neighbour accuracy, with exactly scikit-learn's fold split
 *   (`cross_val_score(KNeighborsClassifier(1), X, y, cv=5)` uses StratifiedKFold without shuffling), and its
 *   figure: the mean of the folds' accuracies. Per-class recall and the confusions come from the same
 *   predictions.
 * - Suspicious labels: an image more than half of whose VOTE_NEIGHBOURS nearest neighbours (leave-one-out, in
 *   the whole sample) carry one other label; and an image unusually far from its own class's centroid (a robust z-score
 *   over the class's distances), with the class whose centroid is nearest.
 *
 * What this cannot see: a whole folder that is consistently wrong. Its images are each other's nearest
 * neighbours, so from the features alone it looks like a class of its own.
 */

/** Folds of the cross-validation (scikit-learn's cv=5). */
export const CV_FOLDS = 5;
/** Neighbours that vote on each image's label. */
export const VOTE_NEIGHBOURS = 10;
/** A class's distance to its centroid past median + FAR_Z × 1.4826 × MAD counts as far. */
export const FAR_Z = 4;
/** Classes with fewer sampled rows are not checked for far images (their spread is not known). */
export const FAR_MIN_ROWS = 8;
/** Suspicious images listed in the manifest (the most suspicious first). */
export const MAX_SUSPICIOUS = 200;
/** Confused pairs listed. */
export const MAX_CONFUSED_PAIRS = 10;

export interface LabelledRows {
  readonly keys: readonly string[];
  readonly labels: readonly string[];
  /** n × dim, row-major. */
  readonly values: Float32Array | Float64Array;
  readonly dim: number;
}

export interface ClassRecall {
  readonly label: string;
  /** Rows of the class in the sample. */
  readonly rows: number;
  /** Rows of the class whose nearest neighbour (in the other folds) has the same label. */
  readonly correct: number;
  readonly recall: number;
}

/** `count` rows labelled `label` had their nearest neighbour labelled `predicted`. */
export interface Confusion {
  readonly label: string;
  readonly predicted: string;
  readonly count: number;
}

export interface ConfusedPair {
  readonly a: string;
  readonly b: string;
  /** a taken for b, and b taken for a. */
  readonly aAsB: number;
  readonly bAsA: number;
}

export interface SuspiciousLabel {
  readonly key: string;
  readonly label: string;
  /** The class the image looks like. */
  readonly looksLike: string;
  /**
   * `neighbours`: most of its nearest neighbours carry `looksLike`; `far`: far from its own class, and nearest
   * to `looksLike`'s centroid.
   */
  readonly reason: 'neighbours' | 'far';
  /** `neighbours`: how many of the VOTE_NEIGHBOURS carry `looksLike`. `far`: the robust z-score of its distance. */
  readonly score: number;
}

export type LabelQuality =
  | { readonly status: 'absent'; readonly reason: string }
  | {
      readonly status: 'assessed';
      /** Rows in the sample, of how many in the run, and the components each row has. */
      readonly sample: { readonly rows: number; readonly of: number; readonly components: number };
      readonly folds: number;
      /** Mean over the folds of the 1-NN accuracy (scikit-learn's cross_val_score(...).mean()). */
      readonly accuracy: number;
      /** Share of the largest class: what always answering that class would score. */
      readonly majorityShare: number;
      readonly classes: readonly ClassRecall[];
      /** Every non-zero off-diagonal cell of the confusion matrix, largest first. */
      readonly confusions: readonly Confusion[];
      readonly confusedPairs: readonly ConfusedPair[];
      readonly neighbours: number;
      /** Suspicious images found (the list holds at most MAX_SUSPICIOUS). */
      readonly suspiciousCount: number;
      readonly suspicious: readonly SuspiciousLabel[];
    };

/**
 * scikit-learn's StratifiedKFold(n_splits).split without shuffling, as the test fold of each row: classes
 * numbered by first appearance, each fold's share of a class dealt round-robin over the sorted labels, and each
 * class's rows given to folds 0, 1, … in blocks, in row order.
 */
export function stratifiedFolds(labels: readonly string[], nSplits: number): Int32Array {
  const order = new Map<string, number>();
  const encoded = labels.map((label) => {
    let c = order.get(label);
    if (c === undefined) order.set(label, (c = order.size));
    return c;
  });
  const counts = new Array<number>(order.size).fill(0);
  for (const c of encoded) counts[c]! += 1;
  // Class c holds positions [start, start + count) of the sorted labels; position p goes to fold p % nSplits.
  const blocks: number[][] = [];
  let start = 0;
  for (const count of counts) {
    const perFold = Array.from({ length: nSplits }, (_, f) => {
      const first = start + ((f - (start % nSplits) + nSplits) % nSplits);
      return first < start + count ? Math.floor((start + count - 1 - first) / nSplits) + 1 : 0;
    });
    blocks.push(perFold.flatMap((n, f) => new Array<number>(n).fill(f)));
    start += count;
  }
  const next = new Array<number>(order.size).fill(0);
  return Int32Array.from(encoded, (c) => blocks[c]![next[c]!++]!);
}

/** Labels sort as a person expects ("Apple 2" before "Apple 10"), the same on every machine. */
export function compareLabels(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true, sensitivity: 'variant' }) || (a < b ? -1 : a > b ? 1 : 0);
}

/** The label check on `rows` (of `total` rows in the run). */
export function assessLabels(rows: LabelledRows, total = rows.keys.length): LabelQuality {
  const { labels, values, dim, keys } = rows;
  const n = labels.length;
  const names = [...new Set(labels)].sort(compareLabels);
  if (names.length === 1 && names[0] === '') return { status: 'absent', reason: 'the run has no labels (--label-from none)' };
  if (names.length < 2) return { status: 'absent', reason: `every image has the same label (${names[0] ?? 'none'}): there is nothing to separate` };
  const classOf = new Map(names.map((name, c) => [name, c]));
  const y = Int32Array.from(labels, (label) => classOf.get(label)!);
  const counts = new Array<number>(names.length).fill(0);
  for (const c of y) counts[c]! += 1;
  const folds = Math.min(CV_FOLDS, Math.max(...counts));
  if (folds < 2) return { status: 'absent', reason: 'no class has two sampled images' };
  const fold = stratifiedFolds(labels, folds);

  const k = Math.min(VOTE_NEIGHBOURS, n - 1);
  const { bestJ, neighbours } = nearestNeighbours(values, dim, fold, k);
  const predicted = Int32Array.from(bestJ, (j) => (j >= 0 ? y[j]! : -1));

  // Accuracy as scikit-learn reports it: the mean of the folds' accuracies.
  const foldRight = new Array<number>(folds).fill(0);
  const foldSize = new Array<number>(folds).fill(0);
  const correct = new Array<number>(names.length).fill(0);
  const cells = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    foldSize[fold[i]!]! += 1;
    if (predicted[i] === y[i]) {
      foldRight[fold[i]!]! += 1;
      correct[y[i]!]! += 1;
    } else if (predicted[i]! >= 0) {
      const cell = y[i]! * names.length + predicted[i]!;
      cells.set(cell, (cells.get(cell) ?? 0) + 1);
    }
  }
  const used = foldSize.map((size, f) => ({ size, right: foldRight[f]! })).filter((f) => f.size > 0);
  const accuracy = used.reduce((sum, f) => sum + f.right / f.size, 0) / used.length;
  const confusions = [...cells.entries()]
    .map(([cell, count]) => ({ label: names[Math.floor(cell / names.length)]!, predicted: names[cell % names.length]!, count }))
    .sort((a, b) => b.count - a.count || a.label.localeCompare(b.label) || a.predicted.localeCompare(b.predicted));
  const confusedPairs = confusedPairsOf(confusions);

  const suspicious = [...byNeighbours(y, neighbours, k, keys, names), ...farFromClass(rows, y, names, counts)];
  const seen = new Set<string>();
  const unique = suspicious.filter((s) => !seen.has(s.key) && (seen.add(s.key), true));
  return {
    status: 'assessed',
    sample: { rows: n, of: total, components: dim },
    folds,
    accuracy,
    majorityShare: Math.max(...counts) / n,
    classes: names.map((label, c) => ({ label, rows: counts[c]!, correct: correct[c]!, recall: counts[c] ? correct[c]! / counts[c]! : 0 })),
    confusions,
    confusedPairs,
    neighbours: k,
    suspiciousCount: unique.length,
    suspicious: unique.slice(0, MAX_SUSPICIOUS),
  };
}

/**
 * For every row r, of the squared Euclidean distances d(r, j) (summed over the components in order, in float64):
 * the nearest row j in another fold (`bestJ`, -1 if none) and the k nearest rows in the whole sample
 * (`neighbours`, n × k, nearest first), every tie going to the lower j — what a brute-force search offering j in
 * ascending order keeps.
 *
 * The result is that of comparing every pair, but most pairs are never summed in full. Each row looks at the
 * others in order of their first component (the one that spreads the rows most), outwards from its own, while its
 * thresholds (its k-th distance so far, its nearest in another fold so far) only ever fall: the first term of
 * d(r, j) alone, (x_r0 - x_j0)², grows as the sweep moves outwards, and a partial sum of non-negative terms never
 * exceeds the full sum (in floating point too: rounding is monotone), so once the first term is above both
 * thresholds, every row further out in that direction is farther, and a pair whose partial sum passes them is
 * dropped unfinished. Only strictly larger distances are dropped, so ties are decided exactly as a full search does.
 */
export function nearestNeighbours(values: Float32Array | Float64Array, dim: number, fold: Int32Array, k: number): { bestJ: Int32Array; neighbours: Int32Array } {
  const n = fold.length;
  const x = Float64Array.from(values); // float32 to float64 is exact: the same sums as on `values`
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => x[a * dim]! - x[b * dim]! || a - b);
  const bestJ = new Int32Array(n).fill(-1);
  const neighbours = new Int32Array(n * k);
  const nearD = new Float64Array(k);
  const nearJ = new Int32Array(k);
  // How often, while summing, a pair is checked against the thresholds.
  const CHECK = 4;
  for (let p = 0; p < n; p++) {
    const r = order[p]!;
    const rb = r * dim;
    const fr = fold[r]!;
    let filled = 0;
    let best = Infinity;
    let bestIndex = -1;
    // A row is worth summing while a distance up to `limit` could change r's lists.
    let limit = Infinity;
    let left = p - 1;
    let right = p + 1;
    while (left >= 0 || right < n) {
      // The nearer side in the first component goes first: the thresholds fall fastest.
      let fromLeft: boolean;
      if (left < 0) fromLeft = false;
      else if (right >= n) fromLeft = true;
      else fromLeft = x[rb]! - x[order[left]! * dim]! <= x[order[right]! * dim]! - x[rb]!;
      const j = order[fromLeft ? left : right]!;
      const jb = j * dim;
      const first = x[rb]! - x[jb]!;
      let sum = first * first;
      if (sum > limit) {
        // Every row further out on this side is at least as far in the first component.
        if (fromLeft) left = -1;
        else right = n;
        continue;
      }
      if (fromLeft) left -= 1;
      else right += 1;
      let c = 1;
      for (let next = CHECK; c < dim; next += CHECK) {
        const stop = next < dim ? next : dim;
        for (; c < stop; c++) {
          const diff = x[rb + c]! - x[jb + c]!;
          sum += diff * diff;
        }
        if (sum > limit) break;
      }
      if (sum > limit) continue;
      // Nearest in another fold; ties to the lower index.
      if (fold[j] !== fr && (sum < best || (sum === best && j < bestIndex))) {
        best = sum;
        bestIndex = j;
      }
      // The k nearest, kept sorted by (distance, index).
      if (filled < k || sum < nearD[k - 1]! || (sum === nearD[k - 1]! && j < nearJ[k - 1]!)) {
        let at = filled < k ? filled++ : k - 1;
        while (at > 0 && (nearD[at - 1]! > sum || (nearD[at - 1]! === sum && nearJ[at - 1]! > j))) {
          nearD[at] = nearD[at - 1]!;
          nearJ[at] = nearJ[at - 1]!;
          at -= 1;
        }
        nearD[at] = sum;
        nearJ[at] = j;
      }
      // Worth summing: below the k-th distance, or below the nearest in another fold (while either is unknown, anything).
      limit = filled < k ? Infinity : Math.max(nearD[k - 1]!, best);
    }
    bestJ[r] = bestIndex;
    neighbours.set(nearJ.subarray(0, k), r * k);
  }
  return { bestJ, neighbours };
}

/** The pairs of classes most often taken one for the other, both directions summed. */
function confusedPairsOf(confusions: readonly Confusion[]): ConfusedPair[] {
  const pairs = new Map<string, { a: string; b: string; aAsB: number; bAsA: number }>();
  for (const { label, predicted, count } of confusions) {
    const [a, b] = label < predicted ? [label, predicted] : [predicted, label];
    const id = JSON.stringify([a, b]);
    const pair = pairs.get(id) ?? { a, b, aAsB: 0, bAsA: 0 };
    if (label === a) pair.aAsB += count;
    else pair.bAsA += count;
    pairs.set(id, pair);
  }
  return [...pairs.values()].sort((p, q) => q.aAsB + q.bAsA - (p.aAsB + p.bAsA) || p.a.localeCompare(q.a)).slice(0, MAX_CONFUSED_PAIRS);
}

/** Images more than half of whose neighbours carry one other label, with that label. */
function byNeighbours(y: Int32Array, neighbours: Int32Array, k: number, keys: readonly string[], names: readonly string[]): SuspiciousLabel[] {
  const found: SuspiciousLabel[] = [];
  const votes = new Map<number, number>();
  for (let i = 0; i < y.length; i++) {
    votes.clear();
    for (let m = 0; m < k; m++) {
      const c = y[neighbours[i * k + m]!]!;
      votes.set(c, (votes.get(c) ?? 0) + 1);
    }
    const own = votes.get(y[i]!) ?? 0;
    if (own * 2 >= k) continue;
    let lead = -1;
    let leadVotes = 0;
    for (const [c, v] of votes) if (c !== y[i] && (v > leadVotes || (v === leadVotes && c < lead))) [lead, leadVotes] = [c, v];
    // "Mostly another label": one other label holds a majority of the neighbours.
    if (leadVotes * 2 <= k) continue;
    found.push({ key: keys[i]!, label: names[y[i]!]!, looksLike: names[lead]!, reason: 'neighbours', score: leadVotes });
  }
  return found.sort((a, b) => b.score - a.score || a.key.localeCompare(b.key));
}

/** Images far from their class's centroid (robust z-score above FAR_Z), with the nearest other centroid's class. */
function farFromClass(rows: LabelledRows, y: Int32Array, names: readonly string[], counts: readonly number[]): SuspiciousLabel[] {
  const { values, dim, keys } = rows;
  const centroids = new Float64Array(names.length * dim);
  for (let i = 0; i < y.length; i++) for (let d = 0; d < dim; d++) centroids[y[i]! * dim + d]! += values[i * dim + d]!;
  for (let c = 0; c < names.length; c++) for (let d = 0; d < dim; d++) centroids[c * dim + d]! /= Math.max(counts[c]!, 1);
  const toCentroid = (i: number, c: number) => {
    let sum = 0;
    for (let d = 0; d < dim; d++) sum += (values[i * dim + d]! - centroids[c * dim + d]!) ** 2;
    return Math.sqrt(sum);
  };
  const own = Float64Array.from(y, (c, i) => toCentroid(i, c));
  const found: SuspiciousLabel[] = [];
  for (let c = 0; c < names.length; c++) {
    if (counts[c]! < FAR_MIN_ROWS) continue;
    const members = [...y.keys()].filter((i) => y[i] === c);
    const distances = members.map((i) => own[i]!);
    const median = medianOf(distances);
    const mad = 1.4826 * medianOf(distances.map((d) => Math.abs(d - median)));
    if (!(mad > 0)) continue;
    for (const i of members) {
      const z = (own[i]! - median) / mad;
      if (z <= FAR_Z) continue;
      let nearest = -1;
      let nearestD = Infinity;
      for (let other = 0; other < names.length; other++) {
        if (other === c || counts[other] === 0) continue;
        const d = toCentroid(i, other);
        if (d < nearestD) [nearest, nearestD] = [other, d];
      }
      found.push({ key: keys[i]!, label: names[c]!, looksLike: names[nearest]!, reason: 'far', score: Math.round(z * 100) / 100 });
    }
  }
  return found.sort((a, b) => b.score - a.score || a.key.localeCompare(b.key));
}

function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The check in one line, for the run summaries: `94.8% 5-fold 1-NN accuracy on 520 images of 13 classes; …`. */
export function labelSummary(quality: LabelQuality): string {
  if (quality.status === 'absent') return `not checked: ${quality.reason}`;
  const weakest = [...quality.classes].sort((a, b) => a.recall - b.recall)[0]!;
  const sample = quality.sample.rows < quality.sample.of ? `a sample of ${quality.sample.rows} of ${quality.sample.of}` : `${quality.sample.rows}`;
  return (
    `${(quality.accuracy * 100).toFixed(1)}% ${quality.folds}-fold 1-NN accuracy on ${sample} images of ${quality.classes.length} classes; ` +
    `${weakest.recall === 1 ? 'recall 100% in every class' : `lowest recall ${weakest.label} ${(weakest.recall * 100).toFixed(0)}%`}; ${quality.suspiciousCount} suspicious label${quality.suspiciousCount === 1 ? '' : 's'} (see the report)`
  );
}
