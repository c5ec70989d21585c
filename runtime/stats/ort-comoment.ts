import { OnnxGraphBuilder } from '../onnx/graph-builder';
import { createSession, type OrtRuntime, type OrtSession } from '../onnx/runtime';
import { BLOCK_ROWS, blockedCoMoment } from './blocked-comoment';
import type { AsyncCoMomentKernel } from './moments';

/**
 * The co-moment on ONNX Runtime (the onnx engine): D^T D per block by one Gemm (MLAS, every core). At 1280
 * features and 4096 rows: about 0.1 s, against 0.45 s for tfjs on WebAssembly and 1.4 s in float64 JavaScript.
 * The session is created on first use and kept.
 */
export function ortCoMoment(runtime: OrtRuntime, threads: number, blockRows = BLOCK_ROWS): AsyncCoMomentKernel {
  const sessions = new Map<number, Promise<OrtSession>>();
  const sessionFor = (dim: number) => {
    let session = sessions.get(dim);
    if (!session) {
      session = createSession(runtime, gramGraph(dim), { threads });
      sessions.set(dim, session);
    }
    return session;
  };
  return blockedCoMoment(async (centred, b, dim) => {
    const session = await sessionFor(dim);
    const outputs = await session.run({ x: new runtime.ort.Tensor('float32', centred, [b, dim]) });
    return outputs.y!.data as Float32Array;
  }, blockRows);
}

/** y = xᵀx for x of [rows, dim]: one Gemm with transA. */
function gramGraph(dim: number): Uint8Array {
  const graph = new OnnxGraphBuilder();
  graph.reserve('x', 'y');
  graph.node('Gemm', ['x', 'x'], { transA: 1 }, 'y', 'y');
  return graph.build({ name: 'x', dims: ['rows', dim] }, { name: 'y', dims: [dim, dim] }, {}, 'gram');
}
