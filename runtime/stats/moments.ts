/**
 * Mergeable first and second moments of feature vectors.
 *
 * Each extract shard writes the moments of its own rows; the fit stage merges them pairwise and derives the
 * covariance matrix that PCA eigen-decomposes. Memory stays O(dim^2) however many images there are, and the
 * order in which shards finish does not matter (the merge is associative and commutative up to rounding).
 *
 * Numerics: a shard's moments are computed in two passes (exact float64 mean first, then the centred
 * co-moment, in float64 or by the tensor backend's float32 matMul in short blocks summed in float64), and shards
 * are merged with the pairwise update of Chan, Golub & LeVeque (1979), the
 * same one Spark's MultivariateOnlineSummarizer / RowMatrix use. Neither ever forms sum(x x^T) - n mean mean^T,
 * which loses every significant digit when the features sit far from zero compared to their spread.
 */
import * as os from 'node:os';
import { OrchardError } from '../errors';
import { mirrorTriangle } from './mirror';

export interface Moments {
  readonly dim: number;
  /** Number of rows summarised (a float64 in the file format, so it may exceed 2^32). */
  readonly count: number;
  /** dim values; all zero when count is 0. */
  readonly mean: Float64Array;
  /** dim*dim row-major, full symmetric matrix: sum over rows of (x - mean)(x - mean)^T. */
  readonly comoment: Float64Array;
}

function checkDim(dim: number, name = 'dim'): void {
  if (!Number.isInteger(dim) || dim < 1) {
    throw new RangeError(`Expected a positive integer for ${name} but got ${dim}`);
  }
  // The comoment matrix has dim^2 float64 entries and the file header stores dim as a uint32.
  if (dim * dim > 2 ** 28) {
    throw new RangeError(`${name} ${dim} is too large: the ${dim}x${dim} co-moment matrix would not fit in memory`);
  }
}

export function emptyMoments(dim: number): Moments {
  checkDim(dim);
  return { dim, count: 0, mean: new Float64Array(dim), comoment: new Float64Array(dim * dim) };
}

/**
 * Rows per block in the co-moment kernel. The centred block is stored column-major (dim x BLOCK float64 =
 * 640 KiB at dim 1280), small enough to stay in L2 while every column pair is dotted against it.
 */
const BLOCK = 64;

/**
 * The second pass of the moments: sum over the n rows of (x - mean)(x - mean)^T, as a full symmetric dim*dim
 * float64 matrix. The default is exact float64 JavaScript; the pipeline passes its engine's matrix product
 * (ONNX Runtime's, see ort-comoment.ts, or the TensorFlow.js backend's, see tensor-comoment.ts), 10 to 20 times
 * faster at dim 1280.
 */
export type CoMomentKernel = (rows: Float32Array, n: number, dim: number, mean: Float64Array) => Float64Array;
/** The same, computed by an engine whose calls are asynchronous (ONNX Runtime). */
export type AsyncCoMomentKernel = (rows: Float32Array, n: number, dim: number, mean: Float64Array) => Promise<Float64Array>;

/** Two-pass moments of n rows (row-major float32, n*dim): the exact float64 mean, then the centred co-moment. */
export function momentsOf(rows: Float32Array, n: number, dim: number, coMoment: CoMomentKernel = exactCoMoment): Moments {
  const mean = meanOf(rows, n, dim);
  return n === 0 ? emptyMoments(dim) : { dim, count: n, mean, comoment: coMoment(rows, n, dim, mean) };
}

/** `momentsOf` with an asynchronous co-moment kernel. */
export async function momentsWith(rows: Float32Array, n: number, dim: number, coMoment: AsyncCoMomentKernel): Promise<Moments> {
  const mean = meanOf(rows, n, dim);
  return n === 0 ? emptyMoments(dim) : { dim, count: n, mean, comoment: await coMoment(rows, n, dim, mean) };
}

/** Pass 1: the exact float64 mean of n rows (all zero for none), after checking the arguments. */
function meanOf(rows: Float32Array, n: number, dim: number): Float64Array {
  checkDim(dim);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`Expected a non-negative integer row count but got ${n}`);
  if (rows.length !== n * dim) {
    throw new RangeError(`Expected ${n} rows x ${dim} features = ${n * dim} values but got ${rows.length}`);
  }
  const mean = new Float64Array(dim);
  if (n === 0) return mean;
  for (let r = 0; r < n; r++) {
    const base = r * dim;
    for (let j = 0; j < dim; j++) mean[j] += rows[base + j];
  }
  for (let j = 0; j < dim; j++) mean[j] /= n;
  // A NaN or infinity would silently poison every statistic downstream; the sums tell us cheaply whether one
  // is present, and only then do we search for where it is.
  for (let j = 0; j < dim; j++) {
    if (!Number.isFinite(mean[j])) throw new RangeError(nonFiniteMessage(rows, n, dim));
  }
  return mean;
}

