/**
 * Issue 16 (defects 1–5) and issue 15 (timeouts and signals): what a hostile tester found. Each case runs the
 * real CLI on real files (and the real S3 server on loopback), with a small tfjs model so that each takes a
 * second or two. Names are "16.N …" / "15.4 …" after the numbers.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { listShards } from '../runtime/pipeline/list';
import { isOwnWorkKey } from '../runtime/pipeline/run-folder';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import { BIN, S3_ENV, hasStack, orchard, startOrchard, type Captured } from './helpers/cli';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy';
import { startTestS3, tempDir } from './helpers/s3';
import { startCliFixture } from './helpers/fixture';

const BUCKET = 'nothing-lost';
const CLASSES = ['Kiwi', 'Lemon', 'Orange'];
const PER_CLASS = 4;

let s3: Awaited<ReturnType<typeof startTestS3>>;
let modelDir: string;
let imagesDir: string;

const settings = () => ['--model', modelDir, '--feature-layer', 'features', '--input-size', '32', '-k', '2', '--shard-size', '4', '--batch-size', '4'];
const run = (...args: string[]) => orchard('run', ...settings(), ...args);
const csvRows = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n').slice(1);
const keysOf = (file: string) => csvRows(file).map((row) => row.slice(0, row.indexOf(',')));
/** Every path below a folder, with its size (folders as `/`): what "nothing written, nothing deleted" compares. */
function tree(dir: string | Buffer, prefix = ''): string[] {
  return fs
    .readdirSync(dir, { encoding: 'buffer' })
    .flatMap((name) => {
      const full = Buffer.concat([Buffer.from(dir), Buffer.from('/'), name]);
      const stat = fs.lstatSync(full);
      const shown = `${prefix}${name.toString('latin1')}`;
      return stat.isDirectory() ? [`${shown}/`, ...tree(full, `${shown}/`)] : [`${shown}:${stat.size}`];
    })
    .sort();
}
const s3Keys = async (prefix = '') => {
  const storage = new S3Storage(createS3Client(s3.options), BUCKET, prefix);
  const keys: string[] = [];
  for await (const object of storage.list()) keys.push(object.key);
  return keys;
};

/** One line, no stack trace, no "unexpected error". */
function expectOneLine(result: Captured): void {
  expect(hasStack(result.err)).toBe(false);
  expect(result.err).not.toContain('unexpected error');
  expect(result.err.trim().split('\n')).toHaveLength(1);
}

async function copyImages(into: string): Promise<void> {
  fs.mkdirSync(into, { recursive: true });
  fs.cpSync(imagesDir, into, { recursive: true });
}

beforeAll(async () => {
  ({ modelDir, imagesDir, s3 } = await startCliFixture({ bucket: BUCKET, classes: CLASSES, perClass: PER_CLASS, seed: 16 }));
});
afterAll(async () => {
  await s3.close();
});

describe('16.1 run folder inside the input is refused', () => {
  test('16.1 run folder = input (the tester\'s case): exit 2, one line, the user\'s _work/ images kept, nothing written', async () => {
    const x = tempDir();
    for (const folder of ['A', 'B', '_work']) await copyImages(path.join(x, 'r2', folder));
    const before = tree(x);
    const result = await run('-i', path.join(x, 'r2'), '-o', x, '--run-id', 'r2', '--max-error-rate', '1');
    expect(result.code).toBe(2);
    expect(result.err).toContain(path.join(x, 'r2'));
    expectOneLine(result);
    expect(tree(x)).toEqual(before);
  });

  test('16.1 run folder inside the input, or holding it: exit 2, nothing written', async () => {
    const x = tempDir();
    await copyImages(path.join(x, 'images'));
    const before = tree(x);
    const inside = await run('-i', path.join(x, 'images'), '-o', path.join(x, 'images', 'results'), '--run-id', 'r1');
    const holding = await run('-i', path.join(x, 'images', 'Kiwi'), '-o', x, '--run-id', 'images');
    for (const result of [inside, holding]) {
      expect(result.code).toBe(2);
      expectOneLine(result);
    }
    expect(tree(x)).toEqual(before);
  });

  test('16.1 on S3 prefixes alike: output below the input prefix is refused, nothing written', async () => {
    const before = await s3Keys();
    const result = await run('-i', `s3://${BUCKET}/images/`, '-o', `s3://${BUCKET}/images/results/`, '--run-id', 'r1', '--endpoint', s3.endpoint);
    expect(result.code).toBe(2);
    expect(result.err).toContain(`s3://${BUCKET}/images/`);
    expectOneLine(result);
    expect(await s3Keys()).toEqual(before);
  });

  test('16.1 a _work/ orchard did not create is refused, and never deleted', async () => {
    const x = tempDir();
    await copyImages(path.join(x, 'out', 'r3', '_work', 'mine'));
    const before = tree(x);
    const result = await run('-i', imagesDir, '-o', path.join(x, 'out'), '--run-id', 'r3');
    expect(result.code).toBe(2);
    expect(result.err).toContain('_work');
    expectOneLine(result);
    expect(tree(x)).toEqual(before);
  });
});

