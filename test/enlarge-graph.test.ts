/**
 * The ONNX graph that enlarges small images inside the onnx engine gives enlargeBilinear's bytes exactly, on
 * every shape the taps can take: one pixel, one row, one column, non-square, one short of the model's size, the
 * model's size itself (a copy), Fruits-360's 100×100, random content and the extremes 0 and 255.
 */
import { enlargeBilinear } from '../runtime/images/upscale';
import { buildEnlargeGraph, ENLARGE_INPUT, ENLARGE_OUTPUT } from '../runtime/images/enlarge-graph';
import { loadOrt, sessionOptions } from '../runtime/onnx/runtime';
import { mulberry32 } from '../runtime/random';

const SIZE = 224;
const SHAPES: readonly (readonly [number, number])[] = [
  [1, 1],
  [1, 7],
  [9, 1],
  [1, 224],
  [224, 1],
  [2, 2],
  [3, 5],
  [64, 80],
  [80, 64],
  [100, 100],
  [99, 101],
  [223, 224],
  [224, 223],
  [224, 224],
  [150, 37],
  [113, 200],
];

/** n random images of height × width × 3, some pixels forced to the extremes so that rounding at 0 and 255 is hit. */
function randomImages(n: number, height: number, width: number, seed: number): Uint8Array {
  const random = mulberry32(seed);
  return Uint8Array.from({ length: n * height * width * 3 }, () => {
    const r = random();
    return r < 0.1 ? 0 : r < 0.2 ? 255 : Math.floor(random() * 256);
  });
}

async function enlargeInGraph(pixels: Uint8Array, n: number, height: number, width: number, size: number): Promise<Uint8Array> {
  const { ort } = loadOrt();
  const session = await ort.InferenceSession.create(buildEnlargeGraph(height, width, size), sessionOptions({ threads: 1 }));
  try {
    const out = await session.run({ [ENLARGE_INPUT]: new ort.Tensor('uint8', pixels, [n, height, width, 3]) });
    return out[ENLARGE_OUTPUT]!.data as Uint8Array;
  } finally {
    await session.release();
  }
}

function enlargeInJs(pixels: Uint8Array, n: number, height: number, width: number, size: number): Uint8Array {
  const out = new Uint8Array(n * size * size * 3);
  const per = height * width * 3;
  for (let i = 0; i < n; i++) enlargeBilinear(pixels.subarray(i * per, (i + 1) * per), width, height, size, out, i * size * size * 3);
  return out;
}

/** Where two byte arrays first differ, for a readable failure; -1 when equal. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe('buildEnlargeGraph', () => {
  test.each(SHAPES)('%ix%i (height x width) to 224x224: the same bytes as enlargeBilinear, batch of 3', async (height, width) => {
    const n = 3;
    const pixels = randomImages(n, height, width, height * 1000 + width);
    const expected = enlargeInJs(pixels, n, height, width, SIZE);
    const actual = await enlargeInGraph(pixels, n, height, width, SIZE);
    expect(actual.length).toBe(expected.length);
    expect(firstDifference(actual, expected)).toBe(-1);
  });

  test('other model sizes, including one whose side has no divisor up to 32 (blocks of one output)', async () => {
    for (const [height, width, size] of [[20, 30, 96], [5, 7, 37], [50, 50, 64]] as const) {
      const pixels = randomImages(2, height, width, size);
      expect(firstDifference(await enlargeInGraph(pixels, 2, height, width, size), enlargeInJs(pixels, 2, height, width, size))).toBe(-1);
    }
  });

  test('a batch of one and a batch of 8 give each image the bytes it gets alone', async () => {
    const pixels = randomImages(8, 100, 100, 42);
    const batch = await enlargeInGraph(pixels, 8, 100, 100, SIZE);
    const fifth = await enlargeInGraph(pixels.subarray(4 * 30000, 5 * 30000), 1, 100, 100, SIZE);
    expect(firstDifference(batch.subarray(4 * SIZE * SIZE * 3, 5 * SIZE * SIZE * 3), fifth)).toBe(-1);
  });

  test('refuses a side larger than the model size or not a positive integer', () => {
    expect(() => buildEnlargeGraph(225, 100, SIZE)).toThrow(/height 225 is not within 1..224/);
    expect(() => buildEnlargeGraph(100, 0, SIZE)).toThrow(/width 0/);
  });
});
