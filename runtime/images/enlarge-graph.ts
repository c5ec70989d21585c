import { onnx } from 'onnx-proto';
import { FLOAT32, OnnxGraphBuilder } from '../onnx/graph-builder';
import { axisTaps, type AxisTaps } from './upscale';

/**
 * An ONNX graph that does exactly what `enlargeBilinear` (images/upscale.ts) does to a batch of height × width RGB
 * images: the same taps, the same integer arithmetic, the same bytes out. The onnx engine runs it in its worker
 * right before the CNN, so the main thread neither enlarges (about 0.6–1 CPU-ms per 100×100 image in JavaScript)
 * nor copies five times the bytes to the worker.
 *
 * Why it is exact in float32: the weights are upscale.ts's integers (1/256ths, 0..256), each output's
 * horizontal weights sum to 256 and vertical ones too, so every intermediate is an integer, or a multiple of 2^-16
 * below 256, with at most 24 significant bits, which float32 holds exactly whatever order the sums take. The
 * rounding `(v + 32768) >> 16` becomes: +0.5 on every input sample (256 · 256 · 0.5 = 32768 per output), the
 * vertical weights pre-scaled by 2^-16 (exact), and Cast to uint8, which truncates (values are positive, so it
 * floors). The tests compare its bytes with enlargeBilinear's on many sizes.
 *
 * Why this shape (measured by bench/enlarge.ts): each output reads two neighbouring inputs, so a dense MatMul by
 * the tap matrices is mostly multiplications by zero (slower than the JavaScript); ONNX Runtime's Gather/Mul/Add
 * passes and its transposes that move the channel axis cost more still. So the outputs go in blocks of `block`:
 * one Gather takes the window of inputs a block reads, and one batched MatMul per axis applies the block's small
 * tap matrix, channels kept last (as a Kronecker product with the identity for the columns) so that the result
 * comes out in NHWC order with no transpose of single bytes.
 */

export const ENLARGE_INPUT = 'small';
export const ENLARGE_OUTPUT = 'enlarged';

const UINT8 = onnx.TensorProto.DataType.UINT8;

/**
 * The graph for [n, height, width, 3] bytes (both sides at most `size`) to n × size × size × 3 bytes, in NHWC order
 * (the output's declared shape is [n, blocks, block, size · 3]: the same bytes, without a copy to reshape them).
 */
export function buildEnlargeGraph(height: number, width: number, size: number): Uint8Array {
  for (const [name, value] of [['height', height], ['width', width]] as const) {
    if (!Number.isInteger(value) || value < 1 || value > size) throw new RangeError(`enlarge graph: ${name} ${value} is not within 1..${size}`);
  }
  const block = blockSize(size);
  const blocks = size / block;
  const g = new OnnxGraphBuilder();
  g.reserve(ENLARGE_INPUT, ENLARGE_OUTPUT);
  const x = windows(axisTaps(width, size), width, block, blocks);
  const y = windows(axisTaps(height, size), height, block, blocks);

  // Columns: per block, [window · 3, block · 3], the tap weights times the 3×3 identity (channels stay apart).
  const across = new Float32Array(blocks * x.span * 3 * block * 3);
  for (let b = 0; b < blocks; b++) {
    for (let k = 0; k < x.span; k++) {
      for (let o = 0; o < block; o++) {
        const weight = x.weight(b, o, k);
        for (let c = 0; c < 3; c++) across[((b * x.span + k) * 3 + c) * block * 3 + o * 3 + c] = weight;
      }
    }
  }
  // Rows: per block, [block, window], scaled by 2^-16 (the `>> 16`).
  const down = new Float32Array(blocks * block * y.span);
  for (let b = 0; b < blocks; b++) {
    for (let o = 0; o < block; o++) for (let k = 0; k < y.span; k++) down[(b * block + o) * y.span + k] = y.weight(b, o, k) / 65536;
  }

  const index = (name: string, axis: { starts: readonly number[]; span: number }) =>
    g.int64s(name, axis.starts.flatMap((start) => Array.from({ length: axis.span }, (_, k) => start + k)));
  const indexShape = g.int64s('window_shape', [blocks, -1]);
  // [n, h, blocks, span, 3] bytes: the columns each block of outputs reads.
  const windowed = g.node('Gather', [ENLARGE_INPUT, g.node('Reshape', [index('columns', x), indexShape])], { axis: 2 });
  const samples = g.node('Add', [g.node('Cast', [windowed], { to: FLOAT32 }), g.scalar('rounding', 0.5)]);
  // [n, blocks, h, span · 3]: the block in front, so that one batched MatMul gives each block its own matrix.
  const byBlock = g.node('Transpose', [g.node('Reshape', [samples, g.int64s('rows_by_block', [0, height, blocks, x.span * 3])])], { perm: [0, 2, 1, 3] });
  const wide = g.node('MatMul', [byBlock, g.floats('across', [blocks, x.span * 3, block * 3], across)]);
  // [n, h, size · 3]: whole widened rows again (blocks of 3·block contiguous floats move, not single values).
  const rows = g.node('Reshape', [g.node('Transpose', [wide], { perm: [0, 2, 1, 3] }), g.int64s('wide_rows', [0, height, size * 3])]);
  // [n, blocks, span, size · 3] → [n, blocks, block, size · 3]: the rows each block of output rows reads, blended.
  const tall = g.node('MatMul', [g.floats('down', [blocks, block, y.span], down), g.node('Gather', [rows, g.node('Reshape', [index('rows', y), indexShape])], { axis: 1 })]);
  g.node('Cast', [tall], { to: UINT8 }, 'bytes', ENLARGE_OUTPUT);
  return g.build(
    { name: ENLARGE_INPUT, dims: ['batch', height, width, 3], type: 'uint8' },
    { name: ENLARGE_OUTPUT, dims: ['batch', blocks, block, size * 3], type: 'uint8' },
    { purpose: `bilinear enlargement ${width}x${height} to ${size}x${size}, as runtime/images/upscale.ts` },
    'enlarge',
  );
}

/** Outputs per block: the largest divisor of size up to 32 (32 for 224: measured the cheapest, with 16 close). */
function blockSize(size: number): number {
  for (let block = Math.min(32, size); block > 1; block--) if (size % block === 0) return block;
  return 1;
}

/** For each block of outputs: the first input of the window it reads (every window `span` long), and the weights. */
function windows(taps: AxisTaps, inSize: number, block: number, blocks: number) {
  let span = 1;
  for (let b = 0; b < blocks; b++) span = Math.max(span, taps.second[(b + 1) * block - 1]! - taps.first[b * block]! + 1);
  // A window may start before the block's first tap (never past the input's end); its extra inputs weigh 0.
  const starts = Array.from({ length: blocks }, (_, b) => Math.min(taps.first[b * block]!, inSize - span));
  /** Weight of window position k in output o of block b (both taps are the same sample at a clamped border). */
  const weight = (b: number, o: number, k: number) => {
    const out = b * block + o;
    const at = starts[b]! + k;
    return (taps.first[out] === at ? 256 - taps.weight[out]! : 0) + (taps.second[out] === at ? taps.weight[out]! : 0);
  };
  return { span, starts, weight };
}