test('16.1 every file a run leaves in _work/ is one orchard counts as its own (and deletes after success)', async () => {
  const out = tempDir();
  expect((await run('-i', imagesDir, '-o', out, '--run-id', 'kept', '--keep-features')).code).toBe(0);
  const work = tree(path.join(out, 'kept', '_work')).filter((entry) => !entry.endsWith('/'));
  expect(work.length).toBeGreaterThan(10);
  expect(work.map((entry) => `_work/${entry.slice(0, entry.lastIndexOf(':'))}`).filter((key) => !isOwnWorkKey(key))).toEqual([]);
  expect(isOwnWorkKey('_work/int8/graph.onnx')).toBe(true);
  expect(isOwnWorkKey('_work/mine/photo.jpg')).toBe(false);
});

describe('16.2 earlier results inside the input are not images', () => {
  test('16.2 the advice of the --output = --input refusal works', async () => {
    const x = tempDir();
    await copyImages(path.join(x, 'heldout'));
    const refused = await run('-i', path.join(x, 'heldout'), '-o', path.join(x, 'heldout'), '--run-id', 'a');
    expect(refused.code).toBe(2);
    expectOneLine(refused);
    const advised = /e\.g\. (\S+?)\)?$/m.exec(refused.err.trim())?.[1];
    expect(advised).toBeDefined();
    const first = await run('-i', path.join(x, 'heldout'), '-o', advised!, '--run-id', 'a');
    expect(first.code).toBe(0);
    // A later run of the same input with another output still finds only the images.
    const later = await run('-i', path.join(x, 'heldout'), '-o', path.join(x, 'elsewhere'), '--run-id', 'b');
    expect(later.code).toBe(0);
    expect(keysOf(path.join(x, 'elsewhere', 'b', 'pca.csv'))).toHaveLength(CLASSES.length * PER_CLASS);
  });

  test('16.2 run folders inside the input are skipped, in one line saying so (local folder)', async () => {
    const x = tempDir();
    await copyImages(path.join(x, 'all'));
    // Earlier runs whose run folders lie inside a later input: one finished, one stopped with its _work/.
    expect((await run('-i', imagesDir, '-o', path.join(x, 'all', 'results'), '--run-id', 'old')).code).toBe(0);
    expect((await run('-i', imagesDir, '-o', path.join(x, 'all', 'results'), '--run-id', 'kept', '--keep-features')).code).toBe(0);
    fs.rmSync(path.join(x, 'all', 'results', 'kept', '_SUCCESS'));
    fs.rmSync(path.join(x, 'all', 'results', 'kept', 'manifest.json'));
    const result = await run('-i', path.join(x, 'all'), '-o', path.join(x, 'out'), '--run-id', 'new');
    expect(result.code).toBe(0);
    const keys = keysOf(path.join(x, 'out', 'new', 'pca.csv'));
    expect(keys).toHaveLength(CLASSES.length * PER_CLASS);
    expect(keys.filter((key) => key.startsWith('results/'))).toEqual([]);
    expect(csvRows(path.join(x, 'out', 'new', 'errors.csv'))).toEqual([]);
    const skipped = result.err.split('\n').filter((line) => line.includes('skipped'));
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toContain('results/old/');
    expect(skipped[0]).toContain('results/kept/');
  });

  test('16.2 run folders inside the input are skipped on S3 too, even when errors.csv lists before manifest.json', async () => {
    const x = tempDir();
    const old = path.join(x, 'old');
    expect((await run('-i', imagesDir, '-o', x, '--run-id', 'old')).code).toBe(0);
    fs.rmSync(path.join(old, '_SUCCESS'));
    const target = new S3Storage(createS3Client(s3.options), BUCKET, 'mixed/');
    await uploadTree({ sourceDir: imagesDir, target });
    await uploadTree({ sourceDir: old, target: new S3Storage(createS3Client(s3.options), BUCKET, 'mixed/zz-results/old/') });
    const result = await run('-i', `s3://${BUCKET}/mixed/`, '-o', path.join(x, 'out'), '--run-id', 'new', '--endpoint', s3.endpoint);
    expect(result.code).toBe(0);
    expect(keysOf(path.join(x, 'out', 'new', 'pca.csv'))).toHaveLength(CLASSES.length * PER_CLASS);
    expect(csvRows(path.join(x, 'out', 'new', 'errors.csv'))).toEqual([]);
    expect(result.err).toMatch(/skipped.*zz-results\/old\//);
  });
});

