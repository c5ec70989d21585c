/**
 * The failure paths a real run meets, each reproduced on real files and the real S3 server (behind a
 * fault-injecting proxy where AWS would fail): what the user sees, what is left behind, and that a rerun with
 * the same run id continues once the cause is fixed. The CLI runs in this process (main()), with a small tfjs
 * model, so that each case takes a second or two.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Manifest } from '../runtime/contracts/results';
import { Lease, type LeaseRecord } from '../runtime/pipeline/lease';
import { varianceCurve } from '../runtime/report/data';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { hasStack, orchard, type Captured } from './helpers/cli';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy';
import { startTestS3, tempDir } from './helpers/s3';
import { startCliFixture } from './helpers/fixture';

const BUCKET = 'failures-test';
const CLASSES = ['Kiwi', 'Lemon', 'Orange'];
const PER_CLASS = 4;
const IMAGES = CLASSES.length * PER_CLASS;

let s3: Awaited<ReturnType<typeof startTestS3>>;
let proxy: FaultProxy;
let modelDir: string;
let imagesDir: string;
const output = tempDir();
/** The reference: an uninterrupted run over the same images. */
let cleanCsv: Buffer;

/** The tiny model and small shards: 12 images in 3 shards of 4. */
const settings = () => ['--model', modelDir, '--feature-layer', 'features', '--input-size', '32', '-k', '3', '--shard-size', '4', '--batch-size', '4'];
const runDir = (runId: string) => path.join(output, runId);
const runFile = (runId: string, file: string) => path.join(output, runId, file);
const s3Input = (endpoint: string) => ['-i', `s3://${BUCKET}/images/`, '--endpoint', endpoint];
const run = (runId: string, ...args: string[]) => orchard('run', '-o', output, '--run-id', runId, ...settings(), ...args);
const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;
const csvRows = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n').slice(1);

function expectClean(result: Captured): void {
  expect(hasStack(result.err)).toBe(false);
  expect(result.err).not.toContain('unexpected error');
}

beforeAll(async () => {
  // The server behind the fault proxy ignores conditional writes, as s3rver does: the proxy adds them when a test asks.
  ({ modelDir, imagesDir, s3 } = await startCliFixture({ bucket: BUCKET, classes: CLASSES, perClass: PER_CLASS, seed: 21, s3: { conditionalWrites: false } }));
  proxy = await startFaultProxy(s3.endpoint);
  const clean = await run('clean', '-i', imagesDir);
  expect(clean.code).toBe(0);
  cleanCsv = fs.readFileSync(runFile('clean', 'pca.csv'));
});
afterAll(async () => {
  await proxy.close();
  await s3.close();
});

describe('GetObject denied on the image prefix (an IAM mistake), then allowed', () => {
  let denied: Captured;
  let rerun: Captured;

  beforeAll(async () => {
    proxy.rules.deny = (request) => request.method === 'GET' && request.path.startsWith(`/${BUCKET}/images/`);
    denied = await run('denied', ...s3Input(proxy.endpoint));
    proxy.rules.deny = undefined;
    rerun = await run('denied', ...s3Input(proxy.endpoint));
  });

  test('stops the run with exit 1, saying access was denied and to which object, without a stack trace', () => {
    expect(denied.code).toBe(1);
    expect(denied.err).toMatch(/access denied/i);
    expect(denied.err).toContain(`s3://${BUCKET}/images/`);
    expectClean(denied);
  });

  test('marks no shard complete, so that nothing of the failed attempt is reused', () => {
    expect(proxy.stats.denied).toBeGreaterThan(0);
    // The rerun had to extract every shard: none was counted complete.
    expect(readJson<{ counts: { shardsResumed: number } }>(runFile('denied', 'manifest.json')).counts.shardsResumed).toBe(0);
  });

  test('completes on a rerun with the same run id once access is allowed, equal to a clean run byte for byte', () => {
    expect(rerun.code).toBe(0);
    expect(fs.readFileSync(runFile('denied', 'pca.csv'))).toEqual(cleanCsv);
    expect(readJson<{ counts: { failed: number } }>(runFile('denied', 'manifest.json')).counts.failed).toBe(0);
  });
});

