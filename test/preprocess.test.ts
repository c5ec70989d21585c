import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { OrchardError } from '../runtime/errors';
import { generateSampleImages, renderFruit, SAMPLE_CLASSES } from '../runtime/images/generate';
import {
  ImageError,
  isImageError,
  preprocessImage,
  SUPPORTED_FORMATS,
  type ImageErrorCode,
  type PreprocessedImage,
} from '../runtime/images/preprocess';
import { BLUE, GREEN, RED, SIXTEEN_BIT_SAMPLES, makeTrickyInputs, type TrickyInput } from './helpers/bad-inputs';

const SIZE = 224;
const OPTIONS = { size: SIZE, maxPixels: 40_000_000 };

type Rgb = [number, number, number];

function pixelAt(image: PreprocessedImage, x: number, y: number, size = SIZE): Rgb {
  const i = (y * size + x) * 3;
  return [image.pixels[i]!, image.pixels[i + 1]!, image.pixels[i + 2]!];
}

function meanColour(pixels: Buffer): Rgb {
  const sum: Rgb = [0, 0, 0];
  for (let i = 0; i < pixels.length; i++) sum[i % 3]! += pixels[i]!;
  const count = pixels.length / 3;
  return [sum[0] / count, sum[1] / count, sum[2] / count];
}

