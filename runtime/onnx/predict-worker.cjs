'use strict';
// The ONNX Runtime session of the onnx engine, in a worker thread: onnxruntime-node's `run` computes on the calling
// thread, so in the main thread it would stop S3 reads and image decoding for the length of every batch. Here the
// main thread keeps preparing the next batch while this one runs. Plain CommonJS on purpose: the same file runs
// from the repository and next to the esbuild bundle (lib/runtime-bundle.ts copies it there).
//
// Small images (both sides at most the model's) may come un-enlarged: `enlarge` names their size's enlargement
// graph (images/enlarge-graph.ts, sent with the first batch of that size), run here right before the CNN on one
// intra-op thread, so that its work is all on this thread and its CPU time can be read from /proc: the pipeline
// counts it as preprocessing, not as the model.
//
// Messages in:  { type: 'load', model: Uint8Array, options }, { type: 'release' },
//               { type: 'run', id, pixels: ArrayBuffer, dims, enlarge?: { key, dims, graph?, options? }, drop?: key }
// Messages out: { type: 'loaded' } | { type: 'result', id, features: ArrayBuffer, enlarge?: { cpuS, wallS } } |
//               { type: 'released' } | { type: 'error', id?, message }
const fs = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');

const ort = require(workerData.ortPath);
let session;
/** Enlargement sessions by input size; the main thread bounds how many (it says which to drop). */
const enlargers = new Map();

// One message at a time: an enlargement session must exist before the batch that needs it runs, and creating it
// awaits.
let queue = Promise.resolve();
parentPort.on('message', (message) => {
  queue = queue.then(() => handle(message));
});

async function handle(message) {
  try {
    if (message.type === 'load') {
      session = await ort.InferenceSession.create(message.model, message.options);
      parentPort.postMessage({ type: 'loaded' });
    } else if (message.type === 'run') {
      if (message.drop !== undefined) {
        await enlargers.get(message.drop)?.release();
        enlargers.delete(message.drop);
      }
      const count = message.dims.reduce((a, b) => a * b, 1);
      let pixels;
      let enlarge;
      if (message.enlarge) {
        ({ pixels, enlarge } = await enlargeBatch(message));
      } else {
        pixels = new Uint8Array(message.pixels, 0, count);
      }
      const outputs = await session.run({ [workerData.input]: new ort.Tensor('uint8', pixels.subarray(0, count), message.dims) });
      // A copy the worker owns (the tensor's memory may belong to the native side), handed over without another.
      const features = new Float32Array(outputs[workerData.output].data);
      parentPort.postMessage({ type: 'result', id: message.id, features: features.buffer, enlarge }, [features.buffer]);
    } else if (message.type === 'release') {
      await session?.release();
      for (const enlarger of enlargers.values()) await enlarger.release();
      enlargers.clear();
      parentPort.postMessage({ type: 'released' });
    }
  } catch (error) {
    parentPort.postMessage({ type: 'error', id: message.id, message: error instanceof Error ? error.message : String(error) });
  }
}

async function enlargeBatch(message) {
  const { key, dims, graph, options } = message.enlarge;
  let enlarger = enlargers.get(key);
  if (!enlarger) {
    if (!graph) throw new Error(`no enlargement graph for ${key}`);
    enlarger = await ort.InferenceSession.create(graph, options);
    enlargers.set(key, enlarger);
  }
  const input = new ort.Tensor('uint8', new Uint8Array(message.pixels, 0, dims.reduce((a, b) => a * b, 1)), dims);
  const cpu0 = threadCpuSeconds();
  const wall0 = performance.now();
  const outputs = await enlarger.run({ [enlarger.inputNames[0]]: input });
  const wallS = (performance.now() - wall0) / 1000;
  const cpu1 = threadCpuSeconds();
  return { pixels: outputs[enlarger.outputNames[0]].data, enlarge: { cpuS: cpu0 === undefined || cpu1 === undefined ? wallS : cpu1 - cpu0, wallS } };
}

/** This thread's CPU time (Linux: the scheduler's nanoseconds); undefined where /proc does not say. */
function threadCpuSeconds() {
  try {
    const ns = Number(fs.readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]);
    return Number.isFinite(ns) ? ns / 1e9 : undefined;
  } catch {
    return undefined;
  }
}
