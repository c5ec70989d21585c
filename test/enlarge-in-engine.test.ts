/**
 * On the onnx engine, small images go to the model un-enlarged and are enlarged inside its worker by an ONNX graph,
 * batched by size. An `orchard run` on images of mixed sizes (100×100 and 80×64 JPEGs through the WebAssembly
 * decoder, small PNGs through sharp, ten more odd sizes than the batches kept open at once, exactly 224×224,
 * larger ones shrunk by sharp, broken files) must give what the JavaScript enlargement gives (ORCHARD_ENLARGE=js):
 * the same rows in the same (key) order, the same errors, the same features, on the fp32 and the int8 graph.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { generateSampleImages } from '../runtime/images/generate';
import { preprocessImage } from '../runtime/images/preprocess';
import { enlargeBilinear } from '../runtime/images/upscale';
import { mulberry32 } from '../runtime/random';
import { orchard } from './helpers/cli';
import { readExtracted, type Extracted } from './helpers/extracted';
import { tempDir } from './helpers/s3';

const SHARD_SIZE = 25;

/** Random-content images of the given kind and size, named so that, sorted, sizes and kinds alternate. */
async function mixedImages(dir: string): Promise<void> {
  await generateSampleImages(dir, { perClass: 2, seed: 11 });
  const random = mulberry32(17);
  const noise = (width: number, height: number) => sharp(Uint8Array.from({ length: width * height * 3 }, () => Math.floor(random() * 256)), { raw: { width, height, channels: 3 } });
  const files: [string, () => Promise<Buffer>][] = [];
  for (let i = 0; i < 6; i++) files.push([`jpeg-80x64-${i}.jpg`, () => noise(80, 64).jpeg().toBuffer()]);
  for (let i = 0; i < 3; i++) files.push([`png-80x64-${i}.png`, () => noise(80, 64).png().toBuffer()]);
  for (let i = 0; i < 10; i++) files.push([`odd-${i}.jpg`, () => noise(20 + i * 9, 10 + i * 7).jpeg().toBuffer()]);
  files.push(['exact-224.jpg', () => noise(224, 224).jpeg().toBuffer()]);
  for (let i = 0; i < 3; i++) files.push([`large-${i}.jpg`, () => noise(300, 260).jpeg().toBuffer()]);
  files.push(['broken-truncated.jpg', async () => (await noise(90, 90).jpeg().toBuffer()).subarray(0, 300)]);
  files.push(['broken-text.jpg', async () => Buffer.from('not an image')]);
  // Interleaved in key order: a prefix from a fixed shuffle.
  const order = files.map((_, i) => i).sort(() => random() - 0.5);
  fs.mkdirSync(path.join(dir, 'Mixed'), { recursive: true });
  for (const [rank, index] of order.entries()) {
    const [name, make] = files[index]!;
    fs.writeFileSync(path.join(dir, 'Mixed', `${String(rank).padStart(3, '0')}-${name}`), await make());
  }
}

async function run(input: string, runId: string, enlarge: 'engine' | 'js', extra: string[] = []): Promise<Extracted> {
  const output = tempDir();
  const before = process.env.ORCHARD_ENLARGE;
  if (enlarge === 'js') process.env.ORCHARD_ENLARGE = 'js';
  else delete process.env.ORCHARD_ENLARGE;
  try {
    const result = await orchard(
      'run', '-i', input, '-o', output, '--run-id', runId, '--model', 'mobilenet_v2_offline', '--engine', 'onnx', '--threads', '2',
      '-k', '2', '--batch-size', '4', '--shard-size', String(SHARD_SIZE), '--max-error-rate', '0.5', '--keep-features', '-q', ...extra,
    );
    expect(result.err).not.toMatch(/error:/i);
    expect(result.code).toBe(0);
  } finally {
    if (before === undefined) delete process.env.ORCHARD_ENLARGE;
    else process.env.ORCHARD_ENLARGE = before;
  }
  return readExtracted(output, runId);
}