test('16.2 a run folder found after its first files went into a written shard is listed again without them', async () => {
  const input = tempDir();
  fs.mkdirSync(path.join(input, 'Kiwi'));
  fs.writeFileSync(path.join(input, 'Kiwi', 'a.jpg'), 'a');
  fs.mkdirSync(path.join(input, 'old'));
  fs.writeFileSync(path.join(input, 'old', 'errors.csv'), 'key,reason\n');
  fs.writeFileSync(path.join(input, 'old', 'manifest.json'), JSON.stringify({ orchard: '1', runId: 'old' }));
  fs.writeFileSync(path.join(input, 'old', 'pca.csv'), 'key\n');
  fs.mkdirSync(path.join(input, 'notes'));
  fs.writeFileSync(path.join(input, 'notes', 'manifest.json'), JSON.stringify({ not: 'orchard' }));
  const shards = new Map<number, string[]>();
  const listed = await listShards(
    new LocalStorage(input),
    { shardSize: 1 },
    async (shard, items) => void shards.set(shard, items.map((item) => item.key)),
    async (shard) => void shards.delete(shard),
  );
  expect(listed).toEqual({ shards: 2, images: 2, skipped: ['old/'] });
  expect([...shards.entries()].sort()).toEqual([
    [0, ['Kiwi/a.jpg']],
    [1, ['notes/manifest.json']],
  ]);
});

describe('16.3 names that are not valid UTF-8', () => {
  test('16.3 a file and a class folder with invalid UTF-8 names are rows, with keys reversible by percent-decoding', async () => {
    const x = tempDir();
    const input = path.join(x, 'in');
    await copyImages(input);
    const jpeg = fs.readFileSync(path.join(input, 'Kiwi', fs.readdirSync(path.join(input, 'Kiwi'))[0]!));
    const bytes = (...parts: (string | Buffer)[]) => Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : part)));
    fs.writeFileSync(bytes(input, '/Kiwi/caf', Buffer.from([0xe9]), '.jpg'), jpeg);
    fs.mkdirSync(bytes(input, '/Caf', Buffer.from([0xe9])));
    fs.writeFileSync(bytes(input, '/Caf', Buffer.from([0xe9]), '/one.jpg'), jpeg);
    fs.writeFileSync(bytes(input, '/Caf', Buffer.from([0xe9]), '/100%.jpg'), jpeg);
    const result = await run('-i', input, '-o', path.join(x, 'out'), '--run-id', 'r');
    expect(result.code).toBe(0);
    const csv = path.join(x, 'out', 'r', 'pca.csv');
    const keys = keysOf(csv);
    expect(keys).toHaveLength(CLASSES.length * PER_CLASS + 3);
    expect(keys).toEqual(expect.arrayContaining(['Kiwi/caf%E9.jpg', 'Caf%E9/one.jpg', 'Caf%E9/100%25.jpg']));
    expect(fs.readFileSync(csv, 'utf8')).toMatch(/^Caf%E9\/one\.jpg,Caf%E9,/m);
    // Reversible: percent-decoding a key's bytes gives the file's name.
    for (const key of keys) {
      const name = Buffer.from(key.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1');
      const utf8 = key.includes('%') ? name : Buffer.from(key);
      expect(fs.existsSync(bytes(input, '/', utf8))).toBe(true);
    }
    expect(csvRows(path.join(x, 'out', 'r', 'errors.csv'))).toEqual([]);
  });
});

