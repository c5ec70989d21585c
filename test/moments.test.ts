import {
  covariance,
  decodeMoments,
  emptyMoments,
  encodeMoments,
  mergeMoments,
  exactCoMoment,
  momentsOf,
  momentsWith,
  type AsyncCoMomentKernel,
  type Moments,
} from '../runtime/stats/moments';
import { initTf } from '../runtime/model/backend';
import { tensorCoMoment } from '../runtime/stats/tensor-comoment';
import { ortCoMoment } from '../runtime/stats/ort-comoment';
import { loadOrt } from '../runtime/onnx/runtime';
import { fitPca } from '../runtime/pca/fit';
import { ortProjector } from '../runtime/pca/ort-project';
import { projectRows } from '../runtime/pca/project';
import { mulberry32 } from '../runtime/random';

/** Deterministic PRNG, so a failing split can be reproduced. */
const rng = mulberry32;

/** Correlated, non-negative feature-like rows: a shared factor per row plus per-column noise. */
function features(n: number, dim: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const f = r() * 3;
    for (let j = 0; j < dim; j++) out[i * dim + j] = f * ((j % 5) + 1) * 0.3 + r() * (1 + j / dim);
  }
  return out;
}

/** Textbook two-pass reference, deliberately simple (no blocking) to check the optimised kernel. */
function reference(rows: Float32Array, n: number, dim: number): { mean: Float64Array; comoment: Float64Array } {
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += rows[i * dim + j] / n;
  const comoment = new Float64Array(dim * dim);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < dim; a++) {
      for (let b = 0; b < dim; b++) {
        comoment[a * dim + b] += (rows[i * dim + a] - mean[a]) * (rows[i * dim + b] - mean[b]);
      }
    }
  }
  return { mean, comoment };
}

