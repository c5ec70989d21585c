/**
 * What the bilinear enlargement of a small image to the model's input costs per image, in JavaScript
 * (runtime/images/upscale.ts, as preprocess.ts calls it) and as ONNX graphs run by ONNX Runtime the way the predict
 * worker runs the CNN (batch 8, `sessionOptions`), to decide whether moving it into the graph pays (issue 17).
 *
 *   node --import tsx bench/enlarge.ts [--size 100x100] [--rounds 5] [--batches 50]
 *
 * Measured as process CPU (process.cpuUsage: every thread, ONNX Runtime's pool included) per image, best of
 * `rounds` alternating rounds, since the machine is shared and wall time says little there. Every graph's output
 * is compared byte for byte with enlargeBilinear's before it is timed.
 *
 * The exact graphs all emulate enlargeBilinear's integer arithmetic in float32: weights in 1/256ths, so every
 * intermediate is an integer (or a multiple of 2^-16 below 256) with at most 24 significant bits, and float32
 * represents it exactly whatever order the sums are taken in.
 */
import { onnx } from 'onnx-proto';
import { enlargeBilinear } from '../runtime/images/upscale';
import { FLOAT32, OnnxGraphBuilder } from '../runtime/onnx/graph-builder';
import { loadOrt, sessionOptions } from '../runtime/onnx/runtime';

const UINT8 = onnx.TensorProto.DataType.UINT8;

interface Taps {
  readonly first: Int32Array;
  readonly second: Int32Array;
  /** Weight of `second` in 1/256ths (that of `first` is 256 minus it). */
  readonly weight: Int32Array;
}

/** The same taps as upscale.ts's axisTaps (half-pixel centres, clamped borders, weights rounded to 1/256). */
function taps(inSize: number, outSize: number): Taps {
  const first = new Int32Array(outSize);
  const second = new Int32Array(outSize);
  const weight = new Int32Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const at = Math.min(Math.max((o + 0.5) * scale - 0.5, 0), inSize - 1);
    const lo = Math.floor(at);
    first[o] = lo;
    second[o] = Math.min(lo + 1, inSize - 1);
    weight[o] = Math.round((at - lo) * 256);
  }
  return { first, second, weight };
}

/** Weight of input sample i in output o (both taps may be the same sample at the border). */
const tapWeight = (t: Taps, o: number, i: number) => (t.first[o] === i ? 256 - t.weight[o]! : 0) + (t.second[o] === i ? t.weight[o]! : 0);

const io = (h: number, w: number, size: number) =>
  [{ name: 'x', dims: ['n', h, w, 3], type: 'uint8' }, { name: 'y', dims: ['n', size, size, 3], type: 'uint8' }] as const;

/** (a) Dense tap matrices: planar floats, x · Wx[w, size], then Wy[size, h] · that, +32768, /65536, Floor, back to NHWC. */
function denseMatMul(h: number, w: number, size: number): Uint8Array {
  const g = new OnnxGraphBuilder();
  g.reserve('x', 'y');
  const tx = taps(w, size);
  const ty = taps(h, size);
  const wx = new Float32Array(w * size);
  for (let i = 0; i < w; i++) for (let o = 0; o < size; o++) wx[i * size + o] = tapWeight(tx, o, i);
  const wy = new Float32Array(size * h);
  for (let o = 0; o < size; o++) for (let i = 0; i < h; i++) wy[o * h + i] = tapWeight(ty, o, i);
  const planar = g.node('Cast', [g.node('Transpose', ['x'], { perm: [0, 3, 1, 2] })], { to: FLOAT32 });
  const across = g.node('MatMul', [planar, g.floats('wx', [w, size], wx)]);
  const down = g.node('MatMul', [g.floats('wy', [size, h], wy), across]);
  const scaled = g.node('Mul', [g.node('Add', [down, g.scalar('half', 32768)]), g.scalar('unit', 1 / 65536)]);
  const bytes = g.node('Cast', [g.node('Floor', [scaled])], { to: UINT8 });
  g.node('Transpose', [bytes], { perm: [0, 2, 3, 1] }, 'nhwc', 'y');
  return g.build(...io(h, w, size), {});
}

