/**
 * The figures a run reports (issue 16, defect 8): throughput is the images extracted by the processes that
 * extracted them over the time their stages ran; the manifest says which stages ran in which process, and its
 * times add up, for a run resumed after an interruption and for a run split into stage commands typed with pauses.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Manifest } from '../runtime/contracts/results';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf, type TfRuntime } from '../runtime/model/backend';
import { runPipeline } from '../runtime/pipeline/run';
import { LocalStorage } from '../runtime/storage';
import type { Reporter } from '../runtime/progress';
import { orchard } from './helpers/cli';
import { tempDir } from './helpers/s3';
import { TINY_INPUT, saveTinyModel, tinyRunConfig } from './helpers/tiny-model';

const images = tempDir();
const modelDir = tempDir();
const IMAGES = 12;
const STAGES = ['list', 'model_load', 'extract', 'fit', 'project', 'publish'];
let tf: TfRuntime;

beforeAll(async () => {
  tf = await initTf('wasm');
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  await generateSampleImages(images, { perClass: 6, seed: 9, classes: ['Kiwi', 'Lemon'] });
});

const readManifest = (runDir: string) => JSON.parse(fs.readFileSync(path.join(runDir, 'manifest.json'), 'utf8')) as Manifest;

/** The stage timings add up to the total (each stage ran once at a time), and predict lies within extract. */
function expectTimesAddUp(manifest: Manifest): void {
  const { timings } = manifest;
  const stages = STAGES.reduce((sum, stage) => sum + (timings[stage] ?? 0), 0);
  expect(stages).toBeCloseTo(timings.total!, 1);
  expect(timings.predict!).toBeLessThanOrEqual(timings.extract! + 0.002);
  expect(manifest.imagesPerSecond * timings.total!).toBeCloseTo(IMAGES, 0);
}

describe('16.8 figures that add up', () => {
  test('16.8 a stage-by-stage run does not count the time between commands', async () => {
    const output = tempDir();
    const task = ['-o', output, '--run-id', 'split'];
    const tiny = ['--model', modelDir, '--feature-layer', 'features', '--input-size', String(TINY_INPUT), '--backend', 'wasm'];
    const started = Date.now();
    expect((await orchard('plan', '-i', images, ...task, ...tiny, '-k', '2', '--shard-size', '4', '-q')).code).toBe(0);
    expect((await orchard('extract', ...task, '--shards', 'all', '-q')).code).toBe(0);
    // The user reads the output before typing the next command.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await orchard('fit', ...task, '-q')).code).toBe(0);
    expect((await orchard('project', ...task, '--shards', 'all', '-q')).code).toBe(0);
    const published = await orchard('publish', ...task, '-q');
    expect(published.code).toBe(0);
    const manifest = readManifest(path.join(output, 'split'));
    expect(manifest.timings.total!).toBeLessThan((Date.now() - started) / 1000 - 2.4);
    expectTimesAddUp(manifest);
    expect(manifest.processes!.map((p) => [p.command, Object.keys(p.stages)])).toEqual([
      ['plan', ['list']],
      ['extract', ['model_load', 'extract']],
      ['fit', ['fit']],
      ['project', ['project']],
      ['publish', ['publish']],
    ]);
    expect(manifest.processes!.find((p) => p.command === 'extract')!.images).toBe(IMAGES);
    // The line printed says the same.
    expect(published.out).toMatch(new RegExp(`${manifest.timings.total!.toFixed(1)} s, ${manifest.imagesPerSecond.toFixed(1)} images/s`));
  });

  test('16.8 a run resumed after an interruption counts both processes, and predict stays within extract', async () => {
    const output = tempDir();
    const config = tinyRunConfig(modelDir, {}, { input: { kind: 'local', dir: images }, output: { kind: 'local', dir: output }, runId: 'resumed', shardSize: 4 });
    const controller = new AbortController();
    // Stopped (as by Ctrl-C) once the first shard is done and the second begun.
    const reporter: Reporter = {
      info: () => undefined,
      warn: () => undefined,
      task: () => ({ update: (done) => (done > 5 ? controller.abort() : undefined), stop: () => undefined }),
    };
    await expect(runPipeline(config, { reporter, signal: controller.signal, tf })).rejects.toMatchObject({ code: 'ERR_INTERRUPTED' });
    const quiet: Reporter = { info: () => undefined, warn: () => undefined, task: () => ({ update: () => undefined, stop: () => undefined }) };
    const result = await runPipeline(config, { reporter: quiet, tf });
    expect(result.status).toBe('succeeded');
    const { manifest } = result;
    expect(manifest.counts.shardsResumed).toBeGreaterThan(0);
    expect(manifest.processes!.map((p) => [p.command, p.interrupted ?? false])).toEqual([
      ['run', true],
      ['run', false],
    ]);
    expect(manifest.processes!.reduce((sum, p) => sum + p.images, 0)).toBe(IMAGES);
    expect(manifest.timings.predict!).toBeLessThan(manifest.timings.total!);
    expectTimesAddUp(manifest);
  });
});
