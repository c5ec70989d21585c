import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { processAlive } from './lease';

/**
 * Runs `work` in a fresh local temporary folder named `<prefix><pid>-…`, removed afterwards. A process killed
 * with -9 cannot remove its own, so each call first removes the folders of this prefix whose process no longer
 * runs: the disk does not fill up with leftovers of crashed runs.
 */
export async function withScratchDir<T>(prefix: string, work: (dir: string) => Promise<T>, parent = os.tmpdir()): Promise<T> {
  await removeOrphans(prefix, parent);
  const dir = await fs.promises.mkdtemp(path.join(parent, `${prefix}${process.pid}-`));
  try {
    return await work(dir);
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

async function removeOrphans(prefix: string, parent: string): Promise<void> {
  const pattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)-`);
  const names = await fs.promises.readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    const pid = pattern.exec(name)?.[1];
    if (pid === undefined || processAlive(Number(pid))) continue;
    // Another user's folder, or one removed meanwhile: not ours to worry about.
    await fs.promises.rm(path.join(parent, name), { recursive: true, force: true }).catch(() => undefined);
  }
}
