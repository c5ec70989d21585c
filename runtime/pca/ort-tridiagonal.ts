import { OnnxGraphBuilder, float } from '../onnx/graph-builder';
import { createSession, type OrtRuntime, type OrtSession } from '../onnx/runtime';
import type { TridiagonalEngine } from './blocked-tridiagonal';

/**
 * The blocked reduction's two products on ONNX Runtime (MLAS float64, every core): per column, the trailing
 * matrix times the reflector (a matrix-vector product that JavaScript does at a third of the speed) less the
 * panel's corrections; per panel, the rank-2·b trailing update by one Gemm, the slice taken in the graph. The
 * sessions are created on first use and kept. The per-column product runs on one thread: it is bound by memory,
 * and a thousand short calls that each wait for a second thread cost more than they gain when the cores are busy.
 */
export function ortTridiagonalEngine(runtime: OrtRuntime, threads: number): TridiagonalEngine {
  let panel: Promise<OrtSession> | undefined;
  let update: Promise<OrtSession> | undefined;
  const { Tensor } = runtime.ort;
  const f64 = (data: Float64Array, dims: number[]) => new Tensor('float64', data, dims);
  return {
    async panelProduct(a, m, u, v, w, b) {
      panel ??= createSession(runtime, panelGraph(), { threads: 1 });
      const outputs = await (await panel).run({ a: f64(a, [m, m]), u: f64(u, [m, 1]), v: f64(v, [m, b]), w: f64(w, [m, b]) });
      return outputs.y!.data as Float64Array;
    },
    async trailingUpdate(a, m, b, v, w, out) {
      update ??= createSession(runtime, updateGraph(), { threads });
      const r = m - b;
      const edge = (value: number) => new Tensor('int64', BigInt64Array.from([BigInt(value), BigInt(value)]), [2]);
      // v wᵀ + w vᵀ = [v w] [w v]ᵀ: one Gemm, no r x r intermediate (r x 2b each, a few hundred kB).
      const left = new Float64Array(r * 2 * b);
      const right = new Float64Array(r * 2 * b);
      for (let i = 0; i < r; i++) {
        left.set(v.subarray(i * b, i * b + b), i * 2 * b);
        left.set(w.subarray(i * b, i * b + b), i * 2 * b + b);
        right.set(w.subarray(i * b, i * b + b), i * 2 * b);
        right.set(v.subarray(i * b, i * b + b), i * 2 * b + b);
      }
      // Written straight into `out` (a pre-allocated output): no new 13 MB buffer per panel for the collector.
      await (await update).run({ a: f64(a, [m, m]), left: f64(left, [r, 2 * b]), right: f64(right, [r, 2 * b]), starts: edge(b), ends: edge(m) }, { y: f64(out, [r, r]) });
    },
  };
}

const minusOne = { alpha: float(-1), beta: float(1) };

/** y = a u - v (wᵀ u) - w (vᵀ u): a [m, m], u [m, 1], v and w [m, b], all float64. */
function panelGraph(): Uint8Array {
  const graph = new OnnxGraphBuilder();
  graph.reserve('a', 'u', 'v', 'w', 'y');
  const au = graph.node('MatMul', ['a', 'u'], {}, 'au');
  const wu = graph.node('Gemm', ['w', 'u'], { transA: 1 }, 'wu');
  const vu = graph.node('Gemm', ['v', 'u'], { transA: 1 }, 'vu');
  const once = graph.node('Gemm', ['v', wu, au], minusOne, 'once');
  graph.node('Gemm', ['w', vu, once], minusOne, 'y', 'y');
  return graph.buildWithInputs(
    [
      { name: 'a', dims: ['m', 'm'], type: 'float64' },
      { name: 'u', dims: ['m', 1], type: 'float64' },
      { name: 'v', dims: ['m', 'b'], type: 'float64' },
      { name: 'w', dims: ['m', 'b'], type: 'float64' },
    ],
    { name: 'y', dims: ['m', 1], type: 'float64' },
    'panel_product',
  );
}

/** y = a[starts:ends, starts:ends] - left rightᵀ, all float64. */
function updateGraph(): Uint8Array {
  const graph = new OnnxGraphBuilder();
  graph.reserve('a', 'left', 'right', 'starts', 'ends', 'y');
  const block = graph.node('Slice', ['a', 'starts', 'ends'], {}, 'block');
  graph.node('Gemm', ['left', 'right', block], { transB: 1, ...minusOne }, 'y', 'y');
  return graph.buildWithInputs(
    [
      { name: 'a', dims: ['m', 'm'], type: 'float64' },
      { name: 'left', dims: ['r', 'b2'], type: 'float64' },
      { name: 'right', dims: ['r', 'b2'], type: 'float64' },
      { name: 'starts', dims: [2], type: 'int64' },
      { name: 'ends', dims: [2], type: 'int64' },
    ],
    { name: 'y', dims: ['r', 'r'], type: 'float64' },
    'trailing_update',
  );
}