test('16.3 orchard upload gives a name that is not valid UTF-8 the key a run on the folder would', async () => {
  const dir = tempDir();
  fs.mkdirSync(Buffer.from([...Buffer.from(`${dir}/Caf`), 0xe9]));
  fs.writeFileSync(Buffer.from([...Buffer.from(`${dir}/Caf`), 0xe9, ...Buffer.from('/one.jpg')]), 'x');
  fs.writeFileSync(path.join(dir, '100%.jpg'), 'y');
  const summary = await uploadTree({ sourceDir: dir, target: new S3Storage(createS3Client(s3.options), BUCKET, 'latin1/') });
  expect(summary.failed).toEqual([]);
  expect(await s3Keys('latin1/')).toEqual(['100%25.jpg', 'Caf%E9/one.jpg']);
  const local: string[] = [];
  for await (const object of new LocalStorage(dir).list()) local.push(object.key);
  expect(local).toEqual(['100%25.jpg', 'Caf%E9/one.jpg']);
});

describe('16.4 reads that never finish', () => {
  let socketServer: net.Server;
  afterAll(() => socketServer?.close());

  test('16.4 FIFOs, sockets, devices and links to them are error rows with their reason', async () => {
    const x = tempDir();
    const input = path.join(x, 'in');
    await copyImages(input);
    execFileSync('mkfifo', [path.join(input, 'Kiwi', 'fifo.jpg')]);
    fs.symlinkSync('/dev/zero', path.join(input, 'Kiwi', 'zero.jpg'));
    fs.symlinkSync('/dev/urandom', path.join(input, 'Lemon', 'urandom.jpg'));
    fs.symlinkSync(path.join(input, 'Kiwi', 'fifo.jpg'), path.join(input, 'Lemon', 'to-fifo.jpg'));
    socketServer = net.createServer();
    await new Promise<void>((resolve) => socketServer.listen(path.join(input, 'Orange', 'sock.jpg'), resolve));
    const result = await run('-i', input, '-o', path.join(x, 'out'), '--run-id', 'r', '--max-error-rate', '0.5');
    expect(result.code).toBe(0);
    const reasons = Object.fromEntries(csvRows(path.join(x, 'out', 'r', 'errors.csv')).map((row) => [row.slice(0, row.indexOf(',')), row.slice(row.indexOf(',') + 1)]));
    expect(Object.keys(reasons).sort()).toEqual(['Kiwi/fifo.jpg', 'Kiwi/zero.jpg', 'Lemon/to-fifo.jpg', 'Lemon/urandom.jpg', 'Orange/sock.jpg']);
    expect(reasons['Kiwi/fifo.jpg']).toMatch(/not a regular file.*FIFO/i);
    expect(reasons['Lemon/to-fifo.jpg']).toMatch(/not a regular file.*FIFO/i);
    expect(reasons['Kiwi/zero.jpg']).toMatch(/not a regular file.*device/i);
    expect(reasons['Orange/sock.jpg']).toMatch(/not a regular file.*socket/i);
  }, 60_000);

  test('16.4 a FIFO swapped in after listing is an error row, not a hang', async () => {
    const x = tempDir();
    const input = path.join(x, 'in');
    await copyImages(input);
    const plan = await orchard('plan', '-i', input, '-o', path.join(x, 'out'), '--run-id', 'r', ...settings());
    expect(plan.code).toBe(0);
    const victim = path.join(input, 'Lemon', fs.readdirSync(path.join(input, 'Lemon'))[0]!);
    fs.rmSync(victim);
    execFileSync('mkfifo', [victim]);
    const result = await run('-i', input, '-o', path.join(x, 'out'), '--run-id', 'r', '--max-error-rate', '0.5');
    expect(result.code).toBe(0);
    const rows = csvRows(path.join(x, 'out', 'r', 'errors.csv'));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/not a regular file.*FIFO/i);
  }, 60_000);
});

