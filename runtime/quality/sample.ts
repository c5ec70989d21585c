/**
 * The bounded, stratified sample of a run's rows that the label check (labels.ts) works on. Pure: it sees the
 * labels of every row, in run order, and returns the indices of the rows to read.
 *
 * The check costs n² × d multiply-adds (every sampled row against every other, on d components), so the sample
 * is at most MAX_SAMPLE_ROWS rows and at most √(MAX_MULTIPLY_ADDS / d): about a second of work whatever the
 * size of the run. Every class keeps a few rows (MIN_ROWS_PER_CLASS) so that none vanishes from the recall
 * table; the rest is shared in proportion to the classes' sizes, each class drawing its rows uniformly at random
 * from its own seeded generator.
 */
import { hash32, mulberry32 } from '../random';

export const MAX_SAMPLE_ROWS = 5000;
/** Budget of the all-pairs distances, n² × d. */
export const MAX_MULTIPLY_ADDS = 1e9;
/** Rows every class keeps (or all of its rows, when it has fewer). */
export const MIN_ROWS_PER_CLASS = 5;
export const DEFAULT_SAMPLE_SEED = 0x1abe1;

/** Rows sampled from `total` rows of `dim` components. */
export function sampleSize(total: number, dim: number): number {
  return Math.min(total, MAX_SAMPLE_ROWS, Math.floor(Math.sqrt(MAX_MULTIPLY_ADDS / Math.max(dim, 1))));
}

/**
 * Indices (ascending, so in run order) of at most `size` rows, stratified by label. With `size` ≥ the number of
 * rows, every row.
 */
export function stratifiedSample(labels: readonly string[], size: number, seed = DEFAULT_SAMPLE_SEED): number[] {
  if (size >= labels.length) return labels.map((_, i) => i);
  const byClass = new Map<string, number[]>();
  labels.forEach((label, i) => {
    const rows = byClass.get(label);
    if (rows) rows.push(i);
    else byClass.set(label, [i]);
  });
  const classes = [...byClass.entries()];
  // A floor per class, then the rest in proportion to size, by largest remainder.
  const floor = Math.min(MIN_ROWS_PER_CLASS, Math.floor(size / classes.length));
  const quota = classes.map(([, rows]) => Math.min(rows.length, floor));
  let left = size - quota.reduce((a, b) => a + b, 0);
  const spare = classes.map(([, rows], c) => rows.length - quota[c]!);
  const spareTotal = spare.reduce((a, b) => a + b, 0);
  const share = spare.map((s) => (spareTotal ? (left * s) / spareTotal : 0));
  share.forEach((s, c) => (quota[c]! += Math.floor(s)));
  left = size - quota.reduce((a, b) => a + b, 0);
  const byRemainder = share.map((s, c) => ({ c, r: s - Math.floor(s) })).sort((a, b) => b.r - a.r || a.c - b.c);
  for (const { c } of byRemainder) {
    if (left <= 0) break;
    if (quota[c]! < classes[c]![1].length) {
      quota[c]! += 1;
      left -= 1;
    }
  }
  const chosen: number[] = [];
  classes.forEach(([label, rows], c) => {
    // Partial Fisher-Yates with the class's own generator: which rows a class keeps depends on that class only.
    const random = mulberry32(hash32(`${seed}/${label}`));
    const pool = [...rows];
    for (let i = 0; i < quota[c]!; i++) {
      const j = i + Math.floor(random() * (pool.length - i));
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      chosen.push(pool[i]!);
    }
  });
  return chosen.sort((a, b) => a - b);
}
