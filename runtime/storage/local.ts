import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pMapIterable } from 'p-map';
import { ExitCode, OrchardError } from '../errors';
import { NotFoundError, UnreadableObjectError, type ObjectInfo, type PutOptions, type Storage } from './storage';
import type { Location } from './uri';
import { keyOfName, nameOfKey } from './file-names';

const readFile = promisify(fs.readFile);
const statFile = promisify(fs.stat);
/** Files stat'ed at once while listing a folder. */
const STAT_CONCURRENCY = 32;

/** A local directory behind the storage port. Writes are atomic (temp file + rename). */
export class LocalStorage implements Storage {
  readonly location: Location;

  constructor(readonly dir: string) {
    this.location = { kind: 'local', dir };
  }

  uri(key = ''): string {
    return path.join(this.dir, key);
  }

  /** The path of a key: a Buffer when the key encodes bytes that are not UTF-8 (see file-names.ts). */
  private resolve(key: string): string | Buffer {
    const full = path.resolve(this.dir, key);
    if (full !== this.dir && !full.startsWith(this.dir + path.sep)) {
      throw new OrchardError(`Key ${JSON.stringify(key)} escapes ${this.dir}`, 'ERR_INVALID_KEY');
    }
    return key.includes('%') ? Buffer.concat([Buffer.from(this.dir), nameOfKey(full.slice(this.dir.length))]) : full;
  }

  async check(options: { readonly mustExist?: boolean } = {}): Promise<void> {
    const stat = await fs.promises.stat(this.dir).catch((error: NodeJS.ErrnoException) => {
      // ENOTDIR: a folder on the way is a file (e.g. --output names a file, and the run folder would be below it).
      if (error.code === 'ENOTDIR') throw new OrchardError(`${this.dir} cannot be a folder: ${fileOnTheWay(this.dir)} is a file`, 'ERR_NOT_A_DIRECTORY', ExitCode.Fatal);
      return undefined;
    });
    if (stat && !stat.isDirectory()) {
      throw new OrchardError(`${this.dir} is not a directory`, 'ERR_NOT_A_DIRECTORY', ExitCode.Fatal);
    }
    if (!options.mustExist) return;
    if (!stat) throw new OrchardError(`${this.dir} does not exist`, 'ERR_NO_INPUT', ExitCode.Fatal);
    await fs.promises.access(this.dir, fs.constants.R_OK | fs.constants.X_OK).catch((error: unknown) => {
      throw new OrchardError(`Access denied to ${this.dir}: check the folder's permissions for this user`, 'ERR_ACCESS_DENIED', ExitCode.Fatal, { cause: error });
    });
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    yield* this.walk(this.resolve(prefix), prefix.replace(/\/+$/, ''), new Set());
  }

