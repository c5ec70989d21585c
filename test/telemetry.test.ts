import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, ROOT } from './helpers/cli';

/**
 * ONNX Runtime 1.29+ keeps a device id and an event queue under ~/.cache/Microsoft and uploads them unless told
 * not to. orchard turns that off itself (loadOrt), so the test takes the opt-out variables out of the child's
 * environment (jest's setup puts them in every test process) and gives it an empty HOME.
 */
let home: string;
let out: string;
let exit: { code: number | null; stderr: string };

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-home-'));
  out = fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-telemetry-'));
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
  delete env.ORT_DISABLE_TELEMETRY;
  delete env.ORT_TELEMETRY_DISABLED;
  const child = spawn(process.execPath, [BIN, 'demo', '--per-class', '2', '--engine', 'onnx', '-q', '-o', out], { cwd: ROOT, env });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  exit = await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
});

afterAll(() => {
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(out, { recursive: true, force: true });
});

test('a run on the onnx engine leaves nothing of ONNX Runtime under HOME (no device id, no telemetry queue)', () => {
  expect(exit).toEqual({ code: 0, stderr: expect.any(String) });
  expect(fs.existsSync(path.join(home, '.cache', 'Microsoft'))).toBe(false);
  const everything = fs.readdirSync(home, { recursive: true }).map(String);
  expect(everything.filter((entry) => /microsoft|onnxruntime/i.test(entry))).toEqual([]);
});
