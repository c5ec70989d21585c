/**
 * Bilinear enlargement of 8-bit RGB images, with half-pixel centres (the convention of PIL, OpenCV and
 * `tf.image.resize`). Why not sharp: libvips enlarges through its affine transform, one interpolator call per
 * output sample, which measured 2.7 ms for a 100×100 → 224×224 image on this project's machine (more than the
 * decode, and a third of what the model itself costs per image at 270 images/s); this separable pass takes
 * 0.7 ms. Only enlargement is done here: shrinking needs a low-pass filter, which sharp does well and quickly.
 */

/** For each output position: the two source samples and the weight of the second. */
export interface AxisTaps {
  readonly first: Int32Array;
  readonly second: Int32Array;
  /** Weight of `second`, in 1/256ths: the passes add integers, so the result is the same on every CPU. */
  readonly weight: Int32Array;
}

const taps = new Map<string, AxisTaps>();

/** The taps of one axis (cached): the ONNX graph that enlarges inside the engine (enlarge-graph.ts) uses the same. */
export function axisTaps(inSize: number, outSize: number): AxisTaps {
  const key = `${inSize}:${outSize}`;
  const cached = taps.get(key);
  if (cached) return cached;
  const first = new Int32Array(outSize);
  const second = new Int32Array(outSize);
  const weight = new Int32Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    // The centre of output pixel o, in source coordinates; clamped so the edges repeat the border pixels.
    const at = Math.min(Math.max((o + 0.5) * scale - 0.5, 0), inSize - 1);
    const lo = Math.floor(at);
    first[o] = lo;
    second[o] = Math.min(lo + 1, inSize - 1);
    weight[o] = Math.round((at - lo) * 256);
  }
  const made = { first, second, weight };
  // Few distinct sizes occur in a dataset; the map is bounded anyway so that odd ones cannot grow it forever.
  if (taps.size > 256) taps.clear();
  taps.set(key, made);
  return made;
}

/**
 * Enlarges `src` (height × width × `channels` bytes, row-major RGB, or RGBA whose alpha is ignored) to size ×
 * size RGB into `out` at `offset`. Both sides must be at most `size` (a side equal to it is copied as is).
 */
export function enlargeBilinear(src: Uint8Array, width: number, height: number, size: number, out: Uint8Array, offset = 0, channels: 3 | 4 = 3): void {
  if (width > size || height > size) throw new RangeError(`enlargeBilinear cannot shrink ${width}×${height} to ${size}×${size}`);
  const expected = width * height * channels;
  if (src.length !== expected) throw new RangeError(`Expected ${width}×${height}×${channels} = ${expected} bytes but got ${src.length}`);
  const x = axisTaps(width, size);
  const y = axisTaps(height, size);
  const rowOut = size * 3;
  // Horizontal pass: every source row, widened to `size`, in 1/256ths (at most 255 × 256: 16 bits suffice). The
  // scratch rows are reused from call to call: a fresh array per image cost as much as the arithmetic.
  const rows = scratchRows(height * rowOut);
  const first = x.first;
  const second = x.second;
  const weight = x.weight;
  for (let r = 0; r < height; r++) {
    const row = r * width * channels;
    let o = r * rowOut;
    for (let c = 0; c < size; c++) {
      const a = row + first[c]! * channels;
      const b = row + second[c]! * channels;
      const wb = weight[c]!;
      const wa = 256 - wb;
      rows[o] = src[a]! * wa + src[b]! * wb;
      rows[o + 1] = src[a + 1]! * wa + src[b + 1]! * wb;
      rows[o + 2] = src[a + 2]! * wa + src[b + 2]! * wb;
      o += 3;
    }
  }
  // Vertical pass: blend two widened rows, round to the nearest byte (values stay within 0..255 by construction).
  for (let r = 0; r < size; r++) {
    const a = y.first[r]! * rowOut;
    const b = y.second[r]! * rowOut;
    const wb = y.weight[r]!;
    const wa = 256 - wb;
    const o = offset + r * rowOut;
    for (let i = 0; i < rowOut; i++) out[o + i] = (rows[a + i]! * wa + rows[b + i]! * wb + 32768) >> 16;
  }
}

let scratch = new Uint16Array(0);

function scratchRows(length: number): Uint16Array {
  if (scratch.length < length) scratch = new Uint16Array(length);
  return scratch;
}
