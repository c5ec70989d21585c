import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bundleEntry, copyRuntimeFiles } from './runtime-bundle';

const ROOT = path.resolve(__dirname, '..');

/** The CPU of the Lambda functions, and what the bundle's native files must be built for. */
export type LambdaArch = 'x64' | 'arm64';

/** ELF `e_machine` of each architecture: what the asset's `.node` and `.so` files must say. */
export const ELF_MACHINE: Readonly<Record<LambdaArch, number>> = { x64: 62, arm64: 183 };

/** Packages the handler loads at run time that cannot be bundled: native code, and files read from disk. */
const NATIVE_PACKAGES = ['sharp', 'onnxruntime-node', 'chart.js'] as const;
/** Dependencies a package declares for its install script only (onnxruntime-node's CUDA download). */
const INSTALL_ONLY: Readonly<Record<string, readonly string[]>> = { 'onnxruntime-node': ['adm-zip', 'global-agent'] };

/**
 * sharp loads its binary from a package per platform (`@img/sharp-linux-x64` and the libvips it links,
 * `@img/sharp-libvips-linux-x64`); npm installs only the current machine's, so on a Mac or an arm64 machine
 * the Linux build the function needs is not in node_modules and is fetched from the npm registry.
 */
function platformPackages(arch: LambdaArch): string[] {
  return [`@img/sharp-linux-${arch}`, `@img/sharp-libvips-linux-${arch}`];
}

export interface LambdaBundleOptions {
  readonly arch?: LambdaArch;
  /** @default dist/lambda-<arch> */
  readonly outDir?: string;
  /** Where packages fetched for another platform are kept between builds. @default ~/.cache/orchard/lambda-natives */
  readonly fetchCache?: string;
}

/**
 * The Lambda functions' code: the handler bundled by esbuild (the same runtime/ as the instance's bundle) with
 * the native packages it loads, holding only Linux binaries for `arch` whatever machine builds it: packages for
 * other platforms are left out, and binaries of other platforms inside a package (onnxruntime-node ships every
 * one of them, 288 MB) are deleted after an ELF check. The folder is the asset: what the tests check is what
 * `cdk deploy` uploads.
 */
export function buildLambdaBundle(options: LambdaBundleOptions = {}): string {
  const arch = options.arch ?? 'x64';
  const outDir = options.outDir ?? path.join(ROOT, 'dist', `lambda-${arch}`);
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  bundleEntry(path.join(ROOT, 'runtime', 'lambda', 'handler.ts'), path.join(outDir, 'index.js'), [...NATIVE_PACKAGES]);
  copyRuntimeFiles(outDir);

  const modules = path.join(outDir, 'node_modules');
  const copied = new Set<string>();
  const copy = (name: string, from: string) => {
    if (copied.has(name)) return;
    copied.add(name);
    const source = packageDir(name, from);
    // A package's own nested node_modules are left out: its dependencies are copied by name, below.
    fs.cpSync(source, path.join(modules, name), { recursive: true, dereference: true, filter: (file) => !path.relative(source, file).split(path.sep).includes('node_modules') });
    const manifest = readManifest(source);
    for (const dependency of Object.keys(manifest.dependencies ?? {})) {
      if (!INSTALL_ONLY[name]?.includes(dependency)) copy(dependency, source);
    }
  };
  for (const name of NATIVE_PACKAGES) copy(name, ROOT);

  const missing = platformPackages(arch).filter((name) => !copied.has(name) && !resolvable(name, ROOT));
  const fetched = missing.length > 0 ? fetchForLinux(missing, arch, options.fetchCache) : undefined;
  for (const name of platformPackages(arch)) copy(name, fetched ?? ROOT);

  pruneForeignBinaries(outDir, ELF_MACHINE[arch]);
  if (!fs.existsSync(path.join(modules, 'onnxruntime-node', 'bin', 'napi-v6', 'linux', arch, 'onnxruntime_binding.node'))) {
    throw new Error(`onnxruntime-node ${readManifest(packageDir('onnxruntime-node', ROOT)).version} has no linux/${arch} binary`);
  }
  fs.writeFileSync(path.join(outDir, 'package.json'), `${JSON.stringify({ name: 'orchard-lambda', private: true, type: 'commonjs', main: 'index.js' }, null, 2)}\n`);
  return outDir;
}

