import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildRuntimeBundle } from '../../lib/runtime-bundle';

/**
 * The npm command the bootstrap runs on the instance (lib/scripts/bootstrap.sh), plus --prefer-offline: the
 * cache that `npm ci` filled makes it fast, and it needs the npm registry at most.
 */
export const BUNDLE_INSTALL = ['install', '--omit=dev', '--no-audit', '--no-fund', '--no-update-notifier', '--prefer-offline'];

/** npm settings passed on from the environment: where its cache and registry are, nothing about this project. */
const NPM_SETTINGS_KEPT = new Set(['npm_config_cache', 'npm_config_registry']);

/**
 * An environment for processes that must see nothing of this repository: no npm_* variables (under `npm test`
 * they include npm_config_local_prefix and npm_config_prefix, which would make npm install into the repository),
 * no NODE_PATH, NODE_OPTIONS or INIT_CWD. The rest (PATH, HOME, proxy and CA settings) is kept.
 */
export function isolatedEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (/^npm_/i.test(name) && !NPM_SETTINGS_KEPT.has(name.toLowerCase())) continue;
    if (['NODE_PATH', 'NODE_OPTIONS', 'INIT_CWD'].includes(name) || /^SSM_|^ORCHARD_|^AWS_/.test(name)) continue;
    env[name] = value;
  }
  // Under Node 20 (CI and the instance run 22) the bundled SDK would print its "needs Node 22 soon" notice.
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  return { ...env, ...extra };
}

/** s3rver's fixed loopback credentials, given to child processes the way the SDK's default chain reads them. */
export const S3_CREDENTIALS_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

export interface InstalledBundle {
  readonly dir: string;
  /** The package.json as buildRuntimeBundle wrote it (the asset's), before the optional dependency was left out. */
  readonly manifest: Record<string, unknown>;
  readonly buildSeconds: number;
  readonly installSeconds: number;
}

/**
 * Where tfjs-node's install script downloads libtensorflow from: a closed loopback port, so that it fails at
 * once, with or without internet, as it fails on a machine that cannot reach the download.
 */
export const NO_LIBTENSORFLOW_ENV = { TFJS_NODE_BASE_URI: 'http://127.0.0.1:9/' };

/**
 * Builds the runtime bundle (the CDK asset's content) into `dir` and installs only the dependencies its own
 * package.json declares, there, without its optional one: @tensorflow/tfjs-node cannot install here (its install
 * script downloads libtensorflow), and trying costs seconds of unpacking @tensorflow/tfjs only to remove it
 * again (test/bootstrap.test.ts goes through that, as the instance does). `npm install --omit=optional` is no
 * way to skip it: sharp's platform binaries (@img/sharp-linux-x64, …) are optional dependencies too.
 */
export function buildAndInstallBundle(dir: string): InstalledBundle {
  const started = performance.now();
  buildRuntimeBundle(dir);
  const buildSeconds = (performance.now() - started) / 1000;
  return { ...installBundleDependencies(dir), buildSeconds };
}

/** Installs the dependencies of a bundle folder already there (see buildAndInstallBundle). */
export function installBundleDependencies(dir: string): Omit<InstalledBundle, 'buildSeconds'> {
  const manifestFile = path.join(dir, 'package.json');
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Record<string, unknown>;
  const { optionalDependencies: _unavailableHere, ...withoutOptional } = manifest;
  fs.writeFileSync(manifestFile, `${JSON.stringify(withoutOptional, null, 2)}\n`);
  const started = performance.now();
  const npm = spawnSync('npm', BUNDLE_INSTALL, {
    cwd: dir,
    encoding: 'utf8',
    env: isolatedEnv(NO_LIBTENSORFLOW_ENV),
    timeout: 180_000,
  });
  if (npm.status !== 0) {
    throw new Error(`npm ${BUNDLE_INSTALL.join(' ')} failed in ${dir} (status ${npm.status}):\n${npm.stdout}\n${npm.stderr}`);
  }
  return { dir, manifest, installSeconds: (performance.now() - started) / 1000 };
}

/** Top-level packages installed in a folder's node_modules, scoped ones as @scope/name. */
export function installedPackages(dir: string): string[] {
  const modules = path.join(dir, 'node_modules');
  if (!fs.existsSync(modules)) return [];
  return fs
    .readdirSync(modules)
    .filter((name) => !name.startsWith('.'))
    .flatMap((name) =>
      name.startsWith('@') ? fs.readdirSync(path.join(modules, name)).map((inner) => `${name}/${inner}`) : [name],
    )
    .filter((name) => fs.existsSync(path.join(modules, name, 'package.json')));
}

export interface Finished {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

/** Runs a command to its end, capturing its output (asynchronous: the test's S3 server must keep answering). */
export function run(command: string, args: readonly string[], options: { cwd: string; env: Record<string, string> }): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}
