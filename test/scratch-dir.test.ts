import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { withScratchDir } from '../runtime/pipeline/scratch-dir';
import { tempDir } from './helpers/s3';

describe('the scratch folder of publish', () => {
  const parent = tempDir();
  // A process that has exited: its pid no longer runs (pids are not reused this soon).
  const deadPid = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  const orphan = path.join(parent, `orchard-publish-${deadPid}-AbC123`);
  const live = path.join(parent, `orchard-publish-${process.ppid}-XyZ789`);
  const other = path.join(parent, 'orchard-demo-1-keep');

  beforeAll(() => {
    for (const dir of [orphan, live, other]) {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'pca.csv'), 'x');
    }
  });

  it('is named after this process, exists while the work runs, and is removed after it, even when the work fails', async () => {
    let seen = '';
    await expect(
      withScratchDir(
        'orchard-publish-',
        async (dir) => {
          seen = dir;
          expect(path.basename(dir)).toMatch(new RegExp(`^orchard-publish-${process.pid}-`));
          expect(fs.statSync(dir).isDirectory()).toBe(true);
          throw new Error('upload failed');
        },
        parent,
      ),
    ).rejects.toThrow('upload failed');
    expect(seen).not.toBe('');
    expect(fs.existsSync(seen)).toBe(false);
  });

  it('removes the folders left by processes killed with -9, and only those of its prefix', () => {
    expect(fs.existsSync(orphan)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(fs.existsSync(other)).toBe(true);
  });
});
