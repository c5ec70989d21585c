// Writes a weights file in Keras's HDF5 layout (what `model.save_weights('x.h5')` and Keras Applications' downloads
// hold): root attribute `layer_names`, one group per layer with attribute `weight_names`, each weight a float32
// dataset at `<layer>/<weight name>`. h5wasm is published as an ES module only, so test/helpers/keras-h5.ts runs this
// file in a child process.
//
// Usage: node write-keras-h5.mjs <spec.json> <weights.bin> <out.h5>
//   spec.json: { "layers": [{ "name": "Conv1", "weights": [{ "name": "Conv1/kernel:0", "shape": [3,3,3,32], "offset": 0 }] }] }
//   weights.bin: the float32 values the offsets (in floats) point into
import * as fs from 'node:fs';
import h5wasm from 'h5wasm/node';

const [specFile, binFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node write-keras-h5.mjs <spec.json> <weights.bin> <out.h5>');
  process.exit(2);
}
const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
const bin = fs.readFileSync(binFile);
const values = new Float32Array(bin.buffer, bin.byteOffset, bin.byteLength / 4);
await h5wasm.ready;
const file = new h5wasm.File(outFile, 'w');
file.create_attribute('layer_names', spec.layers.map((layer) => layer.name));
file.create_attribute('backend', 'tensorflow');
file.create_attribute('keras_version', '2.2.4');
for (const layer of spec.layers) {
  const group = file.create_group(layer.name);
  group.create_attribute('weight_names', layer.weights.length > 0 ? layer.weights.map((weight) => weight.name) : []);
  for (const weight of layer.weights) {
    const [parent, name] = [weight.name.slice(0, weight.name.lastIndexOf('/')), weight.name.slice(weight.name.lastIndexOf('/') + 1)];
    const holder = group.keys().includes(parent) ? group.get(parent) : group.create_group(parent);
    const count = weight.shape.reduce((a, b) => a * b, 1);
    holder.create_dataset({ name, data: values.slice(weight.offset, weight.offset + count), shape: weight.shape, dtype: '<f4' });
  }
}
file.close();
