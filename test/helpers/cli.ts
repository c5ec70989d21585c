import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { main, type CliIo } from '../../runtime/cli';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'runtime', 'orchard.cjs');
/** s3rver's fixed loopback credentials: the CLI takes credentials from the SDK's default chain, as on EC2. */
export const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

export interface Captured {
  code: number | undefined;
  out: string;
  err: string;
}

/** Runs `orchard <args>` in this process through main(), capturing what it prints and the exit status. */
export async function orchard(...args: string[]): Promise<Captured> {
  const captured: Captured = { code: undefined, out: '', err: '' };
  const io: CliIo = {
    out: (text) => {
      captured.out += text;
    },
    err: (text) => {
      captured.err += text;
    },
    exit: (code) => {
      captured.code ??= code;
    },
    isTty: false,
  };
  await main(['node', 'orchard', ...args], io);
  return captured;
}

/** Runs the real bin in a child process (for what only a whole process shows: its real stderr). */
export function orchardProcess(args: string[], env: Record<string, string> = {}): Promise<Captured> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    const captured: Captured = { code: undefined, out: '', err: '' };
    child.stdout.on('data', (chunk: Buffer) => (captured.out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (captured.err += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ ...captured, code: code ?? undefined }));
  });
}

/** Whether a message carries a stack trace (a line `    at fn (file:line:col)`). */
export const hasStack = (text: string) => /^\s+at .+[:(]/m.test(text);
