/**
 * Retrying a stage (issue 16, defect 9) and the command line's refusals (defect 10), on local folders with the
 * tiny test model: a stage whose work is done succeeds and says so; a refusal is one line, exit 2, nothing written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { LocalStorage } from '../runtime/storage';
import { orchard } from './helpers/cli';
import { tempDir } from './helpers/s3';
import { TINY_INPUT, saveTinyModel } from './helpers/tiny-model';

const images = tempDir();
const modelDir = tempDir();
const IMAGES = 6;
const tiny = ['--model', modelDir, '--feature-layer', 'features', '--input-size', String(TINY_INPUT), '--backend', 'wasm', '--threads', '1'];

beforeAll(async () => {
  const tf = await initTf('wasm');
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  await generateSampleImages(images, { perClass: 3, seed: 5, classes: ['Kiwi', 'Lemon'] });
});

/** Every file under a folder (relative paths), or [] when it does not exist. */
function files(dir: string): string[] {
  return fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).filter((name) => fs.statSync(path.join(dir, name)).isFile()) : [];
}

/** One line on stderr (commander's hints in parentheses aside), no stack trace. */
function oneLine(err: string): string {
  const lines = err.trim().split('\n').filter((line) => !/^\((run with --help|Did you mean)/.test(line));
  expect(lines).toHaveLength(1);
  expect(err).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

describe('16.9 retrying a stage', () => {
  test('16.9 a second orchard publish succeeds and says the run is already published', async () => {
    const output = tempDir();
    const task = ['-o', output, '--run-id', 'r1'];
    expect((await orchard('plan', '-i', images, ...task, ...tiny, '-k', '2', '-q')).code).toBe(0);
    expect((await orchard('extract', ...task, '--shards', 'all', '-q')).code).toBe(0);
    expect((await orchard('fit', ...task, '-q')).code).toBe(0);
    expect((await orchard('project', ...task, '--shards', 'all', '-q')).code).toBe(0);
    const first = await orchard('publish', ...task, '-q');
    expect(first.code).toBe(0);
    const published = files(path.join(output, 'r1')).sort();
    const csv = fs.readFileSync(path.join(output, 'r1', 'pca.csv'));

    const again = await orchard('publish', ...task, '-q');
    expect(again).toMatchObject({ code: 0, err: '' });
    expect(again.out).toMatch(/already published/);
    expect(again.out).toContain(`${IMAGES} images`);
    // The other stages, retried after the run was published, have nothing left to do either.
    for (const args of [['fit'], ['extract', '--shards', 'all'], ['project', '--shards', '0']]) {
      const retried = await orchard(...args, ...task, '-q');
      expect(retried).toMatchObject({ code: 0, err: '' });
      expect(retried.out).toMatch(/already published/);
    }
    expect(files(path.join(output, 'r1')).sort()).toEqual(published);
    expect(fs.readFileSync(path.join(output, 'r1', 'pca.csv'))).toEqual(csv);
  });

  test('16.9 -k above the number of images is refused before any shard file is written', async () => {
    const output = tempDir();
    for (const command of ['run', 'plan']) {
      const refused = await orchard(command, '-i', images, '-o', output, '--run-id', `k-${command}`, ...tiny, '-k', String(IMAGES + 1), '-q');
      expect(refused.code).toBe(2);
      expect(oneLine(refused.err)).toMatch(/--components 7 is more than 6 images/);
      expect(files(path.join(output, `k-${command}`))).toEqual([]);
    }
  });
});

describe('16.10 the command line names what is wrong', () => {
  test('16.10 an unknown flag is named, even when a required option is missing', async () => {
    const typo = await orchard('run', '--inptu', images, '-o', tempDir());
    expect(typo.code).toBe(2);
    expect(oneLine(typo.err)).toMatch(/unknown option '--inptu'/);
    const stage = await orchard('fit', '-o', tempDir(), '--run-id', 'r1', '--shardz', '1');
    expect(stage.code).toBe(2);
    expect(oneLine(stage.err)).toMatch(/unknown option '--shardz'/);
  });

  test('16.10 positional arguments are refused, not ignored', async () => {
    const output = tempDir();
    const extra = await orchard('run', images, output);
    expect(extra.code).toBe(2);
    expect(oneLine(extra.err)).toMatch(/too many arguments|unexpected argument/i);
    const withFlags = await orchard('run', '-i', images, '-o', output, '--run-id', 'p', ...tiny, 'stray');
    expect(withFlags.code).toBe(2);
    expect(oneLine(withFlags.err)).toMatch(/too many arguments for 'run'/);
    expect(files(output)).toEqual([]);
  });

  test('16.10 fit and publish --help list only the options they use', async () => {
    for (const command of ['fit', 'publish']) {
      const help = await orchard(command, '--help');
      expect(help.code).toBe(0);
      expect(help.out).toContain('--run-id');
      expect(help.out).not.toMatch(/--threads|--concurrency/);
    }
    for (const command of ['extract', 'project']) expect((await orchard(command, '--help')).out).toMatch(/--threads/);
  });

  test('16.10 orchard report --input <wrong path> warns that there will be no thumbnails', async () => {
    const output = tempDir();
    expect((await orchard('run', '-i', images, '-o', output, '--run-id', 'rep', ...tiny, '-k', '2', '-q')).code).toBe(0);
    const report = await orchard('report', path.join(output, 'rep'), '--input', path.join(images, 'nowhere'));
    expect(report.code).toBe(0);
    expect(report.err).toMatch(/warn.*nowhere.*thumbnails|thumbnails.*nowhere/i);
  });
});