test('a delete of _work/ that S3 refuses is an error naming the prefix, not a silent leftover', async () => {
  const storage = new S3Storage(createS3Client({ ...s3.options, endpoint: proxy.endpoint }), BUCKET, 'leftover/');
  await storage.put('_work/a.json', '{}');
  proxy.rules.deny = (request) => request.method === 'POST' && request.query.has('delete');
  const error = await storage.deletePrefix('_work/').catch((e: unknown) => e);
  proxy.rules.deny = undefined;
  expect(error).toMatchObject({ code: 'ERR_ACCESS_DENIED', message: expect.stringContaining(`s3://${BUCKET}/leftover/_work/`) });
  expect(await storage.head('_work/a.json')).toBeDefined();
});

describe('an input of files that are not images', () => {
  let result: Captured;
  const input = tempDir();

  beforeAll(async () => {
    fs.mkdirSync(path.join(input, 'Kiwi'));
    fs.writeFileSync(path.join(input, 'Kiwi', 'a.jpg'), 'not a JPEG at all');
    fs.writeFileSync(path.join(input, 'Kiwi', 'b.png'), Buffer.alloc(64, 7));
    fs.writeFileSync(path.join(input, 'notes.jpg'), '');
    result = await run('junk', '-i', input);
  });

  test('finishes with exit 3, saying too few images could be read', () => {
    expect(result.code).toBe(3);
    expect(result.out).toMatch(/^finished with too few images: 0 images, 3 failed, no PCA/);
    expectClean(result);
  });

  test('still writes errors.csv with each file and its reason, the report and the manifest, but no _SUCCESS', () => {
    const rows = csvRows(runFile('junk', 'errors.csv'));
    expect(rows.map((row) => row.split(',')[0]).sort()).toEqual(['Kiwi/a.jpg', 'Kiwi/b.png', 'notes.jpg']);
    for (const row of rows) expect(row.length).toBeGreaterThan(15);
    expect(fs.existsSync(runFile('junk', 'report.html'))).toBe(true);
    expect(readJson<{ status: string }>(runFile('junk', 'manifest.json')).status).toBe('too_few_images');
    expect(fs.existsSync(runFile('junk', '_SUCCESS'))).toBe(false);
    expect(fs.existsSync(runFile('junk', 'pca.csv'))).toBe(false);
    expect(result.out).not.toContain('_SUCCESS');
  });
});

describe('an input folder that does not exist yet', () => {
  const parent = tempDir();
  const input = path.join(parent, 'later');
  let missing: Captured;
  let empty: Captured;
  let afterwards: Captured;
  // Whether the run folder existed right after each refusal.
  const written: boolean[] = [];

  beforeAll(async () => {
    missing = await run('later', '-i', input);
    written.push(fs.existsSync(runDir('later')));
    fs.mkdirSync(input);
    empty = await run('later', '-i', input);
    written.push(fs.existsSync(runDir('later')));
    fs.cpSync(imagesDir, input, { recursive: true });
    afterwards = await run('later', '-i', input);
  });

  test('is refused with exit 1, naming the folder, before anything is written', () => {
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(`${input} does not exist`);
    expectClean(missing);
    expect(written[0]).toBe(false);
  });

  test('then empty: refused for having no files, before anything is written', () => {
    expect(empty.code).toBe(1);
    expect(empty.err).toContain('No files found');
    expectClean(empty);
    expect(written[1]).toBe(false);
  });

  test('then filled: the same run id lists it and completes', () => {
    expect(afterwards.code).toBe(0);
    expect(fs.readFileSync(runFile('later', 'pca.csv'))).toEqual(cleanCsv);
  });
});

