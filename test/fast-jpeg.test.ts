import sharp, { type JpegOptions } from 'sharp';
import { decodePlainJpeg, plainJpegSize } from '../runtime/images/fast-jpeg';
import { preprocessImage, preprocessWithSharp } from '../runtime/images/preprocess';

const OPTIONS = { size: 224, maxPixels: 40_000_000 };

/** A photo-like pattern (smooth gradients plus texture), so that every subsampling and quality shows. */
function photo(width: number, height: number): Buffer {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      pixels[i] = (x * 255) / Math.max(1, width - 1);
      pixels[i + 1] = (y * 255) / Math.max(1, height - 1);
      pixels[i + 2] = (x * 31 + y * 17 + ((x * y) % 23) * 9) % 256;
    }
  }
  return pixels;
}

interface Kind {
  readonly name: string;
  readonly width: number;
  readonly height: number;
  readonly jpeg: JpegOptions;
  readonly grey?: boolean;
}

const KINDS: Kind[] = [];
for (const [width, height] of [[100, 100], [1, 1], [7, 13], [224, 224], [224, 100], [37, 224], [99, 101]] as const) {
  for (const chromaSubsampling of ['4:2:0', '4:4:4']) {
    for (const progressive of [false, true]) {
      KINDS.push({ name: `${width}x${height} ${chromaSubsampling}${progressive ? ' progressive' : ''}`, width, height, jpeg: { quality: 80, chromaSubsampling, progressive } });
    }
  }
  KINDS.push({ name: `${width}x${height} grey`, width, height, jpeg: { quality: 80 }, grey: true });
  KINDS.push({ name: `${width}x${height} grey progressive`, width, height, jpeg: { quality: 80, progressive: true }, grey: true });
}
for (const quality of [10, 50, 95, 100]) KINDS.push({ name: `100x100 quality ${quality}`, width: 100, height: 100, jpeg: { quality } });
KINDS.push({ name: '100x100 without mozjpeg defaults', width: 100, height: 100, jpeg: { quality: 90, mozjpeg: false } });
KINDS.push({ name: '100x100 optimised, no trellis', width: 100, height: 100, jpeg: { quality: 90, optimiseCoding: true, trellisQuantisation: false, overshootDeringing: true } });

/** The JPEG with an APP1 EXIF block holding only an orientation tag, in either byte order (no ICC profile). */
function withOrientation(jpeg: Buffer, orientation: number, little: boolean): Buffer {
  const tiff = Buffer.alloc(26);
  const u16 = (value: number, at: number) => (little ? tiff.writeUInt16LE(value, at) : tiff.writeUInt16BE(value, at));
  const u32 = (value: number, at: number) => (little ? tiff.writeUInt32LE(value, at) : tiff.writeUInt32BE(value, at));
  tiff.write(little ? 'II' : 'MM', 0, 'latin1');
  u16(42, 2);
  u32(8, 4); // IFD0 right after the header
  u16(1, 8); // one entry: Orientation (0x0112), SHORT, count 1, the value in the first two bytes of its field
  u16(0x0112, 10);
  u16(3, 12);
  u32(1, 14);
  u16(orientation, 18);
  u32(0, 22); // no next IFD
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const header = Buffer.from([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 0xff]);
  return Buffer.concat([jpeg.subarray(0, 2), header, body, jpeg.subarray(2)]);
}

async function encode(kind: Kind): Promise<Buffer> {
  let image = sharp(photo(kind.width, kind.height), { raw: { width: kind.width, height: kind.height, channels: 3 } });
  if (kind.grey) image = image.toColourspace('b-w');
  return image.jpeg(kind.jpeg).toBuffer();
}

describe('the plain-JPEG fast path', () => {
  it.each(KINDS.map((kind) => [kind.name, kind] as const))('%s: accepted, and the same pixels as through sharp', async (_name, kind) => {
    const jpeg = await encode(kind);
    expect(plainJpegSize(jpeg)).toEqual({ width: kind.width, height: kind.height });
    expect(await decodePlainJpeg(jpeg)).toBeDefined();
    const fast = await preprocessImage(jpeg, OPTIONS);
    const slow = await preprocessWithSharp(jpeg, OPTIONS);
    expect(fast.width).toBe(slow.width);
    expect(fast.height).toBe(slow.height);
    expect(fast.format).toBe('jpeg');
    expect(fast.pixels.equals(slow.pixels)).toBe(true);
  });

  it('leaves to sharp what it must correct: EXIF rotation, ICC profiles, CMYK, and images to shrink', async () => {
    const base = sharp(photo(40, 30), { raw: { width: 40, height: 30, channels: 3 } });
    const plain = await base.clone().jpeg().toBuffer();
    expect(plainJpegSize(plain)).toEqual({ width: 40, height: 30 });
    for (const little of [true, false]) {
      expect((await sharp(withOrientation(plain, 6, little)).metadata()).orientation).toBe(6);
      expect(plainJpegSize(withOrientation(plain, 1, little))).toEqual({ width: 40, height: 30 });
      expect(plainJpegSize(withOrientation(plain, 6, little))).toBeUndefined();
      expect(plainJpegSize(withOrientation(plain, 2, little))).toBeUndefined();
    }
    const rotated = withOrientation(plain, 6, true);
    expect(await preprocessImage(rotated, OPTIONS)).toMatchObject({ width: 30, height: 40 });
    expect(plainJpegSize(await base.clone().jpeg().withMetadata({ orientation: 6 }).toBuffer())).toBeUndefined();
    expect(plainJpegSize(await base.clone().jpeg().withIccProfile('p3').toBuffer())).toBeUndefined();
    expect(plainJpegSize(await base.clone().toColourspace('cmyk').jpeg().toBuffer())).toBeUndefined();
    expect(plainJpegSize(await base.clone().png().toBuffer())).toBeUndefined();
    // A JPEG larger than the model input is accepted by the header check but shrunk by sharp (Lanczos-3).
    const large = await sharp(photo(300, 250), { raw: { width: 300, height: 250, channels: 3 } }).jpeg().toBuffer();
    expect((await preprocessImage(large, OPTIONS)).pixels.equals((await preprocessWithSharp(large, OPTIONS)).pixels)).toBe(true);
  });

  it('hands damaged or truncated data back (libjpeg warnings), so that sharp refuses it with its reason', async () => {
    const jpeg = await encode(KINDS[0]!);
    expect(await decodePlainJpeg(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)))).toBeUndefined();
    const damaged = Buffer.from(jpeg);
    for (let i = Math.floor(damaged.length / 2); i < damaged.length - 2; i += 13) damaged[i] = 0xff;
    expect(await decodePlainJpeg(damaged)).toBeUndefined();
    // The decoder recovers: the intact image right after decodes again.
    expect(await decodePlainJpeg(jpeg)).toBeDefined();
    await expect(preprocessImage(damaged, OPTIONS)).rejects.toMatchObject({ code: 'CORRUPT' });
  });
});