/**
 * The data stack's model-fetch function (runtime/lambda/fetch-model.ts): one esbuild file, nothing native.
 * @default outDir dist/model-fetch
 */
export function buildModelFetchBundle(outDir: string = path.join(ROOT, 'dist', 'model-fetch')): string {
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  bundleEntry(path.join(ROOT, 'runtime', 'lambda', 'fetch-model.ts'), path.join(outDir, 'index.js'), []);
  return outDir;
}

/**
 * Where `name` is installed as seen from `from`, as Node's resolution looks for it (node_modules folders from
 * `from` up); by folder, because packages with an `exports` map do not export their package.json.
 */
function packageDir(name: string, from: string): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`${name} is not installed (looked in node_modules from ${from} up)`);
  }
}

function resolvable(name: string, from: string): boolean {
  try {
    packageDir(name, from);
    return true;
  } catch {
    return false;
  }
}

function readManifest(dir: string): { version: string; dependencies?: Record<string, string> } {
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string; dependencies?: Record<string, string> };
}

/**
 * Installs sharp (the version this repository pins) for Linux on `arch` into a cache folder, with npm's platform
 * flags, which choose the optional platform packages: its Linux build and libvips come with it. For a build on a
 * machine whose node_modules hold another platform's. Needs the npm registry.
 */
function fetchForLinux(names: readonly string[], arch: LambdaArch, cacheRoot = path.join(os.homedir(), '.cache', 'orchard', 'lambda-natives')): string {
  const sharp = readManifest(packageDir('sharp', ROOT));
  const dir = path.join(cacheRoot, `linux-${arch}-sharp-${sharp.version}`);
  if (!names.every((name) => resolvable(name, dir))) {
    fs.mkdirSync(dir, { recursive: true });
    const args = ['install', '--no-save', '--no-package-lock', '--ignore-scripts', '--os=linux', `--cpu=${arch}`, '--libc=glibc', '--prefix', dir, `sharp@${sharp.version}`];
    try {
      execFileSync('npm', args, { stdio: 'pipe' });
    } catch (error) {
      const stderr = (error as { stderr?: Buffer }).stderr?.toString('utf8') ?? '';
      throw new Error(`The Lambda bundle needs ${names.join(' and ')} (Linux ${arch} builds, absent from node_modules on this machine) and \`npm ${args.join(' ')}\` failed: ${stderr.trim().split('\n').slice(-3).join(' ')}`);
    }
    const still = names.filter((name) => !resolvable(name, dir));
    if (still.length > 0) throw new Error(`npm installed sharp ${sharp.version} for linux/${arch} into ${dir} without ${still.join(', ')}`);
  }
  return dir;
}

const NATIVE_FILE = /\.(node|so(\.\d+)*|dylib|dll)$/;

/** Deletes every native file that is not a 64-bit little-endian Linux ELF for `machine`; returns what it deleted. */
export function pruneForeignBinaries(dir: string, machine: number): string[] {
  const removed: string[] = [];
  for (const file of walk(dir)) {
    if (!NATIVE_FILE.test(path.basename(file))) continue;
    if (elfMachine(file) !== machine) {
      fs.rmSync(file);
      removed.push(path.relative(dir, file));
    }
  }
  removeEmptyDirs(dir);
  return removed;
}

/** `e_machine` of a 64-bit little-endian ELF file for Linux (OS ABI System V or GNU/Linux), else undefined. */
export function elfMachine(file: string): number | undefined {
  const header = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, header, 0, header.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  const isElf = header.readUInt32BE(0) === 0x7f454c46;
  const is64LittleEndian = header[4] === 2 && header[5] === 1;
  const linuxAbi = header[7] === 0 || header[7] === 3;
  return isElf && is64LittleEndian && linuxAbi ? header.readUInt16LE(18) : undefined;
}

function* walk(dir: string): Generator<string> {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else if (entry.isFile()) yield full;
  }
}

function removeEmptyDirs(dir: string): boolean {
  let empty = true;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory() && removeEmptyDirs(full)) fs.rmdirSync(full);
    else empty = false;
  }
  return empty;
}

if (require.main === module) {
  console.log(buildLambdaBundle({ arch: (process.argv[2] as LambdaArch | undefined) ?? 'x64' }));
}