/** Largest absolute difference between the two runs' features, and how many of the values are bit-identical. */
function compare(a: Extracted, b: Extracted): { maxAbs: number; identical: number; total: number } {
  let maxAbs = 0;
  let identical = 0;
  let total = 0;
  a.features.forEach((rows, shard) => {
    const other = b.features[shard]!;
    expect(other.length).toBe(rows.length);
    for (let i = 0; i < rows.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(rows[i]! - other[i]!));
      if (Object.is(rows[i], other[i])) identical++;
      total++;
    }
  });
  return { maxAbs, identical, total };
}

function expectSameRows(engine: Extracted, js: Extracted): void {
  expect(engine.metas.length).toBeGreaterThan(1);
  expect(engine.metas.map((meta) => meta.rows)).toEqual(js.metas.map((meta) => meta.rows));
  expect(engine.metas.map((meta) => meta.errors)).toEqual(js.metas.map((meta) => meta.errors));
  // Rows in key order within each shard, whichever size batch each image went in.
  for (const meta of engine.metas) {
    const keys = meta.rows.map((row) => row.key);
    expect(keys).toEqual([...keys].sort());
  }
}

describe('preprocessImage with enlarge: false', () => {
  const random = mulberry32(3);
  const noise = (width: number, height: number) => sharp(Uint8Array.from({ length: width * height * 3 }, () => Math.floor(random() * 256)), { raw: { width, height, channels: 3 } });
  const options = { size: 224, maxPixels: 1e6 };

  test.each([
    ['a plain JPEG (the WebAssembly decoder)', () => noise(80, 64).jpeg().toBuffer()],
    ['a PNG (sharp)', () => noise(80, 64).png().toBuffer()],
  ])('%s no larger than the model: its own RGB pixels, which enlargeBilinear turns into what the default gives', async (_, make) => {
    const data = await make();
    const own = await preprocessImage(data, { ...options, enlarge: false });
    const enlarged = await preprocessImage(data, options);
    expect(own).toMatchObject({ width: 80, height: 64, ownSize: true });
    expect(own.pixels.length).toBe(80 * 64 * 3);
    expect(enlarged.ownSize).toBeUndefined();
    const out = Buffer.alloc(224 * 224 * 3);
    enlargeBilinear(own.pixels, 80, 64, 224, out);
    expect(out.equals(enlarged.pixels)).toBe(true);
  });

  test('a larger image is still shrunk to the model size', async () => {
    const image = await preprocessImage(await noise(300, 260).jpeg().toBuffer(), { ...options, enlarge: false });
    expect(image.ownSize).toBeUndefined();
    expect(image.pixels.length).toBe(224 * 224 * 3);
  });
});

describe('orchard run on images of mixed sizes: enlarged in the engine or in JavaScript', () => {
  let input: string;
  beforeAll(async () => {
    input = tempDir();
    await mixedImages(input);
  });

  test('fp32: the same rows, errors and features; the engine path reports its enlargement time', async () => {
    const engine = await run(input, 'engine', 'engine');
    const js = await run(input, 'js', 'js');
    expectSameRows(engine, js);
    const failed = engine.metas.flatMap((meta) => meta.errors.map((error) => error.key.replace(/^Mixed\/\d+-/, ''))).sort();
    expect(failed).toEqual(['broken-text.jpg', 'broken-truncated.jpg']);
    const sum = (run: Extracted) => run.metas.reduce((total, meta) => total + (meta.enlargeSeconds ?? 0), 0);
    expect(sum(engine)).toBeGreaterThan(0);
    expect(sum(js)).toBe(0);
    const { maxAbs, identical, total } = compare(engine, js);
    console.log(`fp32: ${identical} of ${total} feature values bit-identical, max abs difference ${maxAbs.toExponential(2)}`);
    expect(maxAbs).toBeLessThanOrEqual(1e-4);
  });

  test('int8: the same rows, errors and features', async () => {
    const engine = await run(input, 'engine8', 'engine', ['--precision', 'int8']);
    const js = await run(input, 'js8', 'js', ['--precision', 'int8']);
    expectSameRows(engine, js);
    expect(engine.metas.reduce((total, meta) => total + (meta.enlargeSeconds ?? 0), 0)).toBeGreaterThan(0);
    const { maxAbs, identical, total } = compare(engine, js);
    console.log(`int8: ${identical} of ${total} feature values bit-identical, max abs difference ${maxAbs.toExponential(2)}`);
    expect(maxAbs).toBeLessThanOrEqual(1e-4);
  });
});
