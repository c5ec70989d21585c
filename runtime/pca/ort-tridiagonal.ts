import { OnnxGraphBuilder, float } from '../onnx/graph-builder';
import { createSession, type OrtRuntime, type OrtSession } from '../onnx/runtime';
import type { TrailingUpdate } from './blocked-tridiagonal';

/**
 * The blocked reduction's trailing update on ONNX Runtime: a[b:, b:] - v wᵀ - w vᵀ by two float64 Gemms (MLAS,
 * every core), the slice taken in the graph. The session is created on first use and kept.
 */
export function ortTrailingUpdate(runtime: OrtRuntime, threads: number): TrailingUpdate {
  let session: Promise<OrtSession> | undefined;
  return async (a, m, b, v, w) => {
    session ??= createSession(runtime, updateGraph(), { threads });
    const r = m - b;
    const { Tensor } = runtime.ort;
    const edge = (value: number) => new Tensor('int64', BigInt64Array.from([BigInt(value), BigInt(value)]), [2]);
    const outputs = await (await session).run({
      a: new Tensor('float64', a.length === m * m ? a : a.subarray(0, m * m), [m, m]),
      v: new Tensor('float64', v, [r, b]),
      w: new Tensor('float64', w, [r, b]),
      starts: edge(b),
      ends: edge(m),
    });
    return outputs.y!.data as Float64Array;
  };
}

/** y = a[starts:ends, starts:ends] - v wᵀ - w vᵀ, all float64. */
function updateGraph(): Uint8Array {
  const graph = new OnnxGraphBuilder();
  graph.reserve('a', 'v', 'w', 'starts', 'ends', 'y');
  const block = graph.node('Slice', ['a', 'starts', 'ends'], {}, 'block');
  const once = graph.node('Gemm', ['v', 'w', block], { transB: 1, alpha: float(-1), beta: float(1) }, 'once');
  graph.node('Gemm', ['w', 'v', once], { transB: 1, alpha: float(-1), beta: float(1) }, 'y', 'y');
  return graph.buildWithInputs(
    [
      { name: 'a', dims: ['m', 'm'], type: 'float64' },
      { name: 'v', dims: ['r', 'b'], type: 'float64' },
      { name: 'w', dims: ['r', 'b'], type: 'float64' },
      { name: 'starts', dims: [2], type: 'int64' },
      { name: 'ends', dims: [2], type: 'int64' },
    ],
    { name: 'y', dims: ['r', 'r'], type: 'float64' },
    'trailing_update',
  );
}
