import { OnnxGraphBuilder } from '../onnx/graph-builder';
import { createSession, type OrtRuntime, type OrtSession } from '../onnx/runtime';
import { symmetrise } from './blocked-comoment';
import type { AsyncCoMomentKernel } from './moments';

/**
 * Rows per product: ONNX Runtime holds a chunk's rows as float64 three times over (cast, centred, cut into
 * column blocks), 63 MB for 2048 × 1280; chunks keep that bounded whatever the shard size, and their products
 * are added up in float64. (Smaller chunks were measured to leave the peak no lower: 512 rows gave a 4,000-row
 * shard a higher one, the allocator keeping what many calls freed.)
 */
export const CHUNK_ROWS = 2048;

/**
 * The co-moment on ONNX Runtime (the onnx engine): Dᵀ D of the rows centred in float64, by one float64 Gemm per
 * chunk (MLAS, every core), the chunks' products added up in float64. As exact as the float64 JavaScript kernel
 * (the same sums in another order), and at 1280 features and 4096 rows about 0.16 s against 1.4 s in JavaScript
 * and 0.45 s for tfjs's float32 blocks on WebAssembly. The float32 rows go to the graph as they are and are cast
 * and centred there: the float64 values `blockedCoMoment` would compute, without a JavaScript pass or copy. The
 * session is created on first use and kept for the run.
 */
export function ortCoMoment(runtime: OrtRuntime, threads: number, chunkRows = CHUNK_ROWS): AsyncCoMomentKernel {
  if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new RangeError(`Expected a positive block size but got ${chunkRows}`);
  const sessions = new Map<number, Promise<OrtSession>>();
  const { Tensor } = runtime.ort;
  return async (rows, n, dim, mean) => {
    let session = sessions.get(dim);
    if (!session) {
      // Its intermediates (about 75 MB at 2048 rows) are needed once per shard: kept in the arena, they raised a
      // 20,000-image run's resident set from the first shard's end on (375 → 460 MB between shards, peak 524 MB;
      // given back, 380–395 and 458 MB). Allocating them per run costs 0.33 → 0.38 CPU-s per 4096-row shard.
      session = createSession(runtime, gramGraph(dim), { threads, releaseMemory: true });
      sessions.set(dim, session);
    }
    const centre = new Tensor('float64', mean, [dim]);
    // The running sum goes in with each chunk and comes out with its product added, into the other buffer
    // (a pre-allocated output): no 13 MB output to allocate and copy, no JavaScript pass, per chunk.
    const sums = [new Float64Array(dim * dim), new Float64Array(dim * dim)];
    let current = 0;
    for (let r0 = 0; r0 < n; r0 += chunkRows) {
      const b = Math.min(chunkRows, n - r0);
      const feeds = { rows: new Tensor('float32', rows.subarray(r0 * dim, (r0 + b) * dim), [b, dim]), mean: centre, sum: new Tensor('float64', sums[current]!, [dim, dim]) };
      current = 1 - current;
      await (await session).run(feeds, { y: new Tensor('float64', sums[current]!, [dim, dim]) });
    }
    const out = sums[current]!;
    return symmetrise(out, dim);
  };
}

/**
 * Column blocks of the product: xᵀx is symmetric, so of its PARTS x PARTS blocks only those on and below the
 * diagonal are multiplied (10 of 16: 62.5 % of the flops of one Gemm); those above are their transposes.
 */
const PARTS = 4;

/**
 * y = sum + xᵀx for x = double(rows) - mean, [rows, dim] (rows float32, mean float64): x cut into column blocks x_i, the Gemm x_iᵀ x_j (transA) for i ≥ j, the
 * blocks above the diagonal transposed from those below, and all of it concatenated into the dim x dim matrix.
 */
function gramGraph(dim: number): Uint8Array {
  const graph = new OnnxGraphBuilder();
  graph.reserve('rows', 'mean', 'sum', 'x', 'y');
  graph.node('Sub', [graph.node('Cast', ['rows'], { to: 11 /* DOUBLE */ }, 'wide'), 'mean'], {}, 'x', 'x');
  const parts = Math.min(PARTS, dim);
  const edges = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * dim) / parts));
  const axis = graph.int64s('axis', [1]);
  const columns = edges.slice(0, -1).map((start, i) => graph.node('Slice', ['x', graph.int64s('start', [start]), graph.int64s('end', [edges[i + 1]!]), axis], {}, 'x_part'));
  const lower = new Map<string, string>();
  for (let i = 0; i < parts; i++) for (let j = 0; j <= i; j++) lower.set(`${i},${j}`, graph.node('Gemm', [columns[i]!, columns[j]!], { transA: 1 }, 'block'));
  const block = (i: number, j: number) => (i >= j ? lower.get(`${i},${j}`)! : graph.node('Transpose', [lower.get(`${j},${i}`)!], { perm: [1, 0] }, 'block_t'));
  const stripes = Array.from({ length: parts }, (_, j) => graph.node('Concat', Array.from({ length: parts }, (_, i) => block(i, j)), { axis: 0 }, 'stripe'));
  graph.node('Add', ['sum', graph.node('Concat', stripes, { axis: 1 }, 'gram')], {}, 'y', 'y');
  return graph.buildWithInputs(
    [
      { name: 'rows', dims: ['n', dim], type: 'float32' },
      { name: 'mean', dims: [dim], type: 'float64' },
      { name: 'sum', dims: [dim, dim], type: 'float64' },
    ],
    { name: 'y', dims: [dim, dim], type: 'float64' },
    'gram',
  );
}