function expectClose(actual: readonly number[], expected: readonly number[], tolerance: number): void {
  actual.forEach((value, i) => expect(Math.abs(value - expected[i]!)).toBeLessThanOrEqual(tolerance));
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

let corpus: TrickyInput[];
const input = (name: string): Buffer => {
  const found = corpus.find((item) => item.name === name);
  if (!found) throw new Error(`no tricky input named ${name}`);
  return found.data;
};

beforeAll(async () => {
  corpus = await makeTrickyInputs();
});

describe('preprocessImage: inputs that must work', () => {
  it('handles every "ok" input of the corpus: size*size*3 bytes, format from the content', async () => {
    const ok = corpus.filter((item) => item.expect === 'ok');
    expect(ok.length).toBeGreaterThanOrEqual(10);
    for (const item of ok) {
      const result = await preprocessImage(item.data, OPTIONS);
      expect(result.pixels).toHaveLength(SIZE * SIZE * 3);
      expect(SUPPORTED_FORMATS).toContain(result.format);
    }
  });

  it('detects the format by content, whatever the name says', async () => {
    expect((await preprocessImage(input('really-a-png.jpg'), OPTIONS)).format).toBe('png');
    expect((await preprocessImage(input('no-extension'), OPTIONS)).format).toBe('jpeg');
    expect((await preprocessImage(input('photo.webp'), OPTIONS)).format).toBe('webp');
    expect((await preprocessImage(input('scan.tiff'), OPTIONS)).format).toBe('tiff');
    expect((await preprocessImage(input('animated.gif'), OPTIONS)).format).toBe('gif');
  });

  it('squashes to size x size and reports the original dimensions', async () => {
    const result = await preprocessImage(input('really-a-png.jpg'), { size: 7, maxPixels: 1200 });
    expect(result).toMatchObject({ width: 40, height: 30 });
    expect(result.pixels).toHaveLength(7 * 7 * 3);
    // A solid image stays solid: 'fill' stretches, it neither crops nor pads.
    for (let i = 0; i < 7 * 7; i++) expectClose(pixelAt(result, i % 7, Math.floor(i / 7), 7), [RED.r, RED.g, RED.b], 2);
  });

  it('turns grayscale into three equal channels', async () => {
    const result = await preprocessImage(input('grey.jpg'), OPTIONS);
    let unequal = 0;
    for (let i = 0; i < result.pixels.length; i += 3) {
      const [r, g, b] = [result.pixels[i], result.pixels[i + 1], result.pixels[i + 2]];
      if (r !== g || r !== b) unequal++;
    }
    expect(unequal).toBe(0);
    // Not black or white: the grey level of the light-blue source.
    expect(result.pixels[0]).toBeGreaterThan(100);
    expect(result.pixels[0]).toBeLessThan(200);
  });

  it('converts CMYK to plausible sRGB: a red image stays red', async () => {
    const [r, g, b] = meanColour((await preprocessImage(input('cmyk.jpg'), OPTIONS)).pixels);
    expect(r).toBeGreaterThan(180);
    expect(g).toBeLessThan(60);
    expect(b).toBeLessThan(60);
  });

  it('reduces 16-bit samples to their high byte', async () => {
    const result = await preprocessImage(input('deep.png'), { size: 4, maxPixels: 100 });
    const expected = Array.from({ length: 4 * 4 * 3 }, (_, i) => {
      const pixel = Math.floor(i / 3);
      return SIXTEEN_BIT_SAMPLES[(pixel + (i % 3)) % 4]!.expected;
    });
    expect([...result.pixels]).toEqual(expected);
  });

  it('flattens transparency on white and keeps opaque colours', async () => {
    const result = await preprocessImage(input('alpha.png'), OPTIONS);
    for (const [x, y] of [
      [0, 0],
      [SIZE - 1, 0],
      [0, SIZE - 1],
      [SIZE - 1, SIZE - 1],
    ] as const) {
      expectClose(pixelAt(result, x, y), [255, 255, 255], 1);
    }
    expectClose(pixelAt(result, SIZE / 2, SIZE / 2), [GREEN.r, GREEN.g, GREEN.b], 3);
  });

  it('applies EXIF orientation 6: dimensions swapped, the left half ends up on top', async () => {
    const result = await preprocessImage(input('rotated.jpg'), OPTIONS);
    expect(result).toMatchObject({ width: 60, height: 120 });
    const margin = 10;
    // Unrotated, the top-right corner would be blue and the bottom-left red.
    expectClose(pixelAt(result, SIZE - margin, margin), [RED.r, RED.g, RED.b], 12);
    expectClose(pixelAt(result, margin, margin), [RED.r, RED.g, RED.b], 12);
    expectClose(pixelAt(result, margin, SIZE - margin), [BLUE.r, BLUE.g, BLUE.b], 12);
    expectClose(pixelAt(result, SIZE - margin, SIZE - margin), [BLUE.r, BLUE.g, BLUE.b], 12);
  });

  it('uses the first frame of an animated GIF', async () => {
    const [r, g, b] = meanColour((await preprocessImage(input('animated.gif'), OPTIONS)).pixels);
    expect(r).toBeGreaterThan(180);
    expect(b).toBeLessThan(80);
    expect(g).toBeLessThan(80);
  });
});

describe('preprocessImage: inputs that must be refused', () => {
  const expected: Record<string, { code: ImageErrorCode; reason: RegExp }> = {
    'corrupt.jpg': { code: 'CORRUPT', reason: /^corrupt or truncated image: .*VipsJpeg/ },
    'truncated.jpg': { code: 'CORRUPT', reason: /^corrupt or truncated image: .*premature end of JPEG image/ },
    'damaged-scan.jpg': { code: 'CORRUPT', reason: /^corrupt or truncated image: .*Corrupt JPEG data/ },
    'empty.jpg': { code: 'EMPTY', reason: /^empty file$/ },
    'notes.jpg': { code: 'NOT_AN_IMAGE', reason: /^not an image \(unrecognised content\)$/ },
    'bomb.png': {
      code: 'TOO_LARGE',
      reason: /^image too large: 30000x30000 pixels exceeds the 40000000-pixel limit \(decompression bomb guard\)$/,
    },
    'drawing.svg': { code: 'UNSUPPORTED_FORMAT', reason: /^unsupported image format 'svg'$/ },
  };

  it('has an expectation for every "error" input of the corpus', () => {
    const names = corpus.filter((item) => item.expect === 'error').map((item) => item.name);
    expect(names.sort()).toEqual(Object.keys(expected).sort());
  });

  it.each(Object.entries(expected))('%s: ImageError with a clear one-line reason', async (name, want) => {
    const error = await rejection(preprocessImage(input(name), OPTIONS));
    expect(error).toBeInstanceOf(ImageError);
    expect(isImageError(error)).toBe(true);
    const imageError = error as ImageError;
    expect(imageError.code).toBe(want.code);
    expect(imageError.reason).toMatch(want.reason);
    expect(imageError.reason).not.toContain('\n');
    expect(imageError.message).toBe(imageError.reason);
  });

  it('applies the pixel limit to ordinary images too, and lets an image at the limit through', async () => {
    const error = await rejection(preprocessImage(input('really-a-png.jpg'), { size: 8, maxPixels: 1199 }));
    expect(error).toMatchObject({ code: 'TOO_LARGE', reason: expect.stringMatching(/40x30 pixels exceeds the 1199-pixel limit/) });
    await expect(preprocessImage(input('really-a-png.jpg'), { size: 8, maxPixels: 1200 })).resolves.toBeDefined();
  });

  it('treats bad options as a configuration error, not as a bad image', async () => {
    for (const options of [
      { size: 0, maxPixels: 100 },
      { size: 2.5, maxPixels: 100 },
      { size: 8, maxPixels: -1 },
    ]) {
      const error = await rejection(preprocessImage(input('no-extension'), options));
      expect(error).toBeInstanceOf(OrchardError);
      expect(isImageError(error)).toBe(false);
    }
  });

  it('isImageError is false for other errors', () => {
    expect(isImageError(new Error('x'))).toBe(false);
    expect(isImageError('CORRUPT')).toBe(false);
  });
});

describe('sample image generator', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-samples-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => dirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  it('offers at least 8 Fruits-360-like classes, with spaces and unicode', () => {
    expect(SAMPLE_CLASSES.length).toBeGreaterThanOrEqual(8);
    expect(SAMPLE_CLASSES).toContain('Apple Braeburn');
    expect(SAMPLE_CLASSES).toContain('Pêche de vigne');
  });

  it('renders the same bytes for the same seed and different bytes for another', async () => {
    const a = await renderFruit('Banana', 42);
    expect((await renderFruit('Banana', 42)).equals(a)).toBe(true);
    expect((await renderFruit('Banana', 43)).equals(a)).toBe(false);
    await expect(renderFruit('Durian', 1)).rejects.toBeInstanceOf(OrchardError);
  });

  it('writes <Class>/<n>_100.jpg files, byte-identical for the same seed', async () => {
    const first = tempDir();
    const second = tempDir();
    const other = tempDir();
    const keys = await generateSampleImages(first, { perClass: 3, seed: 7 });
    expect(keys).toEqual(SAMPLE_CLASSES.flatMap((name) => [0, 1, 2].map((n) => `${name}/${n}_100.jpg`)));
    expect(await generateSampleImages(second, { perClass: 3, seed: 7 })).toEqual(keys);
    await generateSampleImages(other, { perClass: 3, seed: 8 });
    let differing = 0;
    for (const key of keys) {
      const bytes = fs.readFileSync(path.join(first, key));
      expect(fs.readFileSync(path.join(second, key)).equals(bytes)).toBe(true);
      if (!fs.readFileSync(path.join(other, key)).equals(bytes)) differing++;
    }
    expect(differing).toBe(keys.length);
    expect(fs.readdirSync(first).sort()).toEqual([...SAMPLE_CLASSES].sort());
  });

  it('draws a subset of classes as asked, and refuses unknown ones', async () => {
    const dir = tempDir();
    expect(await generateSampleImages(dir, { perClass: 2, classes: ['Kiwi', 'Pêche de vigne'] })).toEqual([
      'Kiwi/0_100.jpg',
      'Kiwi/1_100.jpg',
      'Pêche de vigne/0_100.jpg',
      'Pêche de vigne/1_100.jpg',
    ]);
    expect(fs.existsSync(path.join(dir, 'Pêche de vigne', '1_100.jpg'))).toBe(true);
    await expect(generateSampleImages(dir, { perClass: 1, classes: ['Durian'] })).rejects.toBeInstanceOf(OrchardError);
    await expect(generateSampleImages(dir, { perClass: 0 })).rejects.toBeInstanceOf(OrchardError);
  });

  it('makes 100x100 RGB JPEGs that preprocess cleanly, and classes of distinct colours', async () => {
    const perClass = 4;
    const means = new Map<string, Rgb>();
    for (const name of SAMPLE_CLASSES) {
      const sum: Rgb = [0, 0, 0];
      for (let n = 0; n < perClass; n++) {
        const jpeg = await renderFruit(name, 1000 + n);
        const metadata = await sharp(jpeg).metadata();
        expect(metadata).toMatchObject({ format: 'jpeg', width: 100, height: 100, channels: 3 });
        const image = await preprocessImage(jpeg, { size: 100, maxPixels: 10_000 });
        meanColour(image.pixels).forEach((value, i) => (sum[i]! += value / perClass));
      }
      means.set(name, sum);
    }
    // Pairwise distances between class mean colours: a crude stand-in for "CNN features can separate them".
    const names = [...means.keys()];
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const a = means.get(names[i]!)!;
        const b = means.get(names[j]!)!;
        const distance = Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
        expect({ pair: `${names[i]} / ${names[j]}`, far: distance > 8 }).toEqual({ pair: `${names[i]} / ${names[j]}`, far: true });
      }
    }
  });
});