  /**
   * Symbolic links are followed (train/test splits are often made of links); `visited` holds the real paths of
   * the folders on the way down, so a link back up the tree cannot loop. A broken link is listed, so that its
   * read fails and the image shows up in errors.csv instead of vanishing.
   */
  private async *walk(dir: string | Buffer, relative: string, visited: Set<string>): AsyncIterable<ObjectInfo> {
    let entries: fs.Dirent<Buffer>[];
    let real: string;
    try {
      // Names as bytes: a name that is not valid UTF-8 read as a string would name no file (see file-names.ts).
      real = (await fs.promises.realpath(dir, { encoding: 'buffer' })).toString('latin1');
      entries = await fs.promises.readdir(dir, { withFileTypes: true, encoding: 'buffer' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    if (visited.has(real)) return;
    const below = new Set(visited).add(real);
    entries.sort((a, b) => Buffer.compare(a.name, b.name));
    const parent = Buffer.concat([Buffer.from(dir), Buffer.from(path.sep)]);
    const look = async (entry: fs.Dirent<Buffer>) => {
      const full = Buffer.concat([parent, entry.name]);
      const stat = entry.isSymbolicLink() || entry.isFile() ? await statFile(full).catch(() => undefined) : entry;
      return { entry, full, stat };
    };
    // Several stats at once, in order: one after the other, each waited for the thread pool, and 20,000 images
    // took 1.1 s to list, the main thread idle three quarters of it.
    const listed = entries.filter((entry) => !entry.name.toString('latin1').startsWith('.tmp-'));
    for await (const { entry, full, stat } of pMapIterable(listed, look, { concurrency: STAT_CONCURRENCY })) {
      const name = keyOfName(entry.name);
      const key = relative ? `${relative}/${name}` : name;
      if (stat?.isDirectory()) {
        yield* this.walk(full, key, below);
      } else {
        // Everything else is listed, so that what cannot be read (a broken link, a FIFO, a device) becomes a row
        // of errors.csv with its reason instead of vanishing.
        yield { key, size: stat && 'size' in stat ? stat.size : 0 };
      }
    }
  }

  async get(key: string): Promise<Buffer> {
    const handle = await this.openRegular(key);
    try {
      // The callback API on the open descriptor: fs.promises.readFile reads in several round trips, 2.5x the CPU
      // for a 5 kB image.
      return await readFile(handle.fd);
    } catch (error) {
      throw await this.readError(error, key);
    } finally {
      await handle.close();
    }
  }

  /**
   * Opens a key for reading only if it is a regular file. Its type is looked at before the open (opening a device
   * can act on it: a tape rewinds; a block device's open is refused), the open does not block (a FIFO's would wait
   * for a writer for ever), and the type is checked again on the open descriptor, so that a FIFO, a socket or a
   * device (or a link to one), even one swapped in after listing, is an UnreadableObjectError and never a read
   * that does not end.
   */
  private async openRegular(key: string): Promise<fs.promises.FileHandle> {
    const file = this.resolve(key);
    const before = await statFile(file).catch(async (error: unknown) => {
      throw await this.readError(error, key);
    });
    if (!before.isFile()) throw this.notRegular(key, before);
    const handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK).catch(async (error: unknown) => {
      throw await this.readError(error, key);
    });
    try {
      const after = await handle.stat();
      if (after.isFile()) return handle;
      throw this.notRegular(key, after);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  private notRegular(key: string, stat: fs.Stats): Error {
    return stat.isDirectory() ? new NotFoundError(this.uri(key)) : new UnreadableObjectError(this.uri(key), `not a regular file: ${fileKind(stat)}`);
  }

  /**
   * A missing file is NotFoundError; a symbolic link that loops or points nowhere is UnreadableObjectError (both
   * are about one object: rows of errors.csv to a run). A file the process may not read is ERR_ACCESS_DENIED,
   * which stops a run: the fix (a permission) is the user's, and the rerun then reads the file.
   */
  private async readError(error: unknown, key: string): Promise<unknown> {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return new UnreadableObjectError(this.uri(key), 'symbolic link loop (too many levels of links)');
    if (code === 'ENOENT') {
      const link = await fs.promises.lstat(this.resolve(key)).catch(() => undefined);
      if (link?.isSymbolicLink()) return new UnreadableObjectError(this.uri(key), `broken symbolic link (to ${await fs.promises.readlink(this.resolve(key)).catch(() => '?')})`);
      return new NotFoundError(this.uri(key));
    }
    if (code === 'EISDIR' || code === 'ENOTDIR') return new NotFoundError(this.uri(key));
    // open(2) of a Unix socket.
    if (code === 'ENXIO') return new UnreadableObjectError(this.uri(key), 'not a regular file: a socket');
    if (code === 'EACCES' || code === 'EPERM') {
      return new OrchardError(`Access denied to ${this.uri(key)}: check the file's permissions for this user`, 'ERR_ACCESS_DENIED', ExitCode.Fatal, { cause: error });
    }
    return error;
  }

  async getStream(key: string): Promise<Readable> {
    // Open first, so a missing key fails here rather than later, inside the consumer of the stream.
    return (await this.openRegular(key)).createReadStream();
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const stat = await fs.promises.stat(this.resolve(key)).catch(() => undefined);
    return stat?.isFile() ? { key, size: stat.size } : undefined;
  }

  async put(key: string, body: Buffer | string, _options?: PutOptions): Promise<void> {
    await this.writeVia(key, async (temp, target) => {
      await fs.promises.writeFile(temp, body);
      await fs.promises.rename(temp, target);
    });
  }

  async putFile(key: string, localPath: string): Promise<void> {
    await this.writeVia(key, async (temp, target) => {
      await fs.promises.copyFile(localPath, temp);
      await fs.promises.rename(temp, target);
    });
  }

  /**
   * A write through a temporary file next to the key: the temporary file never outlives the write (it is renamed
   * or linked into place, or removed when the write fails), and a full disk is an environment error that says so.
   */
  private async writeVia<T>(key: string, write: (temp: string | Buffer, target: string | Buffer) => Promise<T>): Promise<T> {
    const target = this.resolve(key);
    const folder = parentOf(target);
    const temp = typeof folder === 'string' ? path.join(folder, tempName()) : Buffer.concat([folder, Buffer.from(`${path.sep}${tempName()}`)]);
    try {
      await fs.promises.mkdir(folder, { recursive: true });
      return await write(temp, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw noSpace(this.uri(key), error);
      throw error;
    } finally {
      await fs.promises.rm(temp, { force: true }).catch(() => undefined);
    }
  }

  async deletePrefix(prefix: string, only?: (key: string) => boolean): Promise<void> {
    if (!only) {
      await fs.promises.rm(this.resolve(prefix), { recursive: true, force: true });
      return;
    }
    const folders = new Set<string>();
    for await (const object of this.list(prefix)) {
      if (!only(object.key)) continue;
      await fs.promises.rm(this.resolve(object.key), { force: true });
      for (let folder = path.posix.dirname(object.key); folder !== '.' && folder !== ''; folder = path.posix.dirname(folder)) folders.add(folder);
    }
    // Every folder below the prefix (those it emptied, and those emptied before, by a released lease, say), deepest
    // first, with the temporary files of writes killed half-way (this store's own names); rmdir leaves any folder
    // that still holds something.
    for (const folder of await this.foldersBelow(prefix.replace(/\/+$/, ''))) folders.add(folder);
    for (const folder of [...folders].sort((a, b) => b.length - a.length)) {
      const dir = this.resolve(folder);
      const names = await fs.promises.readdir(dir).catch(() => [] as string[]);
      for (const name of names) if (TEMP_NAME.test(name)) await fs.promises.rm(path.join(dir.toString(), name), { force: true });
      await fs.promises.rmdir(dir).catch(() => undefined);
    }
  }

  /** The folder itself and every folder below it, as keys. */
  private async foldersBelow(folder: string): Promise<string[]> {
    const entries = await fs.promises.readdir(this.resolve(folder), { withFileTypes: true }).catch(() => undefined);
    if (!entries) return [];
    const below = await Promise.all(entries.filter((entry) => entry.isDirectory()).map((entry) => this.foldersBelow(`${folder}/${entry.name}`)));
    return [folder, ...below.flat()];
  }

  // Folders it leaves empty stay: removing them could race with another writer's mkdir-then-write.
  async delete(key: string): Promise<void> {
    await fs.promises.rm(this.resolve(key), { force: true });
  }

  /**
   * Written to a temporary file, then hard-linked to the key: link(2) fails if the key exists, so of two writers
   * exactly one creates it, and no reader ever sees it half written.
   */
  async putIfAbsent(key: string, body: Buffer | string): Promise<boolean> {
    return this.writeVia(key, async (temp, target) => {
      await fs.promises.writeFile(temp, body);
      try {
        await fs.promises.link(temp, target);
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw error;
      }
    });
  }

  async exclusiveCreate(): Promise<boolean> {
    return true;
  }
}

/** MD5 of a local file, hex: what S3 reports as the ETag of a single-part upload. */
export async function md5File(file: fs.PathLike): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function tempName(): string {
  return `.tmp-${randomBytes(6).toString('hex')}`;
}
const TEMP_NAME = /^\.tmp-[0-9a-f]{12}$/;

/** The folder of a path given as a string or as bytes. */
function parentOf(file: string | Buffer): string | Buffer {
  return typeof file === 'string' ? path.dirname(file) : file.subarray(0, file.lastIndexOf(path.sep));
}

/** What a file that is not a regular file is, for the errors.csv reason. */
function fileKind(stat: fs.Stats): string {
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  return 'not a file';
}

/** A full disk (or quota): the environment's, with its remedy; never "unexpected". */
export function noSpace(where: string, cause: unknown): OrchardError {
  return new OrchardError(
    `No space left on the device writing ${where}: free some space there (or give another --output), then rerun with the same --run-id to resume`,
    'ERR_NO_SPACE',
    ExitCode.Fatal,
    { cause },
  );
}

/** The first path on the way to `dir` that exists and is not a folder. */
function fileOnTheWay(dir: string): string {
  let at = path.parse(dir).root;
  for (const part of path.relative(at, dir).split(path.sep)) {
    at = path.join(at, part);
    const stat = fs.statSync(at, { throwIfNoEntry: false });
    if (stat && !stat.isDirectory()) return at;
  }
  return dir;
}
