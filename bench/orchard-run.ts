import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROCESS_ENV } from '../runtime/contracts/deployment';
import { S3Storage, createS3Client } from '../runtime/storage';
import type { EmbeddedS3 } from '../runtime/storage/embedded-s3';
import { runChild } from './child';

const ORCHARD = path.resolve(__dirname, '..', 'runtime', 'orchard.cjs');
const GNU_TIME = '/usr/bin/time';

export interface RunMeasure {
  readonly images: number;
  readonly input: string;
  readonly wallS: number;
  /** Peak resident set of the orchard process (GNU time's %M), null when /usr/bin/time is missing. */
  readonly peakRssMb: number | null;
  /** CPU seconds of the orchard process, user + system, every thread (GNU time's %U + %S); null without it. */
  readonly cpuS: number | null;
  readonly manifest: {
    readonly timings: Record<string, number>;
    readonly pca: { readonly components: number };
    readonly counts: { readonly processed: number; readonly failed: number };
  };
}

export interface OrchardRunOptions {
  readonly input: string;
  readonly output: string;
  readonly runId: string;
  readonly images: number;
  readonly model: string;
  readonly engine: string;
  readonly backend: string;
  readonly threads: number;
  /** The embedded S3 server, when input and output are s3:// URIs on it. */
  readonly s3?: EmbeddedS3;
  /** Where node writes the run's CPU profiles (--cpu-prof), when wanted. */
  readonly cpuProfileDir?: string;
}

/** One `orchard run` in a child process, as a user would start it; returns its manifest and peak memory. */
export async function orchardRun(options: OrchardRunOptions): Promise<RunMeasure> {
  const { input, output, runId, s3 } = options;
  const profile = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : [];
  const command = [process.execPath, ...profile, ORCHARD, 'run', '-i', input, '-o', output, '--run-id', runId];
  command.push('--model', options.model, '--engine', options.engine, '--backend', options.backend, '--threads', String(options.threads), '-q', '--json-logs');
  // What the instance's wrapper sets (the malloc setting that keeps the resident set flat).
  const env = { ...process.env, ...PROCESS_ENV };
  if (s3) {
    command.push('--endpoint', s3.endpoint);
    Object.assign(env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' });
  }
  const timed = fs.existsSync(GNU_TIME);
  const result = timed ? await runChild(GNU_TIME, ['-f', '%M %U %S', ...command], env) : await runChild(command[0]!, command.slice(1), env);
  if (result.code !== 0) throw new Error(`orchard run exited ${result.code}:\n${result.stderr.slice(-3000)}`);
  const [peakKb, userS, systemS] = timed ? result.stderr.trim().split('\n').pop()!.split(' ').map(Number) : [];

  let manifest: string;
  if (s3) {
    const url = new URL(output);
    const storage = new S3Storage(createS3Client(s3.options), url.host, url.pathname.replace(/^\/+/, ''));
    manifest = (await storage.get(`${runId}/manifest.json`)).toString('utf8');
  } else {
    manifest = await fs.promises.readFile(path.join(output, runId, 'manifest.json'), 'utf8');
  }
  return {
    images: options.images,
    input,
    wallS: result.wallS,
    peakRssMb: Number.isFinite(peakKb) ? peakKb! / 1024 : null,
    cpuS: Number.isFinite(userS) && Number.isFinite(systemS) ? userS! + systemS! : null,
    manifest: JSON.parse(manifest) as RunMeasure['manifest'],
  };
}
