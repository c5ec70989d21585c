import { OnnxGraphBuilder } from '../onnx/graph-builder';
import { createSession, type OrtRuntime, type OrtSession } from '../onnx/runtime';
import { mirrorTriangle } from './mirror';
import type { AsyncCoMomentKernel } from './moments';

/**
 * Rows per product: ONNX Runtime holds a chunk's rows as float64 three times over (cast, centred, cut into
 * column blocks), 31 MB for 1024 × 1280 (63 MB at 2048 rows, which made each shard's end the run's peak: a
 * 4,000-image run's peak 607–610 MB then, 574–585 at 1024 rows). The chunks' products are added up in float64,
 * in JavaScript (a million additions per chunk, about a millisecond). Per 4096-row shard, on a quiet machine:
 * 0.18–0.21 s at 2048 rows, 0.23–0.24 at 1024, 0.25–0.29 at 512.
 */
export const CHUNK_ROWS = 1024;

/**
 * The co-moment on ONNX Runtime (the onnx engine): Dᵀ D of the rows centred in float64, by float64 Gemms per
 * chunk (MLAS, every core), the chunks' products added up in float64. As exact as the float64 JavaScript kernel
 * (the same sums in another order), and at 1280 features and 4096 rows about 0.2 s against 1.4 s in JavaScript
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
      // Its intermediates are needed once per shard: kept in the arena, they raised a 20,000-image run's resident
      // set from the first shard's end on (375 → 460 MB between shards, peak 524 MB; given back, 380–395 and
      // 458 MB). Allocating them per run costs 0.33 → 0.38 CPU-s per 4096-row shard.
      session = createSession(runtime, gramGraph(dim), { threads, releaseMemory: true });
      sessions.set(dim, session);
    }
    const centre = new Tensor('float64', mean, [dim]);
    const blocks = lowerBlocks(dim);
    // The blocks' products come into buffers allocated once per call (pre-allocated outputs), and are added
    // into the lower triangle of the sum here.
    const outputs = blocks.map((block) => new Float64Array(block.rows * block.columns));
    const fetches = Object.fromEntries(blocks.map((block, b) => [block.name, new Tensor('float64', outputs[b]!, [block.rows, block.columns])]));
    const sum = new Float64Array(dim * dim);
    for (let r0 = 0; r0 < n; r0 += chunkRows) {
      const b = Math.min(chunkRows, n - r0);
      await (await session).run({ rows: new Tensor('float32', rows.subarray(r0 * dim, (r0 + b) * dim), [b, dim]), mean: centre }, fetches);
      blocks.forEach((block, index) => {
        const product = outputs[index]!;
        for (let r = 0; r < block.rows; r++) {
          const into = (block.rowStart + r) * dim + block.columnStart;
          const from = r * block.columns;
          for (let c = 0; c < block.columns; c++) sum[into + c] += product[from + c]!;
        }
      });
    }
    // The blocks above the diagonal are those below, transposed (the diagonal blocks' own upper halves are the
    // same sums as their lower ones).
    mirrorTriangle(sum, dim, 'lower');
    return sum;
  };
}

/**
 * Column blocks of the product: xᵀx is symmetric, so of its PARTS x PARTS blocks only those on and below the
 * diagonal are multiplied (10 of 16: 62.5 % of the flops of one Gemm).
 */
const PARTS = 4;

interface Block {
  readonly name: string;
  readonly rowStart: number;
  readonly rows: number;
  readonly columnStart: number;
  readonly columns: number;
}

/** The blocks (i, j), i ≥ j, of a dim x dim product cut into PARTS x PARTS, in the graph's output order. */
function lowerBlocks(dim: number): Block[] {
  const parts = Math.min(PARTS, dim);
  const edges = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * dim) / parts));
  const blocks: Block[] = [];
  for (let i = 0; i < parts; i++) {
    for (let j = 0; j <= i; j++) {
      blocks.push({ name: `block_${i}_${j}`, rowStart: edges[i]!, rows: edges[i + 1]! - edges[i]!, columnStart: edges[j]!, columns: edges[j + 1]! - edges[j]! });
    }
  }
  return blocks;
}

/**
 * block_i_j = x_iᵀ x_j (i ≥ j) for x = double(rows) - mean, [rows, dim] (rows float32, mean float64), x cut into
 * the column blocks x_i.
 */
function gramGraph(dim: number): Uint8Array {
  const graph = new OnnxGraphBuilder();
  const blocks = lowerBlocks(dim);
  graph.reserve('rows', 'mean', 'x', ...blocks.map((block) => block.name));
  graph.node('Sub', [graph.node('Cast', ['rows'], { to: 11 /* DOUBLE */ }, 'wide'), 'mean'], {}, 'x', 'x');
  const axis = graph.int64s('axis', [1]);
  const columns = new Map<number, string>();
  const column = (start: number, width: number) => {
    let name = columns.get(start);
    if (!name) {
      name = graph.node('Slice', ['x', graph.int64s('start', [start]), graph.int64s('end', [start + width]), axis], {}, 'x_part');
      columns.set(start, name);
    }
    return name;
  };
  for (const block of blocks) graph.node('Gemm', [column(block.rowStart, block.rows), column(block.columnStart, block.columns)], { transA: 1 }, block.name, block.name);
  return graph.buildWithOutputs(
    [
      { name: 'rows', dims: ['n', dim], type: 'float32' },
      { name: 'mean', dims: [dim], type: 'float64' },
    ],
    blocks.map((block) => ({ name: block.name, dims: [block.rows, block.columns], type: 'float64' as const })),
    'gram',
  );
}
