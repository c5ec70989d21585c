/**
 * The int8 graph of the real MobileNetV2 (the offline preset's weights, compiled by orchard's compiler), calibrated
 * on generated fruit photos: both weight ranges run by ONNX Runtime's integer kernels must agree with their own
 * float simulation (the same QDQ graph, unoptimised: every QuantizeLinear/DequantizeLinear computed literally),
 * ORT must have fused them into integer ops, and the features must stay close to the float graph's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { tempDir } from './helpers/s3';
import { generateSampleImages } from '../runtime/images/generate';
import { preprocessImage } from '../runtime/images/preprocess';
import { readModelFiles } from '../runtime/model/artifacts';
import { tfForWeights } from '../runtime/model/backend';
import { buildInt8Graph, type Int8Graph } from '../runtime/model/int8';
import { PRESETS, SIGNED_RANGE } from '../runtime/model/presets';
import { loadOrCompileGraph } from '../runtime/model/to-onnx/cache';
import type { CompiledGraph } from '../runtime/model/to-onnx/compile';
import { activationParams } from '../runtime/model/to-onnx/quantize';
import { detectInt8Support } from '../runtime/onnx/cpu';
import { loadOrt, sessionOptions } from '../runtime/onnx/runtime';
import { calibrationPositions } from '../runtime/pipeline/int8-graph';

const preset = PRESETS.mobilenet_v2_offline!;
const SIZE = preset.inputSize;
const ort = loadOrt();
let fp32: CompiledGraph;
let images: Uint8Array[];
let batch: Uint8Array;
const graphs = new Map<7 | 8, Int8Graph>();

beforeAll(async () => {
  fp32 = (await loadOrCompileGraph(tfForWeights, await readModelFiles(preset.source), preset)).graph;
  const dir = tempDir();
  const keys = await generateSampleImages(dir, { perClass: 2, seed: 18 });
  images = await Promise.all(keys.map(async (key) => (await preprocessImage(fs.readFileSync(path.join(dir, key)), { size: SIZE, maxPixels: 1e8 })).pixels));
  batch = new Uint8Array(images.length * SIZE * SIZE * 3);
  images.forEach((image, i) => batch.set(image, i * SIZE * SIZE * 3));
  for (const weightBits of [7, 8] as const) {
    graphs.set(weightBits, await buildInt8Graph(ort, fp32, images.slice(0, 8), { inputSize: SIZE, threads: 2, support: { weightBits, reason: 'test' } }));
  }
}, 120_000);

async function features(bytes: Uint8Array, options: import('onnxruntime-node').InferenceSession.SessionOptions): Promise<Float32Array[]> {
  const session = await ort.ort.InferenceSession.create(bytes, options);
  try {
    const out = await session.run({ images: new ort.ort.Tensor('uint8', batch, [images.length, SIZE, SIZE, 3]) });
    const data = out.features!.data as Float32Array;
    const dim = data.length / images.length;
    return images.map((_, i) => data.slice(i * dim, (i + 1) * dim));
  } finally {
    await session.release();
  }
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(aa * bb);
}

function initializer(bytes: Uint8Array, name: string): Int8Array {
  const tensor = onnx.ModelProto.decode(bytes).graph!.initializer!.find((t) => t.name === name)!;
  return new Int8Array(Uint8Array.from(tensor.rawData!).buffer);
}

describe.each([7, 8] as const)('the %i-bit graph', (weightBits) => {
  test('computed by the integer kernels, agrees with its float simulation', async () => {
    const graph = graphs.get(weightBits)!.graph.bytes;
    const optimizedModelFilePath = path.join(tempDir(), 'optimized.onnx');
    // 8-bit weights on an x86 CPU without VNNI saturate in the fast kernels: ONNX Runtime's exact (slower) path.
    const exact = detectInt8Support().weightBits === 7 ? { 'session.x64quantprecision': '1' } : {};
    const base = sessionOptions({ threads: 2 });
    const fused = await features(graph, { ...base, optimizedModelFilePath, extra: { ...base.extra, session: { ...(base.extra!.session as object), ...exact } } });
    const simulated = await features(graph, { graphOptimizationLevel: 'disabled', intraOpNumThreads: 2 });
    const ops = onnx.ModelProto.decode(fs.readFileSync(optimizedModelFilePath)).graph!.node!.map((node) => node.opType);
    expect(ops.filter((op) => op === 'QLinearConv').length).toBeGreaterThanOrEqual(50);
    expect(ops).not.toContain('Conv');
    for (let i = 0; i < images.length; i++) expect(cosine(fused[i]!, simulated[i]!)).toBeGreaterThan(0.995);
  });

  test('stays close to the float graph', async () => {
    const float = await features(fp32.bytes, sessionOptions({ threads: 2 }));
    const quantized = await features(graphs.get(weightBits)!.graph.bytes, sessionOptions({ threads: 2 }));
    const cosines = float.map((f, i) => cosine(f, quantized[i]!));
    expect(Math.min(...cosines)).toBeGreaterThan(0.97);
    expect(cosines.reduce((a, b) => a + b) / cosines.length).toBeGreaterThan(0.99);
  });
});

test('7-bit weights for full and 1x1 convolutions, the full range for depthwise ones; the manifest info says which', () => {
  const largest = (bits: 7 | 8, name: string) => Math.max(...initializer(graphs.get(bits)!.graph.bytes, name).map(Math.abs));
  // MobileNetV2's first full conv, a depthwise one, a 1x1 projection.
  expect(largest(7, 'Conv1/weight_q')).toBe(63);
  expect(largest(8, 'Conv1/weight_q')).toBe(127);
  expect(largest(7, 'block_1_depthwise/weight_q')).toBe(127);
  expect(largest(7, 'block_1_project/weight_q')).toBe(63);
  expect(graphs.get(7)!.info).toEqual({ weightBits: 7, cpu: 'test', fp32GraphSha256: fp32.sha256, calibrationImages: 8 });
  expect(graphs.get(8)!.graph.sha256).not.toBe(graphs.get(7)!.graph.sha256);
});

test('bias correction: without the calibrated channel means the features drift further from fp32', async () => {
  // The same graph built with every input mean taken as 0 (no correction) against the corrected one.
  const quantize = await import('../runtime/model/to-onnx/quantize');
  const calibrateModule = await import('../runtime/model/to-onnx/calibrate');
  const targets = quantize.quantizationTargets(fp32.bytes);
  const stats = await calibrateModule.calibrate(ort, fp32.bytes, targets, images.slice(0, 8), SIZE, 2);
  const zeroMeans = new Map([...stats.channelMeans].map(([name, means]) => [name, new Float64Array(means.length)]));
  const uncorrected = quantize.quantizeGraph(fp32.bytes, { ranges: stats.ranges, channelMeans: zeroMeans }, { weightBits: 7 });
  const float = await features(fp32.bytes, sessionOptions({ threads: 2 }));
  const mean = async (bytes: Uint8Array) => {
    const out = await features(bytes, sessionOptions({ threads: 2 }));
    return out.reduce((sum, f, i) => sum + cosine(f, float[i]!), 0) / out.length;
  };
  expect(await mean(graphs.get(7)!.graph.bytes)).toBeGreaterThan(await mean(uncorrected));
});

test('a [-1, 1] normalisation (no whole zero point) is quantized as a calibrated activation, and still agrees', async () => {
  const signed = (await loadOrCompileGraph(tfForWeights, await readModelFiles(preset.source), { ...preset, normalization: SIGNED_RANGE })).graph;
  const int8 = await buildInt8Graph(ort, signed, images.slice(0, 8), { inputSize: SIZE, threads: 2, support: { weightBits: 8, reason: 'test' } });
  const nodes = onnx.ModelProto.decode(int8.graph.bytes).graph!.node!;
  const normalised = nodes.find((node) => node.opType === 'Add' && node.input!.some((input) => input.startsWith('offset')))!;
  expect(nodes.find((node) => node.input![0] === normalised.output![0])?.opType).toBe('QuantizeLinear');
  const float = await features(signed.bytes, sessionOptions({ threads: 2 }));
  const quantized = await features(int8.graph.bytes, sessionOptions({ threads: 2 }));
  const simulated = await features(int8.graph.bytes, { graphOptimizationLevel: 'disabled', intraOpNumThreads: 2 });
  for (let i = 0; i < images.length; i++) {
    expect(cosine(quantized[i]!, simulated[i]!)).toBeGreaterThan(0.995);
    expect(cosine(quantized[i]!, float[i]!)).toBeGreaterThan(0.97);
  }
}, 60_000);

describe('pure parts', () => {
  test('the CPU features choose the weight range', () => {
    const x86 = (flags: string) => `processor\t: 0\nflags\t\t: fpu sse2 avx2 ${flags}\n`;
    expect(detectInt8Support('x64', x86('')).weightBits).toBe(7);
    expect(detectInt8Support('x64', x86('avx512f avx512_vnni'))).toEqual({ weightBits: 8, reason: 'avx512_vnni' });
    expect(detectInt8Support('x64', x86('avx_vnni')).weightBits).toBe(8);
    expect(detectInt8Support('x64', x86('amx_tile amx_int8')).weightBits).toBe(8);
    expect(detectInt8Support('x64', null).weightBits).toBe(7);
    expect(detectInt8Support('arm64', null).weightBits).toBe(8);
    expect(detectInt8Support('arm64', 'Features\t: fp asimd asimddp sha3\n')).toEqual({ weightBits: 8, reason: 'asimddp' });
    expect(detectInt8Support('arm64', 'Features\t: fp asimd\n').weightBits).toBe(7);
  });

  test('activation ranges always hold 0 exactly', () => {
    expect(activationParams({ min: 0, max: 6 })).toEqual({ scale: Math.fround(6 / 255), zeroPoint: 0 });
    const mixed = activationParams({ min: -1, max: 3 });
    expect(mixed.zeroPoint).toBe(Math.round(1 / mixed.scale));
    expect(activationParams({ min: 2, max: 4 }).zeroPoint).toBe(0);
  });

  test('calibration positions are spread evenly over the listing', () => {
    expect(calibrationPositions(10, 4)).toEqual([1, 3, 6, 8]);
    expect(calibrationPositions(3, 100)).toEqual([0, 1, 2]);
    expect(new Set(calibrationPositions(100_000)).size).toBe(100);
  });
});
