'use strict';
// The ONNX Runtime session of the onnx engine, in a worker thread: onnxruntime-node's `run` computes on the calling
// thread, so in the main thread it would stop S3 reads and image decoding for the length of every batch. Here the
// main thread keeps preparing the next batch while this one runs. Plain CommonJS on purpose: the same file runs
// from the repository and next to the esbuild bundle (lib/runtime-bundle.ts copies it there).
//
// Messages in:  { type: 'load', model: Uint8Array, options }, { type: 'run', id, pixels: ArrayBuffer, dims },
//               { type: 'release' }
// Messages out: { type: 'loaded' } | { type: 'result', id, features: ArrayBuffer } | { type: 'released' } |
//               { type: 'error', id?, message }
const { parentPort, workerData } = require('node:worker_threads');

const ort = require(workerData.ortPath);
let session;

parentPort.on('message', async (message) => {
  try {
    if (message.type === 'load') {
      session = await ort.InferenceSession.create(message.model, message.options);
      parentPort.postMessage({ type: 'loaded' });
    } else if (message.type === 'run') {
      const input = new ort.Tensor('uint8', new Uint8Array(message.pixels, 0, message.dims.reduce((a, b) => a * b, 1)), message.dims);
      const outputs = await session.run({ [workerData.input]: input });
      // A copy the worker owns (the tensor's memory may belong to the native side), handed over without another.
      const features = new Float32Array(outputs[workerData.output].data);
      parentPort.postMessage({ type: 'result', id: message.id, features: features.buffer }, [features.buffer]);
    } else if (message.type === 'release') {
      await session?.release();
      parentPort.postMessage({ type: 'released' });
    }
  } catch (error) {
    parentPort.postMessage({ type: 'error', id: message.id, message: error instanceof Error ? error.message : String(error) });
  }
});