/** Normwise relative difference: max |a - e| / max |e|. Entries near zero are judged against the matrix scale. */
function relDiff(actual: Float64Array, expected: Float64Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

function mergeShards(rows: Float32Array, dim: number, sizes: number[]): Moments[] {
  const parts: Moments[] = [];
  let start = 0;
  for (const size of sizes) {
    parts.push(momentsOf(rows.subarray(start * dim, (start + size) * dim), size, dim));
    start += size;
  }
  return parts;
}

const fold = (parts: Moments[], dim: number) => parts.reduce((acc, m) => mergeMoments(acc, m), emptyMoments(dim));

/** Random shard sizes summing to n, with empty shards and shards of one row among them. */
function randomSplit(n: number, r: () => number): number[] {
  const sizes: number[] = [];
  let left = n;
  while (left > 0) {
    const pick = r();
    const size = pick < 0.15 ? 0 : pick < 0.3 ? 1 : Math.min(left, 1 + Math.floor(r() * n * 0.4));
    sizes.push(size);
    left -= size;
  }
  sizes.splice(Math.floor(r() * sizes.length), 0, 0); // always at least one empty shard
  return sizes;
}

describe('momentsOf', () => {
  // 67 rows cross the 64-row block boundary; an odd dim exercises the padded kernel.
  it.each([
    [67, 13],
    [5, 8],
    [130, 1],
  ])('matches the textbook two-pass formula (n=%i, dim=%i)', (n, dim) => {
    const rows = features(n, dim, n * 31 + dim);
    const m = momentsOf(rows, n, dim);
    const ref = reference(rows, n, dim);
    expect(m.count).toBe(n);
    expect(relDiff(m.mean, ref.mean)).toBeLessThan(1e-14);
    expect(relDiff(m.comoment, ref.comoment)).toBeLessThan(1e-13);
    for (let a = 0; a < dim; a++) {
      for (let b = 0; b < dim; b++) expect(m.comoment[a * dim + b]).toBe(m.comoment[b * dim + a]);
    }
  });

  it('gives zero moments for no rows', () => {
    const m = momentsOf(new Float32Array(0), 0, 4);
    expect(m.count).toBe(0);
    expect(Array.from(m.mean)).toEqual([0, 0, 0, 0]);
    expect(m.comoment.every((v) => v === 0)).toBe(true);
  });

  it('rejects a buffer whose length is not n*dim, and non-finite features with their position', () => {
    expect(() => momentsOf(new Float32Array(10), 3, 4)).toThrow(RangeError);
    expect(() => momentsOf(new Float32Array(10), 3, 4)).toThrow(/3 rows x 4 features = 12 values but got 10/);
    const rows = features(4, 3, 1);
    rows[2 * 3 + 1] = Number.NaN;
    expect(() => momentsOf(rows, 4, 3)).toThrow(/row 2 .*index 1/);
    expect(() => emptyMoments(0)).toThrow(RangeError);
  });
});

describe('mergeMoments', () => {
  const n = 157;
  const dim = 9;
  const rows = features(n, dim, 7);
  const direct = momentsOf(rows, n, dim);

  it.each([1, 2, 3, 4, 5, 6])('equals the direct computation for a random split into shards (seed %i)', (seed) => {
    const sizes = randomSplit(n, rng(seed));
    expect(sizes).toContain(0);
    const merged = fold(mergeShards(rows, dim, sizes), dim);
    expect(merged.count).toBe(n);
    expect(relDiff(merged.mean, direct.mean)).toBeLessThan(1e-13);
    expect(relDiff(merged.comoment, direct.comoment)).toBeLessThan(1e-12);
  });

  it('equals the direct computation with every shard a single row', () => {
    const merged = fold(mergeShards(rows, dim, new Array<number>(n).fill(1)), dim);
    expect(relDiff(merged.comoment, direct.comoment)).toBeLessThan(1e-12);
  });

  it('does not depend on the order or grouping of the merges', () => {
    const parts = mergeShards(rows, dim, [40, 0, 1, 60, 56]);
    const left = fold(parts, dim);
    const reversed = fold([...parts].reverse(), dim);
    // A balanced tree, as a distributed reduce would merge.
    const [p0, p1, p2, p3, p4] = parts;
    const tree = mergeMoments(mergeMoments(p0, p1), mergeMoments(p2, mergeMoments(p3, p4)));
    for (const other of [reversed, tree]) {
      expect(other.count).toBe(left.count);
      expect(relDiff(other.mean, left.mean)).toBeLessThan(1e-14);
      expect(relDiff(other.comoment, left.comoment)).toBeLessThan(1e-13);
    }
  });

  it('is pure: the inputs are untouched and the result shares no arrays with them', () => {
    const [a, b] = mergeShards(rows, dim, [70, 87]);
    const before = Float64Array.from(a.comoment);
    const m = mergeMoments(a, b);
    m.comoment[0] = 42;
    expect(a.comoment).toEqual(before);
    const copy = mergeMoments(a, emptyMoments(dim));
    expect(copy.comoment).not.toBe(a.comoment);
    expect(copy.comoment).toEqual(a.comoment);
  });

  it('writes into the first operand\'s arrays when told to, the same values as the pure merge', () => {
    const [a, b] = mergeShards(rows, dim, [70, 87]);
    const pure = mergeMoments(a, b);
    const merged = mergeMoments(a, b, true);
    expect(merged.comoment).toBe(a.comoment);
    expect(merged.mean).toBe(a.mean);
    expect(merged).toEqual(pure);
  });

  it('rejects moments of different dimensions', () => {
    expect(() => mergeMoments(emptyMoments(3), emptyMoments(4))).toThrow(RangeError);
  });

  it('keeps the covariance right when the features sit at a huge offset (1e6)', () => {
    // Values 1e6 + k/16 are exact in float32 (its spacing at 1e6 is 1/16), so subtracting 1e6 gives the same
    // data with no offset exactly, and the covariance must not change.
    const m = 211;
    const d = 6;
    const r = rng(99);
    const shifted = new Float32Array(m * d);
    const centred = new Float32Array(m * d);
    for (let i = 0; i < m; i++) {
      const f = Math.floor(r() * 80);
      for (let j = 0; j < d; j++) {
        const k = Math.floor(r() * 160) - 80 + f * (j % 3);
        centred[i * d + j] = k / 16;
        shifted[i * d + j] = 1e6 + k / 16;
      }
    }
    expect(shifted[5] - 1e6).toBe(centred[5]);
    const expected = covariance(momentsOf(centred, m, d));
    const merged = fold(mergeShards(shifted, d, [50, 1, 0, 100, 60]), d);
    expect(relDiff(covariance(merged), expected)).toBeLessThan(1e-10);

    // The test has teeth: the naive one-pass formula sum(x x^T) - n mean mean^T, in float64, is far off here.
    const naive = new Float64Array(d * d);
    const mean = new Float64Array(d);
    for (let i = 0; i < m; i++) for (let j = 0; j < d; j++) mean[j] += shifted[i * d + j] / m;
    for (let a = 0; a < d; a++) {
      for (let b = 0; b < d; b++) {
        let s = 0;
        for (let i = 0; i < m; i++) s += shifted[i * d + a] * shifted[i * d + b];
        naive[a * d + b] = (s - m * mean[a] * mean[b]) / (m - 1);
      }
    }
    expect(relDiff(naive, expected)).toBeGreaterThan(1e-8);
  });
});

describe.each([
  ['tensorCoMoment (the tfjs engine\'s kernel: float32 matMul on the wasm backend)', 'tfjs'],
  ['ortCoMoment (the onnx engine\'s kernel: float64 Gemm on ONNX Runtime)', 'onnx'],
] as const)('%s', (_title, engine) => {
  let kernel: (blockRows?: number) => AsyncCoMomentKernel;
  beforeAll(async () => {
    const tf = (await initTf('wasm')).tf;
    kernel = engine === 'tfjs' ? (blockRows) => tensorCoMoment(tf, blockRows) : (blockRows) => ortCoMoment(loadOrt(), 2, blockRows);
  });

  /** Largest error relative to sqrt(C_ii C_jj), the scale of entry (i, j) (a correlation-sized error). */
  function scaledError(got: Float64Array, want: Float64Array, dim: number): number {
    let worst = 0;
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j < dim; j++) {
        const scale = Math.sqrt(want[i * dim + i] * want[j * dim + j]) || 1;
        worst = Math.max(worst, Math.abs(got[i * dim + j] - want[i * dim + j]) / scale);
      }
    }
    return worst;
  }

  it.each([
    [1000, 96],
    [129, 7],
    [5, 3],
  ])('equals the float64 kernel to float32 precision, exactly symmetric (n=%i, dim=%i)', async (n, dim) => {
    const rows = features(n, dim, n + dim);
    const exact = momentsOf(rows, n, dim);
    const fast = await momentsWith(rows, n, dim, kernel());
    expect(fast.mean).toEqual(exact.mean);
    expect(scaledError(fast.comoment, exact.comoment, dim)).toBeLessThan(1e-6);
    for (let a = 0; a < dim; a++) {
      for (let b = 0; b < a; b++) expect(fast.comoment[a * dim + b]).toBe(fast.comoment[b * dim + a]);
    }
  });

  it('centres in float64 before rounding, so an offset of 1e6 costs nothing', async () => {
    const n = 300;
    const dim = 16;
    const rows = features(n, dim, 5);
    const shifted = rows.map((v) => 1e6 + Math.round(v * 16) / 16);
    const centred = shifted.map((v) => v - 1e6);
    const want = exactCoMoment(centred, n, dim, momentsOf(centred, n, dim).mean);
    const got = (await momentsWith(shifted, n, dim, kernel())).comoment;
    expect(scaledError(got, want, dim)).toBeLessThan(1e-6);
  });

  (engine === 'tfjs' ? it : it.skip)('sums short blocks in float64: more accurate than one long float32 product', async () => {
    const n = 4096;
    const dim = 64;
    const rows = features(n, dim, 11);
    const exact = momentsOf(rows, n, dim).comoment;
    const blocked = scaledError((await momentsWith(rows, n, dim, kernel())).comoment, exact, dim);
    const single = scaledError((await momentsWith(rows, n, dim, kernel(n))).comoment, exact, dim);
    expect(blocked).toBeLessThan(single / 2);
    expect(() => kernel(0)).toThrow(RangeError);
  });

  (engine === 'onnx' ? it : it.skip)('computes in float64 throughout: the float64 kernel to 1e-12, however the rows are chunked', async () => {
    const n = 1000;
    const dim = 40;
    const rows = features(n, dim, 13);
    const exact = momentsOf(rows, n, dim).comoment;
    for (const chunk of [1000, 128, 7]) {
      expect(scaledError((await momentsWith(rows, n, dim, kernel(chunk))).comoment, exact, dim)).toBeLessThan(1e-12);
    }
    expect(() => kernel(0)).toThrow(RangeError);
  });
});

