import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { invalidParameter } from '../errors';
import { decodePlainJpeg, plainJpegSize } from './fast-jpeg';
import { enlargeBilinear } from './upscale';

// libvips keeps recent operations (up to 50 MB, 20 files, 100 operations by default) in a process-wide cache.
// A batch run decodes every image exactly once, so the cache never hits: it only holds memory that grows with
// the run, when peak memory must stay flat however many images there are.
sharp.cache(false);

/** Threads libvips decodes and resizes on (its default: the cores the process sees, which a Lambda function has more of than it pays for). */
export function setImageThreads(threads: number): void {
  sharp.concurrency(threads);
}

export interface PreprocessOptions {
  /** Side of the square model input in pixels, e.g. 224 for MobileNetV2. */
  readonly size: number;
  /**
   * Decompression-bomb guard: the most pixels (width x height) an input may declare. Checked against the header
   * before anything is decoded, and also given to sharp as `limitInputPixels`. 40_000_000 (a 40-megapixel
   * photo) is a sensible value; Fruits-360 images have 10,000.
   */
  readonly maxPixels: number;
  /**
   * False: an image with both sides at most `size` is left at its own size (width × height × 3 bytes, `ownSize`),
   * for an engine that enlarges inside its graph (bit-identical to enlargeBilinear). @default true
   */
  readonly enlarge?: boolean;
}

export interface PreprocessedImage {
  /** size*size*3 bytes: 8-bit sRGB, rows top to bottom, pixels left to right, R G B per pixel, no alpha. */
  readonly pixels: Buffer;
  /** Width of the original image as displayed, i.e. after its EXIF orientation. */
  readonly width: number;
  readonly height: number;
  /** Format detected from the content (never from the file name): one of SUPPORTED_FORMATS. */
  readonly format: string;
  /** True when `pixels` are width × height × 3 bytes, not enlarged yet (asked with `enlarge: false`). */
  readonly ownSize?: boolean;
}

export type ImageErrorCode = 'EMPTY' | 'NOT_AN_IMAGE' | 'CORRUPT' | 'TOO_LARGE' | 'UNSUPPORTED_FORMAT' | 'BAD_OUTPUT';

/**
 * One input image cannot be used. The run lists it in errors.csv with `reason` and carries on, so `reason` is a
 * short, single-line text a person can act on; `code` is for counting and for tests.
 */
export class ImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
    this.name = 'ImageError';
  }
}

export function isImageError(error: unknown): error is ImageError {
  return error instanceof ImageError;
}

/**
 * Raster formats accepted, as named by sharp's content sniffing. Everything else sharp can read is refused on
 * purpose: SVG and PDF are documents rendered at an arbitrary size (and SVG is XML that may reference other
 * files), HEIF/AVIF, JPEG 2000 and the like do not occur in photo datasets we take.
 */
export const SUPPORTED_FORMATS: readonly string[] = Object.freeze(['jpeg', 'png', 'webp', 'gif', 'tiff']);

/** White, because Fruits-360 photographs fruit on a white background: transparent areas should look the same. */
const FLATTEN_BACKGROUND = { r: 255, g: 255, b: 255 };

/**
 * Decodes one image from its bytes and turns it into the model's input pixels: EXIF orientation applied, any
 * colour space or bit depth converted to 8-bit sRGB, alpha flattened on white, first frame only for animated
 * images, squashed (not cropped) to size x size like Keras `load_img(target_size=...)`: shrunk by sharp with a
 * Lanczos-3 filter when it is larger than that, enlarged bilinearly (half-pixel centres, as PIL and
 * `tf.image.resize`) when it is not, as Fruits-360's 100×100 photos are for a 224×224 model.
 * Throws ImageError for any problem with the image itself.
 */
export async function preprocessImage(data: Buffer, options: PreprocessOptions): Promise<PreprocessedImage> {
  const { size, maxPixels } = checkOptions(data, options);
  // The common case (a plain JPEG no larger than the model's input) skips sharp: same pixels, a tenth of the CPU.
  const plain = plainJpegSize(data);
  if (plain && plain.width <= size && plain.height <= size && plain.width * plain.height <= maxPixels) {
    const decoded = await decodePlainJpeg(data);
    if (decoded && decoded.width === plain.width && decoded.height === plain.height) {
      if (options.enlarge === false) return { pixels: dropAlpha(decoded.rgba), width: plain.width, height: plain.height, format: 'jpeg', ownSize: true };
      const pixels = Buffer.allocUnsafe(size * size * 3);
      enlargeBilinear(decoded.rgba, plain.width, plain.height, size, pixels, 0, 4);
      return { pixels, width: plain.width, height: plain.height, format: 'jpeg' };
    }
  }
  return decodeWithSharp(data, size, maxPixels, options.enlarge !== false);
}

/** RGB from RGBA (the WebAssembly decoder's output; JPEG has no alpha, so nothing is lost). */
function dropAlpha(rgba: Uint8Array): Buffer {
  const rgb = Buffer.allocUnsafe((rgba.length / 4) * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    rgb[o] = rgba[i]!;
    rgb[o + 1] = rgba[i + 1]!;
    rgb[o + 2] = rgba[i + 2]!;
  }
  return rgb;
}

