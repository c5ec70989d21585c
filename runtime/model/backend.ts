import * as os from 'node:os';
import { ExitCode, OrchardError, describeError } from '../errors';

export type Tf = typeof import('@tensorflow/tfjs');
/** `tensorflow` is libtensorflow through @tensorflow/tfjs-node (installed on EC2); `wasm` ships in npm. */
export type BackendName = 'tensorflow' | 'wasm';
export type BackendPreference = BackendName | 'auto';

export interface TfRuntime {
  readonly tf: Tf;
  readonly backend: BackendName;
  /** Versions of the TensorFlow.js packages that ran, for the manifest. */
  readonly versions: Record<string, string>;
  /** Threads the backend computes on: libtensorflow's default is every core; WebAssembly has one in Node. */
  readonly threads: number;
}

const NODE_PACKAGE = '@tensorflow/tfjs-node';

/**
 * Chooses the TensorFlow.js backend once, at start-up: tfjs-node where it is installed, else WebAssembly.
 * The plain JavaScript `cpu` backend is never accepted: it is ~20x slower, so silently falling back to it
 * would turn a one-hour run into a day. tfjs-node is loaded with a computed `require` because it is not a
 * dependency of this package (its install script downloads libtensorflow, which fails without internet);
 * the EC2 bootstrap installs it next to the bundle.
 */
export async function initTf(preference: BackendPreference = 'auto'): Promise<TfRuntime> {
  const wantNode = preference === 'tensorflow' || (preference === 'auto' && isInstalled(NODE_PACKAGE));
  if (wantNode) {
    let tf: Tf;
    try {
      tf = require(NODE_PACKAGE) as Tf;
    } catch (error) {
      throw new OrchardError(
        `Cannot load ${NODE_PACKAGE}: ${describeError(error)}. Install it (npm i ${NODE_PACKAGE}@4.22.0) or use --backend wasm`,
        'ERR_BACKEND',
        ExitCode.Fatal,
        { cause: error },
      );
    }
    await activate(tf, 'tensorflow');
    return { tf, backend: 'tensorflow', versions: versionsOf(tf), threads: os.availableParallelism() };
  }
  const tf = require('@tensorflow/tfjs') as Tf;
  require('@tensorflow/tfjs-backend-wasm');
  await activate(tf, 'wasm');
  return { tf, backend: 'wasm', versions: versionsOf(tf), threads: 1 };
}

/**
 * TensorFlow.js for reading weights only (the ONNX compiler decodes them with tfjs's own decoder): whatever
 * backend is active, else the plain JavaScript one, which needs no initialisation and does no maths here.
 */
export async function tfForWeights(): Promise<Tf> {
  const tf = require('@tensorflow/tfjs') as Tf;
  tf.env().set('PROD', true); // no "install tfjs-node" banner on stderr
  if (!tf.getBackend()) await tf.setBackend('cpu');
  return tf;
}

async function activate(tf: Tf, backend: BackendName): Promise<void> {
  const ok = await tf.setBackend(backend).catch(() => false);
  await tf.ready();
  if (!ok || tf.getBackend() !== backend) {
    throw new OrchardError(
      `TensorFlow.js backend '${backend}' failed to initialise (active: '${tf.getBackend()}')`,
      'ERR_BACKEND',
    );
  }
  // tfjs logs a "Hi there 👋" banner and kernel-registration warnings on stdout; keep stdout for our output.
  tf.env().set('PROD', true);
}

function isInstalled(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

function versionsOf(tf: Tf): Record<string, string> {
  return Object.fromEntries(
    Object.entries(tf.version ?? {}).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  );
}