/** Float64 throughout, register-blocked: the reference kernel, exact to rounding. */
export function exactCoMoment(rows: Float32Array, n: number, dim: number, mean: Float64Array): Float64Array {
  // Pass 2: C = D^T D with D the centred rows, upper triangle only. The dimension is padded to an even number
  // so the 2x2 register-blocked kernel needs no tail cases; padding columns are zero and are dropped at the end.
  const p = dim + (dim & 1);
  const upper = new Float64Array(p * p);
  const block = new Float64Array(p * BLOCK); // column-major: block[j * BLOCK + r]
  for (let r0 = 0; r0 < n; r0 += BLOCK) {
    const rb = Math.min(BLOCK, n - r0);
    if (rb < BLOCK) block.fill(0); // zero rows contribute nothing, so the last short block needs no special case
    for (let r = 0; r < rb; r++) {
      const base = (r0 + r) * dim;
      for (let j = 0; j < dim; j++) block[j * BLOCK + r] = rows[base + j] - mean[j];
    }
    accumulateUpper(block, p, upper);
  }

  const comoment = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      const v = upper[i * p + j];
      comoment[i * dim + j] = v;
      comoment[j * dim + i] = v;
    }
  }
  return comoment;
}

/**
 * upper[i][j] += sum_r block[i][r] * block[j][r] for j >= i (and a few harmless entries just below the
 * diagonal), four outputs at a time: each pass over r loads 4 values for 4 multiply-adds instead of 2 for 1.
 */
function accumulateUpper(block: Float64Array, p: number, upper: Float64Array): void {
  for (let i = 0; i < p; i += 2) {
    const a0 = i * BLOCK;
    const a1 = a0 + BLOCK;
    for (let j = i; j < p; j += 2) {
      const b0 = j * BLOCK;
      const b1 = b0 + BLOCK;
      let s00 = 0;
      let s01 = 0;
      let s10 = 0;
      let s11 = 0;
      for (let r = 0; r < BLOCK; r++) {
        const x0 = block[a0 + r];
        const x1 = block[a1 + r];
        const y0 = block[b0 + r];
        const y1 = block[b1 + r];
        s00 += x0 * y0;
        s01 += x0 * y1;
        s10 += x1 * y0;
        s11 += x1 * y1;
      }
      const o = i * p + j;
      upper[o] += s00;
      upper[o + 1] += s01;
      upper[o + p] += s10;
      upper[o + p + 1] += s11;
    }
  }
}

function nonFiniteMessage(rows: Float32Array, n: number, dim: number): string {
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < dim; j++) {
      const v = rows[r * dim + j];
      if (!Number.isFinite(v)) return `Feature row ${r} has a non-finite value (${v}) at index ${j}`;
    }
  }
  return 'Feature values overflow float64 when summed';
}

/**
 * Chan et al. pairwise merge: mean = ma + d nb/n, C = Ca + Cb + d d^T na nb / n with d = mb - ma. Pure: returns
 * new arrays, never aliases its inputs' (so a merged result can be modified without touching a shard's) — unless
 * `intoA`: then the result is written into a's arrays (the same values), for a caller that owns them and drops `a`,
 * and is spared two dim x dim matrices to allocate and fill.
 */
export function mergeMoments(a: Moments, b: Moments, intoA = false): Moments {
  if (a.dim !== b.dim) {
    throw new RangeError(`Cannot merge moments of ${a.dim}-dimensional and ${b.dim}-dimensional features`);
  }
  const dim = a.dim;
  if (b.count === 0) return intoA ? a : copyMoments(a);
  if (a.count === 0) return copyMoments(b);
  const count = a.count + b.count;
  const wb = b.count / count;
  const scale = (a.count * b.count) / count;
  const delta = new Float64Array(dim);
  const mean = intoA ? a.mean : new Float64Array(dim);
  for (let j = 0; j < dim; j++) {
    delta[j] = b.mean[j] - a.mean[j];
    mean[j] = a.mean[j] + delta[j] * wb;
  }
  const comoment = intoA ? a.comoment : new Float64Array(dim * dim);
  const ca = a.comoment;
  const cb = b.comoment;
  for (let i = 0; i < dim; i++) {
    const di = delta[i] * scale;
    const row = i * dim;
    for (let j = 0; j < dim; j++) comoment[row + j] = ca[row + j] + cb[row + j] + di * delta[j];
  }
  return { dim, count, mean, comoment };
}

