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
 * The exact graphs all emulate enlargeBilinear's integer arithmetic in float32 (see images/enlarge-graph.ts for why
 * that is exact); (c) is the one the onnx engine runs, (a) and (b) the ones it was chosen over.
 */
import { onnx } from 'onnx-proto';
import { axisTaps, enlargeBilinear, type AxisTaps } from '../runtime/images/upscale';
import { buildEnlargeGraph, ENLARGE_INPUT, ENLARGE_OUTPUT } from '../runtime/images/enlarge-graph';
import { FLOAT32, OnnxGraphBuilder } from '../runtime/onnx/graph-builder';
import { loadOrt, sessionOptions } from '../runtime/onnx/runtime';

const UINT8 = onnx.TensorProto.DataType.UINT8;

/** Weight of input sample i in output o (both taps may be the same sample at the border). */
const tapWeight = (t: AxisTaps, o: number, i: number) => (t.first[o] === i ? 256 - t.weight[o]! : 0) + (t.second[o] === i ? t.weight[o]! : 0);

const io = (h: number, w: number, size: number) =>
  [{ name: ENLARGE_INPUT, dims: ['n', h, w, 3], type: 'uint8' }, { name: ENLARGE_OUTPUT, dims: ['n', size, size, 3], type: 'uint8' }] as const;

/** (a) Dense tap matrices: planar floats, x · Wx[w, size], then Wy[size, h] · that, +32768, /65536, Floor, back to NHWC. */
function denseMatMul(h: number, w: number, size: number): Uint8Array {
  const g = new OnnxGraphBuilder();
  g.reserve(ENLARGE_INPUT, ENLARGE_OUTPUT);
  const tx = axisTaps(w, size);
  const ty = axisTaps(h, size);
  const wx = new Float32Array(w * size);
  for (let i = 0; i < w; i++) for (let o = 0; o < size; o++) wx[i * size + o] = tapWeight(tx, o, i);
  const wy = new Float32Array(size * h);
  for (let o = 0; o < size; o++) for (let i = 0; i < h; i++) wy[o * h + i] = tapWeight(ty, o, i);
  const planar = g.node('Cast', [g.node('Transpose', [ENLARGE_INPUT], { perm: [0, 3, 1, 2] })], { to: FLOAT32 });
  const across = g.node('MatMul', [planar, g.floats('wx', [w, size], wx)]);
  const down = g.node('MatMul', [g.floats('wy', [size, h], wy), across]);
  const scaled = g.node('Mul', [g.node('Add', [down, g.scalar('half', 32768)]), g.scalar('unit', 1 / 65536)]);
  const bytes = g.node('Cast', [g.node('Floor', [scaled])], { to: UINT8 });
  g.node('Transpose', [bytes], { perm: [0, 2, 3, 1] }, 'nhwc', ENLARGE_OUTPUT);
  return g.build(...io(h, w, size), {});
}

/** (b) Two taps per output: Gather the first and second samples, Mul by their weights, Add; rows, then columns. */
function gatherTaps(h: number, w: number, size: number): Uint8Array {
  const g = new OnnxGraphBuilder();
  g.reserve(ENLARGE_INPUT, ENLARGE_OUTPUT);
  const pass = (input: string, t: AxisTaps, axis: number, weightDims: number[]) => {
    const blend = (which: 'first' | 'second') => {
      const weights = Float32Array.from(t.weight, (v) => (which === 'second' ? v : 256 - v));
      return g.node('Mul', [g.node('Gather', [input, g.int64s(which, Array.from(t[which]))], { axis }), g.floats('w', [size, ...weightDims], weights)]);
    };
    return g.node('Add', [blend('first'), blend('second')]);
  };
  const across = pass(g.node('Cast', [ENLARGE_INPUT], { to: FLOAT32 }), axisTaps(w, size), 2, [1]);
  const down = pass(across, axisTaps(h, size), 1, [1, 1]);
  const scaled = g.node('Mul', [g.node('Add', [down, g.scalar('half', 32768)]), g.scalar('unit', 1 / 65536)]);
  g.node('Cast', [g.node('Floor', [scaled])], { to: UINT8 }, 'bytes', ENLARGE_OUTPUT);
  return g.build(...io(h, w, size), {});
}

/** ONNX's own Resize (linear, half-pixel) on bytes, for reference: its fixed-point weights are not upscale.ts's. */
function ortResize(h: number, w: number, size: number, n: number): Uint8Array {
  const g = new OnnxGraphBuilder();
  g.reserve(ENLARGE_INPUT, ENLARGE_OUTPUT);
  g.node('Resize', [ENLARGE_INPUT, '', '', g.int64s('sizes', [n, size, size, 3])], { mode: 'linear', coordinate_transformation_mode: 'half_pixel' }, 'resize', ENLARGE_OUTPUT);
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
    'banded MatMul (c): images/enlarge-graph.ts': buildEnlargeGraph(h, w, size),
    'ONNX Resize on bytes (not exact)': ortResize(h, w, size, n),
  };
  const sessions: Record<string, import('onnxruntime-node').InferenceSession> = {};
  for (const [name, bytes] of Object.entries(candidates)) {
    const session = await ort.InferenceSession.create(bytes, sessionOptions({ threads }));
    const out = (await session.run({ [ENLARGE_INPUT]: new ort.Tensor('uint8', input, [n, h, w, 3]) }))[ENLARGE_OUTPUT]!.data as Uint8Array;
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
        for (let b = 0; b < batches; b++) await session.run({ [ENLARGE_INPUT]: new ort.Tensor('uint8', input.slice(), [n, h, w, 3]) });
      });
    }
  }
  console.log(`\nCPU-ms per image, ${w}x${h} -> ${size}x${size}, batch ${n}, ${threads} ONNX Runtime threads, best of ${rounds} rounds:`);
  for (const [name, ms] of best) console.log(`  ${ms.toFixed(3)}  ${name}`);
  await Promise.all(Object.values(sessions).map((session) => session.release()));
}

void main();