describe('16.5 disk full', () => {
  const canMount = (() => {
    try {
      execFileSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=64k tmpfs "$TMPDIR"'], { stdio: 'ignore', env: { ...process.env, TMPDIR: tempDir() } });
      return true;
    } catch {
      return false;
    }
  })();

  // A small tmpfs in a mount namespace of its own (unshare), filled, then emptied: the same run id run twice.
  (canMount ? test : test.skip)('16.5 ENOSPC is an environment error with its remedy, and no .tmp- file outlives it', async () => {
    const x = tempDir();
    const out = path.join(x, 'out');
    fs.mkdirSync(out);
    const args = ['run', '-i', imagesDir, '-o', out, '--run-id', 'full', ...settings()].map((arg) => `'${arg}'`).join(' ');
    const script = [
      `mount -t tmpfs -o size=4m tmpfs '${out}'`,
      `dd if=/dev/zero of='${out}/filler' bs=4k 2>/dev/null`,
      `'${process.execPath}' '${BIN}' ${args} 2>'${x}/full.err'; echo "full=$?"`,
      `find '${out}' -name '.tmp-*' | sed 's/^/leftover-after-full=/'`,
      `rm '${out}/filler'`,
      `'${process.execPath}' '${BIN}' ${args} 2>'${x}/rerun.err'; echo "rerun=$?"`,
      `find '${out}' -name '.tmp-*' | sed 's/^/leftover=/'`,
    ].join('\n');
    const printed = execFileSync('unshare', ['-rm', 'sh', '-c', script], { encoding: 'utf8', env: { ...process.env, ...S3_ENV } });
    const err = fs.readFileSync(path.join(x, 'full.err'), 'utf8');
    expect(printed).toContain('full=1');
    expect(err).toMatch(/no space left/i);
    expect(err).not.toContain('unexpected error');
    expect(err).not.toContain('please report');
    expect(hasStack(err)).toBe(false);
    expect(printed).not.toContain('leftover-after-full=');
    expect(printed).toContain('rerun=0');
    expect(printed).not.toContain('leftover=');
  }, 120_000);
});