describe('ortProjector', () => {
  it('projects as projectRows does, to float32 resolution', async () => {
    const n = 300;
    const p = 50;
    const rows = features(n, p, 21);
    const model = fitPca(momentsOf(rows, n, p), { kind: 'components', count: 7 });
    const want = projectRows(rows, n, model);
    const got = await ortProjector(loadOrt(), 2)(rows, n, model);
    expect(got).toHaveLength(n * 7);
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(want[i])));
    await expect(ortProjector(loadOrt(), 2)(rows.subarray(1), n, model)).rejects.toThrow(/different model/);
  });
});

describe('covariance', () => {
  it('divides by count - 1 and needs two rows', () => {
    const rows = Float32Array.from([1, 2, 3, 6]); // two rows of dim 2
    expect(Array.from(covariance(momentsOf(rows, 2, 2)))).toEqual([2, 4, 4, 8]);
    expect(() => covariance(momentsOf(rows.subarray(0, 2), 1, 2))).toThrow(/at least 2 feature rows/);
  });
});

describe('encodeMoments / decodeMoments', () => {
  const dim = 11;
  const m = momentsOf(features(50, dim, 3), 50, dim);

  it('round-trips bit for bit, with the documented layout', () => {
    const buf = encodeMoments(m);
    expect(buf.length).toBe(24 + 8 * dim + 8 * ((dim * (dim + 1)) / 2));
    expect(buf.toString('ascii', 0, 8)).toBe('ORCHMOM1');
    expect(buf.readUInt32LE(8)).toBe(dim);
    expect(buf.readDoubleLE(16)).toBe(50);
    expect(buf.readDoubleLE(24)).toBe(m.mean[0]);
    expect(buf.readDoubleLE(24 + 8 * dim + 8)).toBe(m.comoment[1]); // C[0][1], second upper-triangle entry
    const back = decodeMoments(buf, 'x');
    expect(back.dim).toBe(dim);
    expect(back.count).toBe(50);
    expect(Buffer.from(back.mean.buffer).equals(Buffer.from(m.mean.buffer))).toBe(true);
    expect(Buffer.from(back.comoment.buffer).equals(Buffer.from(m.comoment.buffer))).toBe(true);
    expect(encodeMoments(back).equals(buf)).toBe(true);
  });

  it('decodes from a Buffer that does not start on an 8-byte boundary (a slice of a larger read)', () => {
    const buf = encodeMoments(m);
    const big = Buffer.alloc(buf.length + 3);
    buf.copy(big, 3);
    expect(encodeMoments(decodeMoments(big.subarray(3), 'slice')).equals(buf)).toBe(true);
  });

  it('round-trips empty moments', () => {
    const back = decodeMoments(encodeMoments(emptyMoments(4)));
    expect(back.count).toBe(0);
    expect(back.comoment).toEqual(new Float64Array(16));
  });

  it('rejects a bad magic, a truncated or padded file, naming the source', () => {
    const buf = encodeMoments(m);
    const source = 'features/shard-00007.moments';
    const badMagic = Buffer.from(buf);
    badMagic.write('NOTMOMS!', 0, 'ascii');
    expect(() => decodeMoments(badMagic, source)).toThrow(/features\/shard-00007\.moments: bad magic/);
    expect(() => decodeMoments(buf.subarray(0, buf.length - 8), source)).toThrow(/shard-00007.*truncated/);
    expect(() => decodeMoments(Buffer.concat([buf, Buffer.alloc(8)]), source)).toThrow(/shard-00007/);
    expect(() => decodeMoments(buf.subarray(0, 10), source)).toThrow(/shard-00007.*header/);
    expect(() => decodeMoments(Buffer.alloc(0), source)).toThrow(/shard-00007/);
  });
});
