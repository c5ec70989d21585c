import sharp, { type Sharp } from 'sharp';

/** One file of the tricky-input corpus; `name` is the object key it would have in a bucket. */
export interface TrickyInput {
  readonly name: string;
  readonly data: Buffer;
  /** 'ok': must be preprocessed correctly; 'error': must be refused with an ImageError. */
  readonly expect: 'ok' | 'error';
  readonly note: string;
}

/** Colours chosen far apart so that tests can tell which part of an image ended up where. */
export const RED = { r: 220, g: 20, b: 30 } as const;
export const BLUE = { r: 20, g: 40, b: 220 } as const;
export const GREEN = { r: 0, g: 180, b: 0 } as const;

/** 16-bit samples and the 8-bit values they must become: the high byte, not the low one (0x00ff -> 0). */
export const SIXTEEN_BIT_SAMPLES: readonly { readonly value: number; readonly expected: number }[] = [
  { value: 0xffff, expected: 255 },
  { value: 0x8080, expected: 128 },
  { value: 0x00ff, expected: 0 },
  { value: 0x0a0a, expected: 10 },
];

/** PNG's CRC-32 (zlib.crc32 exists only from Node 20.15; package.json allows 20.9). */
function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function solid(width: number, height: number, colour: { r: number; g: number; b: number }): Sharp {
  return sharp({ create: { width, height, channels: 3, background: colour } });
}

/** A photo-like image: detailed enough that half of its JPEG cuts through the compressed scan data. */
async function detailedJpeg(): Promise<Buffer> {
  const width = 160;
  const height = 120;
  const pixels = Buffer.alloc(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7919 + (i >> 5) * 31) % 251;
  return sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

/** Overwrites every 13th byte of the second half of a JPEG (its entropy-coded data) with 0xff. */
function damageScanData(jpeg: Buffer): Buffer {
  const damaged = Buffer.from(jpeg);
  for (let i = Math.floor(damaged.length / 2); i < damaged.length - 2; i += 13) damaged[i] = 0xff;
  return damaged;
}

/**
 * A PNG that declares 30000x30000 pixels (900 megapixels, 2.7 GB once decoded) but holds only a few bytes: the
 * IHDR chunk of a tiny PNG with its size patched and its CRC recomputed, so that the header parses cleanly.
 */
async function decompressionBomb(): Promise<Buffer> {
  const png = Buffer.from(await solid(8, 8, GREEN).png().toBuffer());
  // Signature (8) + IHDR length (4) + "IHDR" (4), then width and height; the CRC covers type and data (17 bytes).
  if (png.toString('latin1', 12, 16) !== 'IHDR') throw new Error('unexpected PNG layout');
  png.writeUInt32BE(30000, 16);
  png.writeUInt32BE(30000, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

/**
 * 120x60 (wider than tall), left half red, right half blue, stored as-is with EXIF orientation 6 ("rotate 90°
 * clockwise to display"). Displayed correctly it is 60x120 with red on top and blue below; ignoring the tag
 * leaves red on the left and blue on the right.
 */
async function exifRotatedJpeg(): Promise<Buffer> {
  const left = await solid(60, 60, RED).png().toBuffer();
  return solid(120, 60, BLUE)
    .composite([{ input: left, left: 0, top: 0 }])
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
}

/** 64x64, fully transparent but for an opaque green disc of radius 20 in the middle. */
async function alphaPng(): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><circle cx="32" cy="32" r="20" fill="rgb(${GREEN.r},${GREEN.g},${GREEN.b})"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** 4x4 16-bit RGB PNG whose every sample is SIXTEEN_BIT_SAMPLES[(pixel + channel) % 4].value. */
async function sixteenBitPng(): Promise<Buffer> {
  const samples = new Uint16Array(4 * 4 * 3);
  for (let i = 0; i < samples.length; i++) {
    const pixel = Math.floor(i / 3);
    samples[i] = SIXTEEN_BIT_SAMPLES[(pixel + (i % 3)) % 4]!.value;
  }
  return sharp(samples, { raw: { width: 4, height: 4, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
}

/** Two frames, red then blue: only the first may be used. */
async function animatedGif(): Promise<Buffer> {
  const frames = await Promise.all([solid(20, 20, RED).png().toBuffer(), solid(20, 20, BLUE).png().toBuffer()]);
  return sharp(frames, { join: { animated: true } }).gif().toBuffer();
}

/**
 * Files a run over real buckets meets sooner or later. The names carry misleading or missing extensions on
 * purpose: the format must come from the content.
 */
export async function makeTrickyInputs(): Promise<TrickyInput[]> {
  const photo = await detailedJpeg();
  const red = await solid(40, 30, RED).jpeg({ quality: 95 }).toBuffer();
  return [
    {
      name: 'corrupt.jpg',
      data: Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(600, 0x5a)]),
      expect: 'error',
      note: 'a JPEG start-of-image marker followed by garbage',
    },
    {
      name: 'truncated.jpg',
      data: photo.subarray(0, Math.floor(photo.length / 2)),
      expect: 'error',
      note: 'first half of a valid JPEG: the header is fine, the scan data stops midway',
    },
    {
      name: 'damaged-scan.jpg',
      data: damageScanData(photo),
      expect: 'error',
      note: 'complete JPEG whose compressed data is damaged: libjpeg only warns, and would fill the rest with grey',
    },
    { name: 'empty.jpg', data: Buffer.alloc(0), expect: 'error', note: 'zero bytes' },
    {
      name: 'notes.jpg',
      data: Buffer.from('These are not the pixels you are looking for.\n', 'utf8'),
      expect: 'error',
      note: 'plain text with an image extension',
    },
    {
      name: 'bomb.png',
      data: await decompressionBomb(),
      expect: 'error',
      note: 'PNG header declaring 30000x30000 pixels (decompression bomb)',
    },
    {
      name: 'grey.jpg',
      data: await solid(40, 30, { r: 90, g: 160, b: 210 }).toColourspace('b-w').jpeg().toBuffer(),
      expect: 'ok',
      note: 'single-channel grayscale JPEG',
    },
    {
      name: 'cmyk.jpg',
      data: await sharp(red).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer(),
      expect: 'ok',
      note: 'red image stored as a CMYK JPEG without an ICC profile',
    },
    { name: 'deep.png', data: await sixteenBitPng(), expect: 'ok', note: '16 bits per sample RGB PNG' },
    { name: 'alpha.png', data: await alphaPng(), expect: 'ok', note: 'transparent background, opaque green disc' },
    { name: 'rotated.jpg', data: await exifRotatedJpeg(), expect: 'ok', note: 'EXIF orientation 6 on a 120x60 image' },
    { name: 'photo.webp', data: await solid(40, 30, RED).webp().toBuffer(), expect: 'ok', note: 'WebP' },
    { name: 'animated.gif', data: await animatedGif(), expect: 'ok', note: 'two-frame GIF, red then blue' },
    { name: 'scan.tiff', data: await solid(40, 30, RED).tiff().toBuffer(), expect: 'ok', note: 'TIFF' },
    {
      name: 'really-a-png.jpg',
      data: await solid(40, 30, RED).png().toBuffer(),
      expect: 'ok',
      note: 'PNG content behind a .jpg name',
    },
    { name: 'no-extension', data: red, expect: 'ok', note: 'JPEG without any extension' },
    {
      name: 'drawing.svg',
      data: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30" fill="red"/></svg>'),
      expect: 'error',
      note: 'SVG: sharp can render it, but only raster photo formats are accepted',
    },
  ];
}
