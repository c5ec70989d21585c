// Jest's node environment gives each test file its own realm, sharing only ArrayBuffer and Uint8Array with Node
// (for Buffer). onnxruntime-node builds its output tensors from typed arrays of Node's realm and checks them with
// `instanceof Float32Array` in the test's realm, which fails. Sharing the other typed-array constructors as well
// makes the test realm see what a real process sees.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'Int8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];

class NodeEnvironmentWithTypedArrays extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = NodeEnvironmentWithTypedArrays;