describe('symbolic links that loop or point nowhere', () => {
  let result: Captured;

  beforeAll(async () => {
    const input = tempDir();
    fs.cpSync(imagesDir, input, { recursive: true });
    fs.symlinkSync('self.jpg', path.join(input, 'Kiwi', 'self.jpg'));
    fs.symlinkSync(path.join(input, 'gone.jpg'), path.join(input, 'Kiwi', 'dangling.jpg'));
    result = await run('links', '-i', input, '--max-error-rate', '0.5');
  });

  test('are rows of errors.csv with what is wrong with each, and the run goes on', () => {
    expect(result.code).toBe(0);
    const reasons = Object.fromEntries(csvRows(runFile('links', 'errors.csv')).map((row) => [row.slice(0, row.indexOf(',')), row.slice(row.indexOf(',') + 1)]));
    expect(Object.keys(reasons).sort()).toEqual(['Kiwi/dangling.jpg', 'Kiwi/self.jpg']);
    expect(reasons['Kiwi/self.jpg']).toContain('symbolic link loop');
    expect(reasons['Kiwi/dangling.jpg']).toContain('broken symbolic link');
    expect(csvRows(runFile('links', 'pca.csv'))).toHaveLength(IMAGES);
  });
});

describe('a configuration that cannot work', () => {
  const listing = (dir: string) => fs.readdirSync(dir, { recursive: true }).map(String).sort();

  test('--output equal to --input is refused (exit 2) without writing into the input', async () => {
    const input = tempDir();
    fs.cpSync(imagesDir, input, { recursive: true });
    const before = listing(input);
    const result = await orchard('run', '-i', input, '-o', input, '--run-id', 'same', ...settings());
    expect(result.code).toBe(2);
    expect(result.err).toContain('lies inside the --input');
    expect(listing(input)).toEqual(before);
  });

  test('a model that cannot be read is refused before the run folder exists; the same run id works once fixed', async () => {
    const result = await orchard('run', '-i', imagesDir, '-o', output, '--run-id', 'badmodel', '--model', path.join(tempDir(), 'nope'));
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/No tfjs model at .*nope/);
    expect(fs.existsSync(runDir('badmodel'))).toBe(false);
    expectClean(result);
    const fixed = await orchard('run', '-i', imagesDir, '-o', output, '--run-id', 'badmodel', ...settings());
    expect(fixed.code).toBe(0);
  });

  test('more components than images is refused (exit 2) before any image is extracted; a smaller -k then runs', async () => {
    const args = settings().map((arg, i, all) => (all[i - 1] === '-k' ? '500' : arg));
    const refused = await orchard('run', '-i', imagesDir, '-o', output, '--run-id', 'bigk', ...args);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/--components 500 is more than \d+ images can give/);
    expect(fs.existsSync(path.join(runDir('bigk'), '_work', 'extract'))).toBe(false);
    expect((await orchard('run', '-i', imagesDir, '-o', output, '--run-id', 'bigk', ...settings())).code).toBe(0);
  });

  test('--output naming a file is refused with exit 1, naming the file', async () => {
    const file = path.join(tempDir(), 'afile');
    fs.writeFileSync(file, '');
    const result = await orchard('run', '-i', imagesDir, '-o', file, '--run-id', 'x', ...settings());
    expect(result.code).toBe(1);
    expect(result.err).toContain(`${file} is a file`);
    expectClean(result);
  });

  test('an unknown model is refused (exit 2) before the run folder exists', async () => {
    const result = await orchard('run', '-i', imagesDir, '-o', output, '--run-id', 'nomodel', '--model', 'nosuchmodel');
    expect(result.code).toBe(2);
    expect(result.err).toContain('nosuchmodel');
    expect(fs.existsSync(runDir('nomodel'))).toBe(false);
    expectClean(result);
  });
});