describe('15.4 timeouts, and signals that work', () => {
  let silent: net.Server;
  let firstConnection: Promise<number>;
  let proxy: FaultProxy;

  beforeAll(async () => {
    const sockets: net.Socket[] = [];
    let connected: (at: number) => void;
    firstConnection = new Promise((resolve) => (connected = resolve));
    // Accepts every connection and never answers.
    silent = net.createServer((socket) => {
      sockets.push(socket);
      connected(performance.now());
    });
    silent.on('close', () => sockets.forEach((socket) => socket.destroy()));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    proxy = await startFaultProxy(s3.endpoint);
  });
  afterAll(async () => {
    await new Promise((resolve) => {
      silent.close(resolve);
      silent.emit('close');
    });
    await proxy.close();
  });

  test('15.4 an endpoint that accepts and never answers fails the run with exit 1, naming it and the timeout, in bounded time', async () => {
    const endpoint = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const out = tempDir();
    const { exited } = startOrchard(['run', '-i', `s3://${BUCKET}/images/`, '-o', out, '--endpoint', endpoint, '--s3-timeout', '1', ...settings()], S3_ENV);
    const first = await firstConnection;
    const result = await exited;
    const seconds = (performance.now() - first) / 1000;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(endpoint);
    expect(result.stderr).toMatch(/1 s/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    // The bound the documentation states: 5 attempts × (the timeout + 3 s) + 5 s of backoff (the SDK starts its
    // inactivity timer at once below 6 s, so with 1 s it is 5 × 1 + 5).
    expect(seconds).toBeLessThan(5 * 1 + 5);
  }, 60_000);

  /**
   * Starts an orchard command whose reads of one class never get an answer, sends SIGTERM once one is hung, and
   * returns its exit and the seconds from the signal to the exit (the child is killed after 15 s).
   */
  async function sigtermWhileHung(args: string[]): Promise<{ code: number | null | undefined; seconds: number }> {
    proxy.rules.hang = (request) => request.method === 'GET' && request.path.startsWith(`/${BUCKET}/images/Lemon/`);
    const hungBefore = proxy.stats.hung;
    const { child, exited } = startOrchard([...args, '--endpoint', proxy.endpoint, ...settings()], S3_ENV);
    while (proxy.stats.hung === hungBefore) await new Promise((resolve) => setTimeout(resolve, 100));
    const sent = performance.now();
    child.kill('SIGTERM');
    const result = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(resolve, 15_000))]);
    const seconds = (performance.now() - sent) / 1000;
    proxy.rules.hang = undefined;
    if (!result) child.kill('SIGKILL');
    return { code: result?.code, seconds };
  }

  test('15.4 SIGTERM ends a run blocked on a hung request within 5 s, exit 130, and releases the lease', async () => {
    const out = tempDir();
    const { code, seconds } = await sigtermWhileHung(['run', '-i', `s3://${BUCKET}/images/`, '-o', out, '--run-id', 'hung']);
    expect(code).toBe(130);
    expect(seconds).toBeLessThan(5);
    expect(fs.existsSync(path.join(out, 'hung', '_work', 'lease.json'))).toBe(false);
    // The same run id resumes at once: no live lease keeps it out.
    const rerun = await run('-i', `s3://${BUCKET}/images/`, '-o', out, '--run-id', 'hung', '--endpoint', proxy.endpoint);
    expect(rerun.code).toBe(0);
  }, 60_000);

  test('15.4 SIGTERM ends a stage command (plan) blocked on a hung request within 5 s, exit 130, and releases the lease', async () => {
    const out = tempDir();
    // An int8 plan reads images to calibrate, holding the run's lease: the reads of one class never end.
    const { code, seconds } = await sigtermWhileHung(['plan', '-i', `s3://${BUCKET}/images/`, '-o', out, '--run-id', 'hung-plan', '--precision', 'int8']);
    expect(code).toBe(130);
    expect(seconds).toBeLessThan(5);
    expect(fs.existsSync(path.join(out, 'hung-plan', '_work', 'lease.json'))).toBe(false);
  }, 60_000);
});

test('16.2 a folder of the user\'s named _work, and a Spark output\'s _SUCCESS, are not taken for orchard run folders', async () => {
  const input = tempDir();
  for (const file of ['Train/_work/a.jpg', 'Train/b.jpg', 'Test/Apple/_SUCCESS', 'Test/Apple/c.jpg', 'Test/Pear/d.jpg']) {
    fs.mkdirSync(path.join(input, path.dirname(file)), { recursive: true });
    fs.writeFileSync(path.join(input, file), file);
  }
  const keys: string[] = [];
  const listed = await listShards(new LocalStorage(input), { shardSize: 10 }, async (_shard, items) => void keys.push(...items.map((item) => item.key)), async () => undefined);
  expect(listed.skipped).toEqual([]);
  expect(keys.sort()).toEqual(['Test/Apple/_SUCCESS', 'Test/Apple/c.jpg', 'Test/Pear/d.jpg', 'Train/_work/a.jpg', 'Train/b.jpg']);
});
