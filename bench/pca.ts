import * as fs from 'node:fs';
import type { Projector } from '../runtime/pca/project';
import { fitOn } from '../runtime/pipeline/fit';
import { mulberry32 } from '../runtime/random';
import { mergeMoments, momentsWith, type AsyncCoMomentKernel, type Moments } from '../runtime/stats/moments';

/**
 * rows x dim non-negative features that look like pooled ReLU activations (a rank-40 signal plus noise,
 * clipped at 0), written to `file` as little-endian float32 for the Python side to read the same values.
 */
export function synthFeatures(rows: number, dim: number, file: string): Float32Array {
  const rand = mulberry32(1234);
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const rank = 40;
  const loadings = new Float32Array(rank * dim);
  for (let r = 0; r < rank; r++) {
    const weight = 1 / (1 + r * 0.35);
    for (let j = 0; j < dim; j++) loadings[r * dim + j] = gauss() * weight * 0.4;
  }
  const base = Float32Array.from({ length: dim }, () => 0.2 + 0.6 * rand());
  const out = new Float32Array(rows * dim);
  const z = new Float32Array(rank);
  for (let i = 0; i < rows; i++) {
    for (let r = 0; r < rank; r++) z[r] = gauss();
    const o = i * dim;
    for (let j = 0; j < dim; j++) {
      let v = base[j]! + 0.05 * gauss();
      for (let r = 0; r < rank; r++) v += z[r]! * loadings[r * dim + j]!;
      out[o + j] = v > 0 ? v : 0;
    }
  }
  fs.writeFileSync(file, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
  return out;
}

export interface PcaMeasure {
  readonly seconds: number;
  readonly momentsS: number;
  readonly fitS: number;
  readonly projectS: number;
}

/**
 * orchard's PCA as the pipeline runs it: per-shard moments (the engine's kernel), merge, the fit stage's fit (the
 * blocked reduction on ONNX Runtime where it loads) with k components, project.
 */
export async function measurePca(
  kernels: { readonly coMoment: AsyncCoMomentKernel; readonly project: Projector },
  rows: Float32Array,
  n: number,
  dim: number,
  k: number,
  shardRows: number,
  threads: number,
): Promise<PcaMeasure> {
  const { coMoment, project } = kernels;
  const t0 = performance.now();
  let merged: Moments | undefined;
  for (let start = 0; start < n; start += shardRows) {
    const count = Math.min(shardRows, n - start);
    const shard = await momentsWith(rows.subarray(start * dim, (start + count) * dim), count, dim, coMoment);
    merged = merged ? mergeMoments(merged, shard) : shard;
  }
  const t1 = performance.now();
  const model = await fitOn(merged!, { kind: 'components', count: k }, threads);
  const t2 = performance.now();
  let checksum = 0;
  for (let start = 0; start < n; start += shardRows) {
    const count = Math.min(shardRows, n - start);
    checksum += (await project(rows.subarray(start * dim, (start + count) * dim), count, model))[0]!;
  }
  const t3 = performance.now();
  if (!Number.isFinite(checksum)) throw new Error('PCA projection produced non-finite values');
  return { seconds: (t3 - t0) / 1000, momentsS: (t1 - t0) / 1000, fitS: (t2 - t1) / 1000, projectS: (t3 - t2) / 1000 };
}
