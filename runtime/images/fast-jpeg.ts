/**
 * The common case, decoded cheaply: a plain 8-bit YCbCr or grey JPEG with nothing to correct (no EXIF rotation,
 * no ICC profile, no Adobe/CMYK) goes to mozjpeg compiled to WebAssembly (@jsquash/jpeg) instead of sharp.
 *
 * Why: sharp decodes a 100x100 JPEG in about 1.8 CPU-ms, nine tenths of it its per-call machinery (libvips
 * pipeline set-up, metadata, the thread pool); the same mozjpeg called directly takes about 0.2 ms. sharp 0.35
 * decodes JPEG with mozjpeg too, and both convert to RGB inside libjpeg, so the pixels are the same bytes
 * (test/fast-jpeg.test.ts holds both paths to that on every kind of JPEG this path accepts). Everything else
 * (other formats, orientation, colour management, shrinking, damaged data) stays with sharp: the choice is made
 * per image from its header, and any warning from the decoder sends the image back to sharp, which then
 * refuses it with its usual reason.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
// ES module glue of the WebAssembly decoder; bundled (esbuild) and transformed (tsx, jest) into CommonJS.
import mozjpegFactory from '@jsquash/jpeg/codec/dec/mozjpeg_dec.js';

const WASM_FILE = 'mozjpeg_dec.wasm';

/** Width and height from the header of a JPEG the fast path can decode exactly as sharp would; else undefined. */
export function plainJpegSize(data: Uint8Array): { width: number; height: number } | undefined {
  if (data.length < 4 || data[0] !== 0xff || data[1] !== 0xd8) return undefined;
  let size: { width: number; height: number } | undefined;
  let pos = 2;
  while (pos + 4 <= data.length) {
    if (data[pos] !== 0xff) return undefined;
    const marker = data[pos + 1]!;
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === 0xda) return size; // start of scan: the header is over
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) return undefined; // no such marker belongs here
    const length = (data[pos + 2]! << 8) | data[pos + 3]!;
    const start = pos + 4;
    const end = pos + 2 + length;
    if (length < 2 || end > data.length) return undefined;
    const segment = data.subarray(start, end);
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) {
      // Baseline, extended or progressive Huffman; 8-bit; 1 (grey) or 3 (YCbCr) components.
      if (size || segment.length < 6 || segment[0] !== 8) return undefined;
      const height = (segment[1]! << 8) | segment[2]!;
      const width = (segment[3]! << 8) | segment[4]!;
      const components = segment[5]!;
      if (width === 0 || height === 0 || (components !== 1 && components !== 3)) return undefined;
      size = { width, height };
    } else if (marker >= 0xc3 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return undefined; // lossless, hierarchical or arithmetic-coded
    } else if (marker === 0xe1 && startsWith(segment, 'Exif\0\0')) {
      if (exifOrientation(segment.subarray(6)) !== 1) return undefined;
    } else if (marker === 0xe2 && startsWith(segment, 'ICC_PROFILE\0')) {
      return undefined; // colour management is sharp's
    } else if (marker === 0xee && startsWith(segment, 'Adobe')) {
      return undefined; // Adobe's transform flag can mean RGB or CMYK/YCCK
    }
    pos = end;
  }
  return undefined;
}

function startsWith(bytes: Uint8Array, text: string): boolean {
  if (bytes.length < text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[i] !== text.charCodeAt(i)) return false;
  return true;
}

/** The orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block: 1 when absent, 0 when unreadable. */
function exifOrientation(tiff: Uint8Array): number {
  if (tiff.length < 8) return 0;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return 0;
  const u16 = (at: number) => (little ? tiff[at]! | (tiff[at + 1]! << 8) : (tiff[at]! << 8) | tiff[at + 1]!);
  const u32 = (at: number) => (little ? u16(at) + u16(at + 2) * 65536 : u16(at) * 65536 + u16(at + 2));
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return 0;
  const entries = u16(ifd);
  for (let i = 0; i < entries; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) return 0;
    if (u16(entry) === 0x0112) return u16(entry + 8);
  }
  return 1;
}

interface MozjpegModule {
  decode(data: Uint8Array, preserveOrientation: boolean): { data: Uint8ClampedArray; width: number; height: number } | null;
}

let decoder: Promise<{ module: MozjpegModule; warnings: string[] }> | undefined;

/** The .wasm beside the glue in node_modules, or beside the bundle that inlined the glue. */
function wasmFile(): string {
  const beside = path.join(__dirname, WASM_FILE);
  if (fs.existsSync(beside)) return beside;
  return require.resolve(`@jsquash/jpeg/codec/dec/${WASM_FILE}`);
}

function loadDecoder(): Promise<{ module: MozjpegModule; warnings: string[] }> {
  decoder ??= (async () => {
    const wasm = await WebAssembly.compile(await fs.promises.readFile(wasmFile()));
    const warnings: string[] = [];
    const module = (await mozjpegFactory({
      noInitialRun: true,
      instantiateWasm: (imports: WebAssembly.Imports, done: (instance: WebAssembly.Instance) => void) => {
        const instance = new WebAssembly.Instance(wasm, imports);
        done(instance);
        return instance.exports;
      },
      // libjpeg reports damaged data as warnings on stderr; collected here, they send the image to sharp.
      print: (message: string) => warnings.push(message),
      printErr: (message: string) => warnings.push(message),
    })) as unknown as MozjpegModule;
    return { module, warnings };
  })();
  decoder.catch(() => (decoder = undefined));
  return decoder;
}

/**
 * RGBA pixels (4 bytes per pixel, alpha 255) of a JPEG that `plainJpegSize` accepted, or undefined when the
 * decoder failed or warned (damaged or truncated data): sharp then takes the image and says what is wrong.
 */
export async function decodePlainJpeg(data: Uint8Array): Promise<{ rgba: Uint8Array; width: number; height: number } | undefined> {
  const { module, warnings } = await loadDecoder();
  warnings.length = 0;
  let image: ReturnType<MozjpegModule['decode']>;
  try {
    image = module.decode(data, false);
  } catch {
    return undefined;
  }
  if (!image || warnings.length > 0) return undefined;
  return { rgba: new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), width: image.width, height: image.height };
}
