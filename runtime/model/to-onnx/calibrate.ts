import { onnx } from 'onnx-proto';
import { createSession, type OrtRuntime } from '../../onnx/runtime';
import { INPUT_NAME } from './network';
import type { ActivationRange, CalibrationStats, QuantizationTargets } from './quantize';

/** Images per calibration batch: every observed activation of the batch is held at once (about 20 MB an image). */
const CALIBRATION_BATCH = 4;

/**
 * Runs the float graph on the calibration images with the targets' tensors as extra outputs and measures each:
 * the minimum and maximum over every image, and the mean of each channel (axis 1) of the conv inputs.
 * `images` are inputSize² × 3 RGB bytes each, as preprocessing gives them.
 */
export async function calibrate(
  runtime: OrtRuntime,
  fp32: Uint8Array,
  targets: QuantizationTargets,
  images: readonly Uint8Array[],
  inputSize: number,
  threads: number,
): Promise<CalibrationStats> {
  if (images.length === 0) throw new Error('calibration needs at least one image');
  const observed = [...new Set([...targets.ranges, ...targets.channelMeans])];
  const session = await createSession(runtime, withOutputs(fp32, observed), { threads });
  const ranges = new Map<string, { min: number; max: number }>();
  const sums = new Map<string, Float64Array>();
  const counts = new Map<string, number>();
  const wantsMeans = new Set(targets.channelMeans);
  const perImage = inputSize * inputSize * 3;
  try {
    for (let start = 0; start < images.length; start += CALIBRATION_BATCH) {
      const batch = images.slice(start, start + CALIBRATION_BATCH);
      const pixels = new Uint8Array(batch.length * perImage);
      batch.forEach((image, i) => pixels.set(image.subarray(0, perImage), i * perImage));
      const feeds = { [INPUT_NAME]: new runtime.ort.Tensor('uint8', pixels, [batch.length, inputSize, inputSize, 3]) };
      const results = await session.run(feeds, observed);
      for (const name of observed) {
        const tensor = results[name]!;
        const data = tensor.data as Float32Array;
        let min = Infinity;
        let max = -Infinity;
        for (let i = 0; i < data.length; i++) {
          const v = data[i]!;
          if (v < min) min = v;
          if (v > max) max = v;
        }
        const range = ranges.get(name);
        ranges.set(name, range ? { min: Math.min(range.min, min), max: Math.max(range.max, max) } : { min, max });
        if (wantsMeans.has(name)) {
          const [n, channels] = tensor.dims as number[];
          const plane = data.length / (n! * channels!);
          const sum = sums.get(name) ?? new Float64Array(channels!);
          for (let b = 0; b < n!; b++) {
            for (let c = 0; c < channels!; c++) {
              let s = 0;
              const base = (b * channels! + c) * plane;
              for (let i = 0; i < plane; i++) s += data[base + i]!;
              sum[c] += s;
            }
          }
          sums.set(name, sum);
          counts.set(name, (counts.get(name) ?? 0) + n! * plane);
        }
      }
    }
  } finally {
    await session.release();
  }
  const channelMeans = new Map([...sums].map(([name, sum]) => [name, sum.map((s) => s / counts.get(name)!)] as const));
  return { ranges: ranges as Map<string, ActivationRange>, channelMeans };
}

/** The graph with `names` as further float outputs (shapes left to ONNX Runtime's inference). */
function withOutputs(bytes: Uint8Array, names: readonly string[]): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const existing = new Set(model.graph!.output!.map((output) => output.name));
  for (const name of names) {
    if (!existing.has(name)) model.graph!.output!.push({ name, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
  }
  return onnx.ModelProto.encode(model).finish();
}
