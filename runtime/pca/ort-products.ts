import { OnnxGraphBuilder, float } from '../onnx/graph-builder';
import { createSession, type OrtRuntime, type OrtSession } from '../onnx/runtime';
import type { MatrixProducts } from './leading-eigen';

/**
 * The leading-eigenpair solver's products on ONNX Runtime's float64 Gemm (MLAS), one small session per form
 * (transposes, and whether the product is subtracted from a matrix), created on first use and kept.
 */
export function ortMatrixProducts(runtime: OrtRuntime, threads: number): MatrixProducts {
  const sessions = new Map<string, Promise<OrtSession>>();
  const { Tensor } = runtime.ort;
  return {
    async product(a, aRows, aCols, b, bRows, bCols, options = {}) {
      const transposeA = options.transposeA === true;
      const transposeB = options.transposeB === true;
      const subtract = options.subtractFrom !== undefined;
      const key = `${+transposeA}${+transposeB}${+subtract}`;
      let session = sessions.get(key);
      if (!session) {
        session = createSession(runtime, productGraph(transposeA, transposeB, subtract), { threads });
        sessions.set(key, session);
      }
      const feeds: Record<string, InstanceType<typeof Tensor>> = {
        a: new Tensor('float64', a.subarray(0, aRows * aCols), [aRows, aCols]),
        b: new Tensor('float64', b.subarray(0, bRows * bCols), [bRows, bCols]),
      };
      if (options.subtractFrom) {
        const rows = transposeA ? aCols : aRows;
        const cols = transposeB ? bRows : bCols;
        feeds.c = new Tensor('float64', options.subtractFrom.subarray(0, rows * cols), [rows, cols]);
      }
      return (await (await session).run(feeds)).y!.data as Float64Array;
    },
  };
}

/** y = opA(a) opB(b), or c − opA(a) opB(b): one Gemm, float64. */
function productGraph(transposeA: boolean, transposeB: boolean, subtract: boolean): Uint8Array {
  const graph = new OnnxGraphBuilder();
  graph.reserve('a', 'b', 'c', 'y');
  graph.node('Gemm', subtract ? ['a', 'b', 'c'] : ['a', 'b'], { transA: +transposeA, transB: +transposeB, ...(subtract ? { alpha: float(-1), beta: float(1) } : {}) }, 'y', 'y');
  return graph.buildWithInputs(
    [
      { name: 'a', dims: ['ar', 'ac'], type: 'float64' },
      { name: 'b', dims: ['br', 'bc'], type: 'float64' },
      ...(subtract ? [{ name: 'c', dims: ['yr', 'yc'], type: 'float64' as const }] : []),
    ],
    { name: 'y', dims: ['yr', 'yc'], type: 'float64' },
    'product',
  );
}
