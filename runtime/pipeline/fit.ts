import pMap, { pMapIterable } from 'p-map';
import { ExitCode, OrchardError } from '../errors';
import { loadOrt } from '../onnx/runtime';
import { fitPca, fitPcaLeading, type ComponentsSpec, type PcaModel } from '../pca/fit';
import { ortMatrixProducts } from '../pca/ort-products';
import { ortTridiagonalEngine } from '../pca/ort-tridiagonal';
import type { Reporter } from '../progress';
import { emptyMoments, mergeMoments, type Moments } from '../stats/moments';
import type { RunConfig } from './config';
import { modelIdentityOf, type ExtractMeta, type RunFolder } from './run-folder';

/** Shard statistics read at once: each is 6.3 MB at 1280 features, 13 MB once decoded. */
export const READ_CONCURRENCY = 8;

/**
 * Shards per merge group, when the fit is split into tasks (`mergeGroupStage`, one per group, then the fit over
 * the groups): 64 shards of statistics, 400 MB to read, is seconds for one task; a million shards make 16,000
 * groups, still one fit. A power of two, so that merging the groups' sums as a tree gives the very tree
 * `TreeMerge` builds over all the shards: the fitted model is bit for bit the same whichever way it was merged.
 */
export const MERGE_GROUP = 64;

/** The merge groups of a run of `shards` shards (none when one task merges them all at once). */
export function mergeGroups(shards: number): number[] {
  return shards > MERGE_GROUP ? Array.from({ length: Math.ceil(shards / MERGE_GROUP) }, (_, group) => group) : [];
}

/**
 * Merges a sequence of statistics as a balanced binary tree, as they arrive: a stack holds at most one partial
 * sum per level (like the carries of a binary counter), so memory is O(log n) moments and the rounding of the
 * result grows with the tree's depth, log₂ n, rather than with n as a left fold's does. The tree's shape
 * depends only on n, so the result does not depend on how fast the inputs arrive.
 */
export class TreeMerge {
  /** `owned`: the node's arrays are the tree's to overwrite (a merge's result, or an input given as owned). */
  private readonly stack: { moments: Moments; size: number; owned: boolean }[] = [];

  constructor(private readonly dim: number) {}

  /**
   * `owned`: nothing else uses these moments, so a merge may write into their arrays rather than allocate new
   * ones (the same values); otherwise they are left untouched.
   */
  add(moments: Moments, owned = false): void {
    let node = { moments, size: 1, owned };
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.size === node.size) {
      const left = this.stack.pop()!;
      node = { moments: mergeMoments(left.moments, node.moments, left.owned), size: left.size + node.size, owned: true };
    }
    this.stack.push(node);
  }

  /** The sum of everything added (the remaining partials, smallest last, merged right to left). */
  result(): Moments {
    let total: Moments | undefined;
    for (let i = this.stack.length - 1; i >= 0; i--) {
      const node = this.stack[i]!;
      total = total ? mergeMoments(node.moments, total, node.owned) : node.moments;
    }
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
    tree.add(moments, true); // decoded for this merge alone
  }
  return tree.result();
}

/** The shards' metas of one merge group. */
function groupMetas(metas: readonly ExtractMeta[], group: number): readonly ExtractMeta[] {
  return metas.slice(group * MERGE_GROUP, (group + 1) * MERGE_GROUP);
}

/** The shards of one merge group. */
export function groupShards(shards: number, group: number): number[] {
  const first = group * MERGE_GROUP;
  return Array.from({ length: Math.max(0, Math.min(MERGE_GROUP, shards - first)) }, (_, i) => first + i);
}

/**
 * One merge group's statistics, stored for the fit (`_work/fit/01-NNNNN.moments.bin`). Only the group's shards
 * are read. Idempotent: a group already stored is left as it is.
 */
export async function mergeGroupStage(folder: RunFolder, shards: number, group: number): Promise<void> {
  const chosen = groupShards(shards, group);
  if (chosen.length === 0) throw new OrchardError(`Merge group ${group} has no shards (the run has ${shards})`, 'ERR_INVALID_PARAMETER', ExitCode.Usage);
  const members = await pMap(chosen, (shard) => folder.requireExtracted(shard), { concurrency: READ_CONCURRENCY });
  const dim = members[0]!.dim;
  if (await folder.hasMerge(1, group, dim)) return;
  await folder.writeMerge(1, group, await mergeShards(folder, members, dim));
}

/**
 * Every shard's statistics merged: as one tree over the shards, or, past MERGE_GROUP shards, as a tree over the
 * groups' sums — those a merge task stored, the others computed here — which is the same tree.
 */
async function mergeAll(folder: RunFolder, metas: readonly ExtractMeta[], dim: number): Promise<Moments> {
  const groups = mergeGroups(metas.length);
  if (groups.length === 0) return mergeShards(folder, metas, dim);
  const tree = new TreeMerge(dim);
  for (const group of groups) tree.add((await folder.readMerge(1, group)) ?? (await mergeShards(folder, groupMetas(metas, group), dim)), true);
  return tree.result();
}

/**
 * The fit on ONNX Runtime's float64 products where onnxruntime-node loads (the leading eigenpairs by block
 * Lanczos, else the blocked reduction), else in JavaScript alone; whatever engine extracted the features. The
 * same model to rounding either way.
 */
export function fitOn(merged: Moments, spec: ComponentsSpec, threads: number): Promise<PcaModel> {
  let runtime;
  try {
    runtime = loadOrt();
  } catch {
    return Promise.resolve(fitPca(merged, spec));
  }
  return fitPcaLeading(merged, spec, ortMatrixProducts(runtime, threads), ortTridiagonalEngine(runtime, threads));
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
  const merged = await mergeAll(folder, metas, dim);
  if (merged.count < 2) {
    throw new OrchardError(`PCA needs at least 2 images, but only ${merged.count} could be processed`, 'ERR_TOO_FEW_IMAGES');
  }
  let model: PcaModel;
  try {
    model = await fitOn(merged, config.components, config.threads);
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