describe('damaged run state', () => {
  /** A run planned, with the given shards extracted, by the stage commands. */
  async function partialRun(runId: string, shards: string): Promise<void> {
    expect((await orchard('plan', '-i', imagesDir, '-o', output, '--run-id', runId, ...settings())).code).toBe(0);
    expect((await orchard('extract', '-o', output, '--run-id', runId, '--shards', shards)).code).toBe(0);
  }
  const truncate = (file: string) => fs.writeFileSync(file, fs.readFileSync(file).subarray(0, Math.floor(fs.statSync(file).size / 2)));

  test.each(['plan.json', 'config.json'])('a truncated _work/%s is named with the remedy: exit 1, no stack trace', async (file) => {
    const runId = `damaged-${file.replace('.json', '')}`;
    await partialRun(runId, '0');
    truncate(path.join(runDir(runId), '_work', file));
    const result = await run(runId, '-i', imagesDir);
    expect(result.code).toBe(1);
    expect(result.err).toContain(`_work/${file} is damaged: not valid JSON`);
    expect(result.err).toContain('another --run-id');
    expectClean(result);
  });

  test("a truncated shard meta is named with the remedy; deleting it, as told, redoes that shard", async () => {
    await partialRun('damaged-meta', '0,1');
    const meta = path.join(runDir('damaged-meta'), '_work', 'extract', '00001.meta.json');
    truncate(meta);
    const result = await run('damaged-meta', '-i', imagesDir);
    expect(result.code).toBe(1);
    expect(result.err).toContain('_work/extract/00001.meta.json is damaged');
    expect(result.err).toMatch(/Delete it to extract shard 1 again/i);
    expectClean(result);
    fs.rmSync(meta);
    const rerun = await run('damaged-meta', '-i', imagesDir);
    expect(rerun.code).toBe(0);
    expect(fs.readFileSync(runFile('damaged-meta', 'pca.csv'))).toEqual(cleanCsv);
  });

  test('a truncated features file is found when the run resumes, and that shard is extracted again', async () => {
    await partialRun('damaged-features', '0,1');
    const shardDir = path.join(runDir('damaged-features'), '_work', 'extract', '00000');
    const features = fs.readdirSync(shardDir).filter((name) => name.endsWith('.features.f32'));
    expect(features).toHaveLength(1);
    truncate(path.join(shardDir, features[0]!));
    const result = await run('damaged-features', '-i', imagesDir, '--json-logs');
    expect(result.code).toBe(0);
    expect(result.err).toMatch(/shard 0 is incomplete \(its features hold \d+ bytes instead of \d+\): extracting it again/);
    expect(fs.readFileSync(runFile('damaged-features', 'pca.csv'))).toEqual(cleanCsv);
    // Shard 1 was kept; shards 0 and 2 were extracted by this process.
    const manifest = readJson<Manifest>(runFile('damaged-features', 'manifest.json'));
    expect(manifest.counts.shardsResumed).toBe(1);
    // Throughput over the images each process extracted: 8 by the first extract, 8 again (shards 0 and 2) by the
    // resumed run, over the time their stages ran.
    expect(manifest.processes!.filter((p) => p.images > 0).map((p) => [p.command, p.images])).toEqual([['extract', 8], ['run', 8]]);
    expect(manifest.imagesPerSecond * manifest.timings.total!).toBeCloseTo(16, 0);
  });
});