/** (b) Two taps per output: Gather the first and second samples, Mul by their weights, Add; rows, then columns. */
function gatherTaps(h: number, w: number, size: number): Uint8Array {
  const g = new OnnxGraphBuilder();
  g.reserve('x', 'y');
  const pass = (input: string, t: Taps, axis: number, weightDims: number[]) => {
    const blend = (which: 'first' | 'second') => {
      const weights = Float32Array.from(t.weight, (v) => (which === 'second' ? v : 256 - v));
      return g.node('Mul', [g.node('Gather', [input, g.int64s(which, Array.from(t[which]))], { axis }), g.floats('w', [size, ...weightDims], weights)]);
    };
    return g.node('Add', [blend('first'), blend('second')]);
  };
  const across = pass(g.node('Cast', ['x'], { to: FLOAT32 }), taps(w, size), 2, [1]);
  const down = pass(across, taps(h, size), 1, [1, 1]);
  const scaled = g.node('Mul', [g.node('Add', [down, g.scalar('half', 32768)]), g.scalar('unit', 1 / 65536)]);
  g.node('Cast', [g.node('Floor', [scaled])], { to: UINT8 }, 'bytes', 'y');
  return g.build(...io(h, w, size), {});
}

/**
 * (c) Banded: the outputs in blocks of `block`, each block a small MatMul over the window of inputs it reads
 * (a Gather of that window), channels kept last so that no transpose moves single bytes (ONNX Runtime's transpose
 * of the channel axis measured slower than the whole JavaScript enlargement). Columns: per block a Kronecker
 * matrix [window·3, block·3]; rows: per block [block, window], pre-scaled by 1/65536 (exact: a power of two).
 * The rounding's +32768 enters as +0.5 on every input sample (each output's weights sum to 256·256).
 */
function banded(h: number, w: number, size: number, block: number, floor: boolean): Uint8Array {
  const g = new OnnxGraphBuilder();
  g.reserve('x', 'y');
  const blocks = size / block;
  if (!Number.isInteger(blocks)) throw new Error(`block ${block} does not divide ${size}`);
  const windows = (inSize: number) => {
    const t = taps(inSize, size);
    let span = 1;
    for (let b = 0; b < blocks; b++) span = Math.max(span, t.second[(b + 1) * block - 1]! - t.first[b * block]! + 1);
    const starts = Array.from({ length: blocks }, (_, b) => Math.min(t.first[b * block]!, inSize - span));
    const index = starts.flatMap((start) => Array.from({ length: span }, (_, k) => start + k));
    return { t, span, starts, index: g.node('Reshape', [g.int64s('index', index), g.int64s('shape', [blocks, span])]) };
  };
  const x = windows(w);
  const y = windows(h);
  const kx = new Float32Array(blocks * x.span * 3 * block * 3);
  for (let b = 0; b < blocks; b++)
    for (let k = 0; k < x.span; k++)
      for (let o = 0; o < block; o++)
        for (let c = 0; c < 3; c++) kx[((b * x.span + k) * 3 + c) * block * 3 + o * 3 + c] = tapWeight(x.t, b * block + o, x.starts[b]! + k);
  const wy = new Float32Array(blocks * block * y.span);
  for (let b = 0; b < blocks; b++)
    for (let o = 0; o < block; o++) for (let k = 0; k < y.span; k++) wy[(b * block + o) * y.span + k] = tapWeight(y.t, b * block + o, y.starts[b]! + k) / 65536;
  const windowed = g.node('Gather', ['x', x.index], { axis: 2 }); // [n, h, blocks, span, 3] bytes
  const samples = g.node('Add', [g.node('Cast', [windowed], { to: FLOAT32 }), g.scalar('half', 0.5)]);
  const byBlock = g.node('Transpose', [g.node('Reshape', [samples, g.int64s('s', [0, h, blocks, x.span * 3])])], { perm: [0, 2, 1, 3] });
  const across = g.node('MatMul', [byBlock, g.floats('kx', [blocks, x.span * 3, block * 3], kx)]); // [n, blocks, h, block·3]
  const rows = g.node('Reshape', [g.node('Transpose', [across], { perm: [0, 2, 1, 3] }), g.int64s('s', [0, h, size * 3])]);
  const down = g.node('MatMul', [g.floats('wy', [blocks, block, y.span], wy), g.node('Gather', [rows, y.index], { axis: 1 })]); // [n, blocks, block, size·3]
  const bytes = g.node('Cast', [floor ? g.node('Floor', [down]) : down], { to: UINT8 });
  g.node('Reshape', [bytes, g.int64s('s', [-1, size, size, 3])], {}, 'nhwc', 'y');
  return g.build(...io(h, w, size), {});
}

