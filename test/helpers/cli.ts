import { spawn, type ChildProcess } from 'node:child_process';
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

/** How a child process of the real bin ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Starts the real bin in a child process; `exited` settles when the process is gone, however it ended. */
export function startOrchard(args: readonly string[], env: Record<string, string> = {}): { child: ChildProcess; exited: Promise<Exit> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, exited };
}

/** Runs the real bin in a child process (for what only a whole process shows: its real stderr). */
export async function orchardProcess(args: string[], env: Record<string, string> = {}): Promise<Captured> {
  const { code, stdout, stderr } = await startOrchard(args, env).exited;
  return { code: code ?? undefined, out: stdout, err: stderr };
}

/** Whether a message carries a stack trace (a line `    at fn (file:line:col)`). */
export const hasStack = (text: string) => /^\s+at .+[:(]/m.test(text);