describe('two runs of the same run id', () => {
  test('started together: one does the work, the other is refused naming the holder (local output)', async () => {
    const [a, b] = await Promise.all([run('twice', '-i', imagesDir), run('twice', '-i', imagesDir)]);
    const [winner, loser] = a.code === 0 ? [a, b] : [b, a];
    expect(winner.code).toBe(0);
    expect(loser.code).toBe(1);
    expect(loser.err).toMatch(new RegExp(`is held by orchard run twice on ${os.hostname()} \\(pid ${process.pid}\\)`));
    expectClean(loser);
  });

  test.each([
    ['an S3 server with conditional writes', true],
    ['an S3 server that ignores them (the read-back fallback)', false],
  ])('started together on %s: one does the work, the other is refused', async (_name, conditionalWrites) => {
    proxy.rules.conditionalWrites = conditionalWrites;
    const out = `s3://${BUCKET}/results-${conditionalWrites ? 'cw' : 'plain'}/`;
    const go = () => orchard('run', '-i', imagesDir, '-o', out, '--run-id', 'twice', '--endpoint', proxy.endpoint, ...settings());
    const before = proxy.stats.preconditionFailed;
    const results = await Promise.all([go(), go()]);
    proxy.rules.conditionalWrites = false;
    expect(results.map((r) => r.code).sort()).toEqual([0, 1]);
    expect(results.find((r) => r.code === 1)!.err).toContain('is held by orchard run twice');
    // With conditional writes, the server itself refused the second lease (and the probe's second write).
    if (conditionalWrites) expect(proxy.stats.preconditionFailed - before).toBeGreaterThanOrEqual(2);
  });

  test('a live lease of another machine is respected, naming that machine; once expired it is taken over', async () => {
    const runId = 'elsewhere';
    const lease = path.join(runDir(runId), '_work', 'lease.json');
    const holder = (expiresAt: number): LeaseRecord => ({
      owner: 'build-7-4242-abc',
      host: 'build-7',
      pid: 4242,
      purpose: `orchard run ${runId}`,
      acquiredAt: new Date(Date.now() - 600_000).toISOString(),
      expiresAt: new Date(expiresAt).toISOString(),
    });
    fs.mkdirSync(path.dirname(lease), { recursive: true });
    fs.writeFileSync(lease, JSON.stringify(holder(Date.now() + 60_000)));
    const refused = await run(runId, '-i', imagesDir);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('is held by orchard run elsewhere on build-7 (pid 4242)');

    fs.writeFileSync(lease, JSON.stringify(holder(Date.now() - 1_000)));
    const takenOver = await run(runId, '-i', imagesDir);
    expect(takenOver.code).toBe(0);
    expect(takenOver.err).toMatch(/taking over from orchard run elsewhere on build-7 \(pid 4242\) since .*: its lease expired at /);
    expect(fs.existsSync(lease)).toBe(false);
  });

  test('a lease taken over while held is noticed by its holder at the next renewal', async () => {
    const dir = tempDir();
    const storage = new LocalStorage(dir);
    let lost: Error | undefined;
    const first = await Lease.acquire(storage, 'lease.json', { purpose: 'first', ttlMs: 300, onLost: (error) => (lost = error) });
    // The holder stalls (no renewal is due yet); the lease expires and another takes it.
    const second = await Lease.acquire(storage, 'lease.json', { purpose: 'second', now: () => Date.now() + 1_000 });
    await (first as unknown as { renew(): Promise<void> }).renew();
    expect(lost?.message).toMatch(/Lost the lease .* to second on/);
    expect(first.isLost).toBe(true);
    await first.release();
    // The holder that lost it leaves the new holder's lease alone.
    expect(readJson<LeaseRecord>(path.join(dir, 'lease.json')).purpose).toBe('second');
    await second.release();
  });

  test('a release while a renewal is in flight leaves no lease behind: the next stage takes it at once', async () => {
    const dir = tempDir();
    const storage = delayed(new LocalStorage(dir));
    const fit = await Lease.acquire(storage, 'lease.json', { purpose: 'orchard fit' });
    storage.delays.get = 50; // the renewal's read is slow…
    const renewing = (fit as unknown as { renew(): Promise<void> }).renew();
    await sleep(5);
    storage.delays.get = 0;
    await fit.release(); // …and the stage ends meanwhile
    await renewing;
    expect(fs.existsSync(path.join(dir, 'lease.json'))).toBe(false);
    const publish = await Lease.acquire(storage, 'lease.json', { purpose: 'orchard publish' });
    await publish.release();
  });

  test('two processes taking over one stale lease: one gets it, the other is told who has it', async () => {
    const dir = tempDir();
    const stale: LeaseRecord = { owner: 'gone', host: 'elsewhere', pid: 1, purpose: 'orchard run', acquiredAt: new Date(0).toISOString(), expiresAt: new Date(1).toISOString() };
    fs.writeFileSync(path.join(dir, 'lease.json'), JSON.stringify(stale));
    // B deletes the stale lease a little after A has deleted it and created its own: B's delete removes A's lease.
    const a = delayed(new LocalStorage(dir));
    const b = delayed(new LocalStorage(dir));
    b.delays.delete = 30;
    const [la, lb] = await Promise.all([Lease.tryAcquire(a, 'lease.json', { purpose: 'A' }), Lease.tryAcquire(b, 'lease.json', { purpose: 'B' })]);
    const held = [la, lb].filter((result): result is Lease => result instanceof Lease);
    expect(held).toHaveLength(1);
    const other = [la, lb].find((result) => !(result instanceof Lease)) as LeaseRecord;
    expect(other.purpose).toBe(held[0] === la ? 'A' : 'B');
    await held[0]!.release();
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A storage whose get and delete can be slowed down, to line up races between lease holders. */
function delayed(inner: LocalStorage): LocalStorage & { delays: { get: number; delete: number } } {
  const delays = { get: 0, delete: 0 };
  return Object.assign(Object.create(inner) as LocalStorage, {
    delays,
    get: async (key: string) => {
      const value = await inner.get(key);
      if (delays.get) await sleep(delays.get);
      return value;
    },
    delete: async (key: string) => {
      if (delays.delete) await sleep(delays.delete);
      return inner.delete(key);
    },
  });
}

describe('the figures of a run of 3 images', () => {
  let model: { cumulative_explained_variance_ratio: number[]; explained_variance_ratio_: number[]; n_components_: number };

  beforeAll(async () => {
    const input = tempDir();
    fs.mkdirSync(path.join(input, 'Kiwi'));
    for (const name of fs.readdirSync(path.join(imagesDir, 'Kiwi')).slice(0, 3)) fs.copyFileSync(path.join(imagesDir, 'Kiwi', name), path.join(input, 'Kiwi', name));
    const result = await orchard('run', '-i', input, '-o', output, '--run-id', 'three', ...settings().filter((arg, i, all) => arg !== '-k' && all[i - 1] !== '-k'), '--variance', '0.999');
    expect(result.code).toBe(0);
    model = readJson(runFile('three', 'pca-model.json'));
  });

  test('have at most n - 1 = 2 components with variance, as scikit-learn bounds them', () => {
    const withVariance = model.cumulative_explained_variance_ratio.filter((value, i, all) => value - (i === 0 ? 0 : all[i - 1]) > 0);
    expect(withVariance.length).toBeLessThanOrEqual(2);
    expect(model.n_components_).toBeLessThanOrEqual(2);
    // What the report says: "first … of <available> components with non-zero variance".
    expect(varianceCurve(model).available).toBeLessThanOrEqual(2);
  });

  test('have a cumulative explained variance that reaches 1 and never passes it', () => {
    const curve = model.cumulative_explained_variance_ratio;
    expect(Math.max(...curve)).toBeLessThanOrEqual(1);
    expect(curve[curve.length - 1]).toBeCloseTo(1, 12);
  });
});

describe('a flaky S3 endpoint: 20 % of requests answered 503 SlowDown, 5 % of connections reset', () => {
  let result: Captured;
  let injected = 0;

  beforeAll(async () => {
    Object.assign(proxy.rules, { slowDownRate: 0.2, resetRate: 0.05 });
    const before = { ...proxy.stats };
    result = await run('flaky', ...s3Input(proxy.endpoint));
    Object.assign(proxy.rules, { slowDownRate: 0, resetRate: 0 });
    injected = proxy.stats.slowDowns - before.slowDowns + proxy.stats.resets - before.resets;
  });

  test("still gives the clean run's pca.csv, byte for byte", () => {
    expect(result.code).toBe(0);
    expect(fs.readFileSync(runFile('flaky', 'pca.csv'))).toEqual(cleanCsv);
  });

  test('says so: a warning line per request kind with a running count, and the totals in the manifest', () => {
    expect(injected).toBeGreaterThan(0);
    expect(result.err).toMatch(/s3: a GetObject request needed \d+ retr(y|ies) \(\d+ GetObject retries so far/);
    const totals = readJson<{ s3Retries: Record<string, number> }>(runFile('flaky', 'manifest.json')).s3Retries;
    const sum = Object.values(totals).reduce((a, b) => a + b, 0);
    expect(totals.GetObject).toBeGreaterThan(0);
    // Every injected fault cost one retry, and every retry is counted (the report's thumbnail reads too).
    expect(sum).toBe(injected);
  });
});

describe('a broken manifest read by orchard report', () => {
  test('is named in one line, exit 1, without a stack trace', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'manifest.json'), '{"runId": ');
    const result = await orchard('report', dir);
    expect(result.code).toBe(1);
    expect(result.err).toContain(`${path.join(dir, 'manifest.json')} is not valid JSON`);
    expectClean(result);
  });
});