/** ONNX's own Resize (linear, half-pixel) on bytes, for reference: its fixed-point weights are not upscale.ts's. */
function ortResize(h: number, w: number, size: number, n: number): Uint8Array {
  const g = new OnnxGraphBuilder();
  g.reserve('x', 'y');
  g.node('Resize', ['x', '', '', g.int64s('sizes', [n, size, size, 3])], { mode: 'linear', coordinate_transformation_mode: 'half_pixel' }, 'resize', 'y');
  return g.build(...io(h, w, size), {});
}

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1]! : fallback;
}

async function main(): Promise<void> {
  const [w, h] = option('--size', '100x100').split('x').map(Number) as [number, number];
  const rounds = Number(option('--rounds', '5'));
  const batches = Number(option('--batches', '50'));
  const threads = Number(option('--threads', '2'));
  const size = 224;
  const n = 8;
  const { ort } = loadOrt();
  // Distinct sources, as decoded images are (the caches hold none of them), RGBA as @jsquash/jpeg gives them.
  const sources = Array.from({ length: 64 }, (_, j) => Uint8Array.from({ length: h * w * 4 }, (_, i) => ((i + j * 7919) * 2654435761) >>> 24));
  const rgb = (j: number) => Uint8Array.from({ length: h * w * 3 }, (_, i) => sources[j]![Math.floor(i / 3) * 4 + (i % 3)]!);
  const input = new Uint8Array(n * h * w * 3);
  for (let i = 0; i < n; i++) input.set(rgb(i), i * h * w * 3);
  const expected = new Uint8Array(n * size * size * 3);
  for (let i = 0; i < n; i++) enlargeBilinear(sources[i]!, w, h, size, expected, i * size * size * 3, 4);

  const candidates: Record<string, Uint8Array> = {
    'dense MatMul (a)': denseMatMul(h, w, size),
    'Gather+Mul+Add (b)': gatherTaps(h, w, size),
    'banded MatMul, block 32 (c)': banded(h, w, size, 32, true),
    'banded MatMul, block 16 (c)': banded(h, w, size, 16, true),
    'banded, Cast truncates, no Floor': banded(h, w, size, 32, false),
    'ONNX Resize on bytes (not exact)': ortResize(h, w, size, n),
  };
  const sessions: Record<string, import('onnxruntime-node').InferenceSession> = {};
  for (const [name, bytes] of Object.entries(candidates)) {
    const session = await ort.InferenceSession.create(bytes, sessionOptions({ threads }));
    const out = (await session.run({ x: new ort.Tensor('uint8', input, [n, h, w, 3]) })).y!.data as Uint8Array;
    let differ = 0;
    for (let i = 0; i < out.length; i++) if (out[i] !== expected[i]) differ++;
    console.log(`${name}: ${differ === 0 ? 'identical to enlargeBilinear' : `${differ} of ${out.length} bytes differ`}`);
    sessions[name] = session;
  }

  const best = new Map<string, number>();
  const measure = async (name: string, images: number, work: () => unknown) => {
    const before = process.cpuUsage();
    await work();
    const used = process.cpuUsage(before);
    best.set(name, Math.min(best.get(name) ?? Infinity, (used.user + used.system) / 1000 / images));
  };
  const batch = new Uint8Array(n * size * size * 3);
  for (let round = 0; round < rounds; round++) {
    // As preprocess.ts and extract.ts do it: a fresh buffer per image, copied into the batch, which the worker copies.
    await measure(`JavaScript enlargeBilinear (${w}x${h} RGBA)`, batches * n, () => {
      for (let b = 0; b < batches; b++) {
        for (let i = 0; i < n; i++) {
          const pixels = Buffer.allocUnsafe(size * size * 3);
          enlargeBilinear(sources[(b * n + i) % sources.length]!, w, h, size, pixels, 0, 4);
          batch.set(pixels, i * size * size * 3);
        }
        batch.slice();
      }
    });
    for (const [name, session] of Object.entries(sessions)) {
      await measure(name, batches * n, async () => {
        for (let b = 0; b < batches; b++) await session.run({ x: new ort.Tensor('uint8', input.slice(), [n, h, w, 3]) });
      });
    }
  }
  console.log(`\nCPU-ms per image, ${w}x${h} -> ${size}x${size}, batch ${n}, ${threads} ONNX Runtime threads, best of ${rounds} rounds:`);
  for (const [name, ms] of best) console.log(`  ${ms.toFixed(3)}  ${name}`);
  await Promise.all(Object.values(sessions).map((session) => session.release()));
}

void main();
