import { pMapIterable } from 'p-map';
import { ExitCode, OrchardError } from '../errors';
import { fitPca, type PcaModel } from '../pca/fit';
import type { Reporter } from '../progress';
import { emptyMoments, mergeMoments, type Moments } from '../stats/moments';
import type { RunConfig } from './config';
import { modelIdentityOf, type ExtractMeta, type RunFolder } from './run-folder';

/** Shard statistics read at once: each is 6.3 MB at 1280 features, 13 MB once decoded. */
export const READ_CONCURRENCY = 8;

/**
 * Merges a sequence of statistics as a balanced binary tree, as they arrive: a stack holds at most one partial
 * sum per level (like the carries of a binary counter), so memory is O(log n) moments and the rounding of the
 * result grows with the tree's depth, log₂ n, rather than with n as a left fold's does. The tree's shape
 * depends only on n, so the result does not depend on how fast the inputs arrive.
 */
export class TreeMerge {
  private readonly stack: { moments: Moments; size: number }[] = [];

  constructor(private readonly dim: number) {}

  add(moments: Moments): void {
    let node = { moments, size: 1 };
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.size === node.size) {
      const left = this.stack.pop()!;
      node = { moments: mergeMoments(left.moments, node.moments), size: left.size + node.size };
    }
    this.stack.push(node);
  }

  /** The sum of everything added (the remaining partials, smallest last, merged right to left). */
  result(): Moments {
    let total: Moments | undefined;
    for (let i = this.stack.length - 1; i >= 0; i--) total = total ? mergeMoments(this.stack[i]!.moments, total) : this.stack[i]!.moments;
    return total ?? emptyMoments(this.dim);
  }
}

/**
 * The merged statistics of some shards, read several at once (in order) and merged as a tree. A whole run's for
 * `orchard fit`; a range's when the fit itself is split into tasks (their partials are merged the same way).
 */
export async function mergeShards(folder: RunFolder, metas: readonly ExtractMeta[], dim: number): Promise<Moments> {
  const tree = new TreeMerge(dim);
  for await (const moments of pMapIterable(metas, (meta) => folder.readMoments(meta), { concurrency: READ_CONCURRENCY })) {
    if (moments.dim !== dim) {
      throw new OrchardError(`Shard statistics of ${moments.dim} features do not match the run's ${dim}`, 'ERR_CORRUPT_SHARD');
    }
    tree.add(moments);
  }
  return tree.result();
}

export interface FitResult {
  readonly model: PcaModel;
  readonly seconds: number;
  /** True when an earlier process had already fitted this run (the stored model is used). */
  readonly reused: boolean;
}

/**
 * The fit stage: every shard must be extracted; their statistics are merged as a tree, the covariance is
 * eigen-decomposed and k chosen from the full explained-variance curve. The model is stored (float64 exact) for
 * the projection, which may run elsewhere. A fit already stored is reused: the stage is idempotent.
 */
export async function fitStage(folder: RunFolder, config: RunConfig, metas: readonly ExtractMeta[], reporter: Reporter): Promise<FitResult> {
  const stored = await folder.readFit();
  if (stored) return { model: stored.model, seconds: stored.record.seconds, reused: true };
  const started = performance.now();
  const dim = metas[0]?.dim;
  if (dim === undefined) throw new OrchardError('The run has no shards to fit', 'ERR_TOO_FEW_IMAGES');
  const merged = await mergeShards(folder, metas, dim);
  if (merged.count < 2) {
    throw new OrchardError(`PCA needs at least 2 images, but only ${merged.count} could be processed`, 'ERR_TOO_FEW_IMAGES');
  }
  let model: PcaModel;
  try {
    model = fitPca(merged, config.components);
  } catch (error) {
    if (error instanceof RangeError) throw new OrchardError(error.message, 'ERR_INVALID_PARAMETER', ExitCode.Usage);
    throw error;
  }
  const seconds = (performance.now() - started) / 1000;
  const cumulative = model.explainedVarianceRatio.reduce((sum, value) => sum + value, 0);
  reporter.info(`fit: k=${model.nComponents} explains ${(cumulative * 100).toFixed(2)}% of the variance`);
  const identity = await folder.readExtractedWith();
  await folder.writeFit(model, seconds, metas.length, { ...(identity ? { model: modelIdentityOf(identity) } : {}), run_id: config.runId });
  return { model, seconds, reused: false };
}
