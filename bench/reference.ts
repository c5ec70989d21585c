import * as fs from 'node:fs';
import * as path from 'node:path';
import { runChild } from './child';

/** Debian's interpreter: the one that sees python3-torch, python3-torchvision and python3-sklearn. */
const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(__dirname, 'reference.py');
export const PYTHON_PACKAGES = 'python3-torch python3-torchvision python3-sklearn python3-numpy';

export type Reference = { readonly ok: true; readonly json: Record<string, unknown> } | { readonly ok: false; readonly message: string };

/** Runs bench/reference.py; never installs anything, only says what is missing. */
export async function runReference(args: readonly string[]): Promise<Reference> {
  if (!fs.existsSync(PYTHON)) return { ok: false, message: `${PYTHON} not found: apt-get install python3 ${PYTHON_PACKAGES}` };
  const result = await runChild(PYTHON, [SCRIPT, ...args]);
  const line = result.stdout.trim().split('\n').pop() ?? '';
  try {
    const json = JSON.parse(line) as Record<string, unknown>;
    if (json.error) return { ok: false, message: String(json.message) };
    if (result.code === 0) return { ok: true, json };
  } catch {
    // Not JSON: report the exit status and the end of stderr below.
  }
  return { ok: false, message: `reference.py exited ${result.code}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}` };
}
