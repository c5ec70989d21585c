/**
 * The module graph keeps its shape: no import cycle, the runtime independent of the CDK app, contract modules
 * that import nothing of the layers using them, and no import from a lower layer to a higher one
 * (.dependency-cruiser.cjs states the layers). Checked by dependency-cruiser on the real sources.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const DEPCRUISE = path.join(ROOT, 'node_modules', '.bin', 'depcruise');

function cruise(...targets: string[]) {
  return spawnSync(DEPCRUISE, ['--config', '.dependency-cruiser.cjs', '--output-type', 'err', ...targets], { cwd: ROOT, encoding: 'utf8' });
}

test('runtime/, lib/ and bin/ break no rule of the module graph', () => {
  const result = cruise('runtime', 'lib', 'bin');
  expect(result.stdout + result.stderr).toMatch(/no dependency violations found/);
  expect(result.status).toBe(0);
});

test('the rules catch an upward import and a cycle (a planted pair of modules)', () => {
  const dir = fs.mkdtempSync(path.join(ROOT, 'runtime', 'stats', '.tmp-arch-'));
  try {
    fs.writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b';\nimport { runPipeline } from '../../pipeline/run';\nexport const a = () => [b, runPipeline];\n");
    fs.writeFileSync(path.join(dir, 'b.ts'), "import { a } from './a';\nexport const b = () => a;\n");
    const result = cruise(path.relative(ROOT, dir));
    expect(result.status).not.toBe(0);
    expect(result.stdout).toMatch(/error no-circular: .*a\.ts/);
    expect(result.stdout).toMatch(/error no-upward-.*: runtime\/stats\/.*a\.ts → runtime\/pipeline\/run\.ts/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
