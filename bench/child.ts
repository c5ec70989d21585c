import { spawn } from 'node:child_process';

export interface ChildResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly wallS: number;
}

/** Runs a command to completion, collecting its output and wall time. */
export function runChild(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<ChildResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, wallS: (performance.now() - started) / 1000 }));
  });
}

export const log = (message: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
