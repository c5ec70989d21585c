import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readModelFiles } from '../../runtime/model/artifacts';
import { tfForWeights } from '../../runtime/model/backend';
import { PRESETS } from '../../runtime/model/presets';
import { decodeWeights, floats } from '../../runtime/model/to-onnx/weights';

/** One layer of a Keras weights file: its weights as Keras names them (`<layer>/<name>:0`), in Keras's order. */
export interface H5Layer {
  name: string;
  weights: { name: string; shape: number[]; values: Float32Array }[];
}

/**
 * The nsfwjs MobileNetV2's weights (de-quantised as tfjs decodes them) laid out as Keras saves the same network
 * without its top: every layer up to out_relu, in topology order. `change` may alter the layers before they are
 * written (a wrong network, a missing weight).
 */
export async function nsfwjsAsKerasLayers(): Promise<H5Layer[]> {
  const files = await readModelFiles(PRESETS.mobilenet_v2_offline!.source);
  const weights = decodeWeights(await tfForWeights(), files);
  const topology = files.modelJson.modelTopology as { model_config: { config: { layers: { name: string }[] } } };
  const layers = topology.model_config.config.layers;
  const end = layers.findIndex((layer) => layer.name === 'out_relu');
  return layers.slice(0, end + 1).map((layer) => ({
    name: layer.name,
    weights: [...weights.entries()]
      .filter(([name]) => name.startsWith(`${layer.name}/`))
      .map(([name, weight]) => ({ name: `${name}:0`, shape: [...weight.shape], values: floats(weight) })),
  }));
}

/** Writes `layers` as a Keras HDF5 weights file at `out` (through h5wasm, in a child process: it is an ES module). */
export function writeKerasH5(out: string, layers: readonly H5Layer[]): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-h5-'));
  try {
    let offset = 0;
    const chunks: Buffer[] = [];
    const spec = {
      layers: layers.map((layer) => ({
        name: layer.name,
        weights: layer.weights.map((weight) => {
          chunks.push(Buffer.from(weight.values.buffer, weight.values.byteOffset, weight.values.byteLength));
          const entry = { name: weight.name, shape: weight.shape, offset };
          offset += weight.values.length;
          return entry;
        }),
      })),
    };
    fs.writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(spec));
    fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.concat(chunks));
    execFileSync(process.execPath, [path.join(__dirname, 'write-keras-h5.mjs'), path.join(dir, 'spec.json'), path.join(dir, 'weights.bin'), out], { stdio: 'pipe' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