function copyMoments(m: Moments): Moments {
  return { dim: m.dim, count: m.count, mean: Float64Array.from(m.mean), comoment: Float64Array.from(m.comoment) };
}

/** Sample covariance (ddof = 1, as scikit-learn's PCA uses): comoment / (count - 1), dim*dim row-major. */
export function covariance(m: Moments): Float64Array {
  if (m.count < 2) {
    throw new RangeError(`A covariance needs at least 2 feature rows but only ${m.count} were summarised`);
  }
  const out = new Float64Array(m.dim * m.dim);
  const inv = 1 / (m.count - 1);
  for (let i = 0; i < out.length; i++) out[i] = m.comoment[i] * inv;
  return out;
}

/*
 * Shard file layout (all little-endian; every float64 is 8-byte aligned from the start of the file):
 *
 *   offset  size            field
 *   0       8               magic "ORCHMOM1" (ASCII; the trailing digit is the format version)
 *   8       4               uint32 dim
 *   12      4               uint32 reserved, written as 0
 *   16      8               float64 count (rows summarised; a float64 so counts beyond 2^32 fit)
 *   24      8*dim           float64 mean[0..dim)
 *   24+8dim 8*dim(dim+1)/2  float64 comoment upper triangle incl. diagonal, row by row:
 *                           C[0][0..dim), C[1][1..dim), ..., C[dim-1][dim-1]
 *
 * The lower triangle is not stored: the matrix is symmetric by construction. Total size at dim 1280: ~6.3 MiB.
 */
const MAGIC = 'ORCHMOM1';
const HEADER_BYTES = 24;

/** Bytes of a shard file of `dim` features. */
export function encodedMomentsLength(dim: number): number {
  return HEADER_BYTES + 8 * dim + 4 * dim * (dim + 1);
}

export function encodeMoments(m: Moments): Buffer {
  const dim = m.dim;
  const buf = Buffer.alloc(encodedMomentsLength(dim));
  buf.write(MAGIC, 0, 'ascii');
  // DataView rather than a Float64Array view: explicit little-endian whatever the host's byte order.
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  view.setUint32(8, dim, true);
  view.setUint32(12, 0, true);
  view.setFloat64(16, m.count, true);
  let o = HEADER_BYTES;
  for (let j = 0; j < dim; j++, o += 8) view.setFloat64(o, m.mean[j], true);
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++, o += 8) view.setFloat64(o, m.comoment[i * dim + j], true);
  }
  return buf;
}

/** Decodes a shard file; `source` (e.g. its storage key) names the file in every error. */
export function decodeMoments(buf: Buffer, source = 'moments buffer'): Moments {
  const bad = (why: string) => new OrchardError(`Invalid moments file ${source}: ${why}`, 'ERR_INVALID_MOMENTS');
  if (buf.length < HEADER_BYTES) throw bad(`${buf.length} bytes is shorter than the ${HEADER_BYTES}-byte header`);
  const magic = buf.toString('latin1', 0, 8);
  if (magic !== MAGIC) throw bad(`bad magic ${JSON.stringify(magic)} (expected "${MAGIC}")`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dim = view.getUint32(8, true);
  if (dim < 1 || dim * dim > 2 ** 28) throw bad(`unsupported dimension ${dim}`);
  const expected = encodedMomentsLength(dim);
  if (buf.length !== expected) {
    throw bad(`${buf.length} bytes but dimension ${dim} needs exactly ${expected} (truncated or trailing data)`);
  }
  const count = view.getFloat64(16, true);
  if (!Number.isInteger(count) || count < 0) throw bad(`invalid row count ${count}`);
  // The stored float64s copied at once (a little-endian host, as every platform Node runs orchard on is; read one
  // by one otherwise), the upper triangle's rows set in place and mirrored tile by tile: a fifth of the time of
  // reading and mirroring them value by value, which strides over the matrix by whole rows.
  const stored = new Float64Array(dim + (dim * (dim + 1)) / 2);
  if (os.endianness() === 'LE') new Uint8Array(stored.buffer).set(buf.subarray(HEADER_BYTES));
  else for (let i = 0, o = HEADER_BYTES; i < stored.length; i++, o += 8) stored[i] = view.getFloat64(o, true);
  const mean = stored.slice(0, dim);
  const comoment = new Float64Array(dim * dim);
  for (let i = 0, o = dim; i < dim; o += dim - i, i++) comoment.set(stored.subarray(o, o + dim - i), i * dim + i);
  mirrorTriangle(comoment, dim, 'upper');
  return { dim, count, mean, comoment };
}
