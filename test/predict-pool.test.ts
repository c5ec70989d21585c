/**
 * The onnx engine runs a run's batches on two one-thread sessions side by side (runtime/onnx/predict-pool.ts).
 * Batches finish out of order there: every image must still get its own feature row, in key order, and the
 * features must be those one session computes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { generateSampleImages } from '../runtime/images/generate';
import { batchesInFlight, runSessions, splitThreads } from '../runtime/onnx/predict-pool';
import { orchard } from './helpers/cli';
import { readExtracted, type Extracted as ExtractedShards } from './helpers/extracted';
import { tempDir } from './helpers/s3';

describe('how the threads are shared', () => {
  test.each([
    [2, 2, [1, 1]],
    [5, 2, [3, 2]],
    [1, 2, [1]],
    [4, 1, [4]],
    [3, 3, [1, 1, 1]],
  ])('%i threads in %i sessions: %j', (threads, sessions, expected) => {
    expect(splitThreads(threads, sessions)).toEqual(expected);
  });

  test('one session is fed one batch at a time; several, one more than their number', () => {
    expect([1, 2, 3].map(batchesInFlight)).toEqual([1, 3, 4]);
  });

  test('nonsense is refused', () => {
    expect(() => splitThreads(0, 2)).toThrow(RangeError);
    expect(() => splitThreads(2, 1.5)).toThrow(RangeError);
  });

  test('two sessions from two threads on, never more than the threads; ORCHARD_SESSIONS overrides', () => {
    expect(runSessions(1, {})).toBe(1);
    expect(runSessions(2, {})).toBe(2);
    expect(runSessions(8, {})).toBe(2);
    expect(runSessions(8, { ORCHARD_SESSIONS: '1' })).toBe(1);
    expect(runSessions(2, { ORCHARD_SESSIONS: '4' })).toBe(2);
    expect(() => runSessions(2, { ORCHARD_SESSIONS: 'two' })).toThrow(/ORCHARD_SESSIONS/);
    expect(() => runSessions(2, { ORCHARD_SESSIONS: '0' })).toThrow(/ORCHARD_SESSIONS/);
  });
});

interface Extracted extends ExtractedShards {
  readonly engine: { threads: number; sessions?: number };
}

async function run(input: string, runId: string, sessions: string): Promise<Extracted> {
  const output = tempDir();
  const before = process.env.ORCHARD_SESSIONS;
  process.env.ORCHARD_SESSIONS = sessions;
  try {
    const result = await orchard(
      'run', '-i', input, '-o', output, '--run-id', runId, '--model', 'mobilenet_v2_offline', '--engine', 'onnx', '--threads', '2',
      '-k', '2', '--batch-size', '3', '--shard-size', '20', '--max-error-rate', '0.5', '--keep-features', '-q',
    );
    expect(result.err).not.toMatch(/error:/i);
    expect(result.code).toBe(0);
  } finally {
    if (before === undefined) delete process.env.ORCHARD_SESSIONS;
    else process.env.ORCHARD_SESSIONS = before;
  }
  const { metas, features } = readExtracted(output, runId);
  const manifest = JSON.parse(fs.readFileSync(path.join(output, runId, 'manifest.json'), 'utf8')) as { engine: Extracted['engine'] };
  return { metas, features, engine: manifest.engine };
}

describe('orchard run on two sessions and on one', () => {
  let input: string;
  beforeAll(async () => {
    input = tempDir();
    await generateSampleImages(input, { perClass: 5, seed: 5 });
    // Sizes that batch apart (enlarged in the engine, shrunk by sharp) and a broken file, among the others.
    const odd = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: { r: width % 256, g: 90, b: height % 256 } } }).jpeg().toBuffer();
    fs.writeFileSync(path.join(input, 'Banana', 'odd-60x40.jpg'), await odd(60, 40));
    fs.writeFileSync(path.join(input, 'Kiwi', 'odd-300x280.jpg'), await odd(300, 280));
    fs.writeFileSync(path.join(input, 'Lemon', 'broken.jpg'), Buffer.from('not an image'));
  });

  test('the same rows in key order, the same errors and the same features', async () => {
    const two = await run(input, 'two', '2');
    const one = await run(input, 'one', '1');
    expect(two.engine).toMatchObject({ threads: 2, sessions: 2 });
    expect(one.engine.sessions).toBeUndefined();
    expect(two.metas.length).toBeGreaterThan(1);
    expect(two.metas.map((meta) => meta.rows)).toEqual(one.metas.map((meta) => meta.rows));
    expect(two.metas.map((meta) => meta.errors)).toEqual(one.metas.map((meta) => meta.errors));
    expect(two.metas.flatMap((meta) => meta.errors.map((error) => error.key))).toEqual(['Lemon/broken.jpg']);
    for (const meta of two.metas) {
      const keys = meta.rows.map((row) => row.key);
      expect(keys).toEqual([...keys].sort());
    }
    let maxAbs = 0;
    two.features.forEach((rows, shard) => {
      const other = one.features[shard]!;
      expect(rows.length).toBe(other.length);
      for (let i = 0; i < rows.length; i++) maxAbs = Math.max(maxAbs, Math.abs(rows[i]! - other[i]!));
    });
    expect(maxAbs).toBeLessThanOrEqual(1e-4);
    expect(two.metas.every((meta) => meta.predictSeconds > 0 && meta.predictSeconds <= meta.seconds)).toBe(true);
  });
});
