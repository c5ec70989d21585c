import { ExitCode, OrchardError } from '../errors';
import { fitPca, type ComponentsSpec, type PcaModel } from '../pca/fit';
import { decodeMoments, emptyMoments, mergeMoments, type Moments } from '../stats/moments';
import type { Storage } from '../storage';
import { shardMoments } from './layout';

/**
 * The fit stage: merges every shard's partial statistics (one shard in memory at a time), then
 * eigen-decomposes the covariance and chooses k from the full explained-variance curve.
 */
export async function fitStage(run: Storage, shards: number, dim: number, spec: ComponentsSpec): Promise<PcaModel> {
  let merged: Moments = emptyMoments(dim);
  for (let shard = 0; shard < shards; shard++) {
    const key = shardMoments(shard);
    merged = mergeMoments(merged, decodeMoments(await run.get(key), run.uri(key)));
  }
  if (merged.count < 2) {
    throw new OrchardError(`PCA needs at least 2 images, but only ${merged.count} could be processed`, 'ERR_TOO_FEW_IMAGES');
  }
  try {
    return fitPca(merged, spec);
  } catch (error) {
    if (error instanceof RangeError) throw new OrchardError(error.message, 'ERR_INVALID_PARAMETER', ExitCode.Usage);
    throw error;
  }
}