/** preprocessImage without the JPEG fast path: every image through sharp, as before it existed. */
export async function preprocessWithSharp(data: Buffer, options: PreprocessOptions): Promise<PreprocessedImage> {
  const { size, maxPixels } = checkOptions(data, options);
  return decodeWithSharp(data, size, maxPixels, options.enlarge !== false);
}

function checkOptions(data: Buffer, options: PreprocessOptions): PreprocessOptions {
  const { size, maxPixels } = options;
  if (!Number.isInteger(size) || size < 1) throw invalidParameter('size', 'a positive integer', size);
  if (!Number.isInteger(maxPixels) || maxPixels < 1) {
    throw invalidParameter('maxPixels', 'a positive integer', maxPixels);
  }
  if (data.length === 0) throw new ImageError('EMPTY', 'empty file');
  return options;
}

async function decodeWithSharp(data: Buffer, size: number, maxPixels: number, enlargeHere: boolean): Promise<PreprocessedImage> {
  // Header only. The pixel limit is off here so that a bomb's declared size can be read and reported; nothing
  // is decoded yet, and the check right below refuses it.
  let metadata: Metadata;
  try {
    metadata = await sharp(data, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw fromSharpError(error);
  }
  const format = metadata.format as string | undefined;
  if (!format) throw new ImageError('NOT_AN_IMAGE', 'not an image (unrecognised content)');
  if (!SUPPORTED_FORMATS.includes(format)) {
    throw new ImageError('UNSUPPORTED_FORMAT', `unsupported image format '${format}'`);
  }
  const { width, height } = metadata;
  if (!width || !height) throw new ImageError('CORRUPT', 'corrupt or truncated image: no dimensions in header');
  if (width * height > maxPixels) {
    throw new ImageError(
      'TOO_LARGE',
      `image too large: ${width}x${height} pixels exceeds the ${maxPixels}-pixel limit (decompression bomb guard)`,
    );
  }

  const oriented = metadata.autoOrient ?? { width, height };
  // Small images are decoded at their own size and enlarged below: libvips enlarges four times slower.
  const enlarge = oriented.width <= size && oriented.height <= size;
  let output: { data: Buffer; info: OutputInfo };
  try {
    let pipeline = sharp(data, {
      // 'warning' is sharp 0.35's default, stated here because it matters: libjpeg reports damaged entropy data
      // ("Corrupt JPEG data: premature end of data segment") only as a warning and fills the rest with grey; any
      // laxer level lets such half-grey images through as if they were fine.
      failOn: 'warning',
      limitInputPixels: maxPixels,
      autoOrient: true,
      // First frame only of an animated GIF/WebP, or first page of a TIFF (sharp's default, stated for intent).
      pages: 1,
    }).flatten({ background: FLATTEN_BACKGROUND });
    if (!enlarge) pipeline = pipeline.resize(size, size, { fit: 'fill' });
    output = await pipeline
      // Grey, CMYK (through sharp's built-in profile when none is embedded), 16-bit and palette inputs all end
      // up as sRGB; embedded ICC profiles are honoured on the way.
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw fromSharpError(error);
  }

  const { info } = output;
  const [outWidth, outHeight] = enlarge ? [oriented.width, oriented.height] : [size, size];
  if (info.channels !== 3 || info.width !== outWidth || info.height !== outHeight || output.data.length !== outWidth * outHeight * 3) {
    throw new ImageError(
      'BAD_OUTPUT',
      `unexpected decoder output: ${info.width}x${info.height} with ${info.channels} channels in ${output.data.length}` +
        ` bytes (expected ${outWidth}x${outHeight} with 3 channels in ${outWidth * outHeight * 3} bytes)`,
    );
  }
  if (enlarge && !enlargeHere) return { pixels: output.data, width: oriented.width, height: oriented.height, format, ownSize: true };
  let pixels = output.data;
  if (enlarge) {
    pixels = Buffer.allocUnsafe(size * size * 3);
    enlargeBilinear(output.data, outWidth, outHeight, size, pixels);
  }
  return { pixels, width: oriented.width, height: oriented.height, format };
}

/** Maps what sharp/libvips throws for a bad input to an ImageError with a one-line reason. */
function fromSharpError(error: unknown): ImageError {
  const message = error instanceof Error ? error.message : String(error);
  const firstLine = (message.split('\n').find((line) => line.trim() !== '') ?? message).trim();
  if (/unsupported image format/i.test(firstLine)) {
    return new ImageError('NOT_AN_IMAGE', 'not an image (unrecognised content)', { cause: error });
  }
  if (/empty/i.test(firstLine) && /input/i.test(firstLine)) {
    return new ImageError('EMPTY', 'empty file', { cause: error });
  }
  if (/exceeds pixel limit/i.test(firstLine)) {
    return new ImageError('TOO_LARGE', `image too large: ${firstLine} (decompression bomb guard)`, { cause: error });
  }
  if (/exceeds channel limit/i.test(firstLine)) {
    return new ImageError('UNSUPPORTED_FORMAT', `unsupported image: ${firstLine}`, { cause: error });
  }
  // "Input buffer has corrupt header: VipsJpeg: ..." reads better without sharp's preamble.
  const detail = firstLine.replace(/^Input (buffer|file) has /i, '');
  return new ImageError('CORRUPT', `corrupt or truncated image: ${detail}`, { cause: error });
}
