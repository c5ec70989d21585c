import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildSync } from 'esbuild';
import { OFFLINE_MODEL_DIR, nsfwjsModelFolder } from '../runtime/model/artifacts';
import { RUN_PARAMETERS_SCRIPT, runParametersScript } from './run-parameters';

const ROOT = path.resolve(__dirname, '..');

/**
 * Packages that stay outside the bundle and are installed on the instance from the bundle's own package.json:
 * native code (sharp, onnxruntime-node, tfjs-node) must be the build for the target's CPU and libc, and chart.js
 * is read as a file by the run report. Versions are the ones this repository pins, so the instance runs what the
 * tests ran.
 */
export const INSTANCE_DEPENDENCIES = ['sharp', 'onnxruntime-node', 'chart.js'] as const;

/**
 * npm settings of the bundle folder: onnxruntime-node's install script would download CUDA libraries on
 * linux/x64 (a GPU provider orchard never uses); its CPU binaries are in the npm package itself.
 */
export const BUNDLE_NPMRC = 'onnxruntime-node-install=skip\n';
/** Installed when possible: tfjs-node downloads libtensorflow at install time (fine on EC2, not offline). */
export const INSTANCE_OPTIONAL_DEPENDENCIES = ['@tensorflow/tfjs-node'] as const;
/**
 * Only the demo (s3rver) and the offline model (nsfwjs, 41 MB) use these; the bundles run without them (the offline
 * model travels as its two files, see copyRuntimeFiles).
 */
const LEFT_OUT = ['s3rver', 'nsfwjs'];

/** tfjs-node is not a dependency here (it cannot install offline); this is the version the instance gets. */
const TFJS_NODE_VERSION = '4.22.0';

/**
 * The scripts the instance runs (lib/scripts/*.sh), and the SSM parameter patterns run-pipeline.sh sources,
 * written from the module the SSM document takes them from.
 */
export function stageInstanceScripts(outDir: string): void {
  for (const script of fs.readdirSync(path.join(ROOT, 'lib', 'scripts'))) {
    fs.copyFileSync(path.join(ROOT, 'lib', 'scripts', script), path.join(outDir, script));
  }
  fs.writeFileSync(path.join(outDir, RUN_PARAMETERS_SCRIPT), runParametersScript());
}

/**
 * Bundles runtime/ into one file (`orchard.cjs`) plus what it needs at run time: the WebAssembly binaries of
 * the wasm backend, the instance scripts, and a package.json that pins the native dependencies. The folder is
 * the CDK asset, so a changed runtime changes the asset hash and reaches the instance on the next deploy.
 */
export function buildRuntimeBundle(outDir: string = path.join(ROOT, 'dist', 'runtime')): string {
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  bundleEntry(path.join(ROOT, 'runtime', 'main.ts'), path.join(outDir, 'orchard.cjs'), [...INSTANCE_DEPENDENCIES, ...INSTANCE_OPTIONAL_DEPENDENCIES]);
  copyRuntimeFiles(outDir);
  stageInstanceScripts(outDir);
  const own = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
  const pinned = (name: string) => {
    const version = own.dependencies[name];
    if (!version) throw new Error(`package.json does not pin ${name}, which the instance bundle needs`);
    return version;
  };
  const manifest = {
    name: 'orchard-instance',
    version: own.version,
    private: true,
    description: 'orchard runtime bundle for the EC2 instance: native dependencies, pinned',
    bin: { orchard: 'orchard.cjs' },
    engines: { node: '>=22 <23' },
    dependencies: Object.fromEntries(INSTANCE_DEPENDENCIES.map((name) => [name, pinned(name)])),
    optionalDependencies: { '@tensorflow/tfjs-node': TFJS_NODE_VERSION },
  };
  fs.writeFileSync(path.join(outDir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  fs.writeFileSync(path.join(outDir, '.npmrc'), BUNDLE_NPMRC);
  fs.chmodSync(path.join(outDir, 'orchard.cjs'), 0o755);
  return outDir;
}

/**
 * One esbuild bundle of a runtime entry point (CommonJS, Node 22), with `external` packages (native code, files
 * read from disk) and the ones only the demo or the offline model use left out.
 */
export function bundleEntry(entry: string, outfile: string, external: readonly string[]): void {
  buildSync({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    external: [...external, ...LEFT_OUT],
    banner: { js: '#!/usr/bin/env node' },
    legalComments: 'none',
    logLevel: 'warning',
  });
}

/**
 * Files a bundle loads from its own folder: the wasm backend's binaries, the JPEG decoder's, the onnx engine's
 * worker, and the offline model (mobilenet_v2_offline) as a tfjs model folder of two files, 2.5 MB instead of the
 * whole nsfwjs package.
 */
export function copyRuntimeFiles(outDir: string): void {
  // The wasm backend finds its binaries next to the module that loads them: in the bundle, that is the bundle.
  const wasmDir = path.join(ROOT, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');
  for (const file of fs.readdirSync(wasmDir).filter((name) => name.endsWith('.wasm'))) {
    fs.copyFileSync(path.join(wasmDir, file), path.join(outDir, file));
  }
  // The JPEG fast path's decoder: its glue is bundled, its WebAssembly is read from beside the bundle.
  fs.copyFileSync(path.join(ROOT, 'node_modules', '@jsquash', 'jpeg', 'codec', 'dec', 'mozjpeg_dec.wasm'), path.join(outDir, 'mozjpeg_dec.wasm'));
  // The onnx engine's worker thread is a file of its own, found next to the module that starts it.
  fs.copyFileSync(path.join(ROOT, 'runtime', 'onnx', 'predict-worker.cjs'), path.join(outDir, 'predict-worker.cjs'));
  const model = nsfwjsModelFolder();
  const modelDir = path.join(outDir, OFFLINE_MODEL_DIR);
  fs.mkdirSync(modelDir, { recursive: true });
  fs.writeFileSync(path.join(modelDir, 'model.json'), JSON.stringify(model.modelJson));
  fs.writeFileSync(path.join(modelDir, model.weightsFile), model.weights);
}

if (require.main === module) {
  console.log(buildRuntimeBundle(process.argv[2]));
}
