import * as fs from 'node:fs';
import { preprocessImage } from '../runtime/images/preprocess';
import { readModelFiles } from '../runtime/model/artifacts';
import type { BackendPreference } from '../runtime/model/backend';
import { loadEngine } from '../runtime/model/engine';
import { batchesInFlight } from '../runtime/onnx/predict-pool';
import type { EngineInfo, EnginePreference } from '../runtime/model/feature-model';
import type { Int8Graph } from '../runtime/model/int8';
import type { ModelPreset } from '../runtime/model/presets';
import { DEFAULTS } from '../runtime/pipeline/config';

export interface ModelMeasure {
  readonly imgPerS: number;
  /** CPU of the whole process (the engine's threads included) per image while predicting, in ms. */
  readonly cpuMsPerImage: number;
  readonly images: number;
  readonly engine: EngineInfo;
}

export interface ModelBenchOptions {
  readonly engine: EnginePreference;
  readonly backend: BackendPreference;
  readonly threads: number;
  readonly batchSize: number;
  /** The int8 graph to run instead of the float one (bench/int8.ts makes it as plan does). */
  readonly int8?: Int8Graph;
  /** ONNX Runtime sessions side by side sharing the threads, as a run has them (default 1: one session, every thread). */
  readonly sessions?: number;
}

/**
 * Bare `predict` throughput: the pipeline's model, engine, threads and batch size, on the same images
 * preprocessed beforehand, so that only the model is timed (after one untimed warm-up batch).
 */
export async function measureModel(files: readonly string[], preset: ModelPreset, options: ModelBenchOptions): Promise<ModelMeasure> {
  const { model } = await loadEngine(preset, await readModelFiles(preset.source), { ...options, warn: () => undefined });
  try {
    const { batchSize } = options;
    const size = preset.inputSize;
    const perImage = size * size * 3;
    const batches: Uint8Array[] = [];
    for (let start = 0; start + batchSize <= files.length; start += batchSize) {
      const batch = new Uint8Array(batchSize * perImage);
      for (let i = 0; i < batchSize; i++) {
        const image = await preprocessImage(await fs.promises.readFile(files[start + i]!), { size, maxPixels: DEFAULTS.maxPixels });
        batch.set(image.pixels, i * perImage);
      }
      batches.push(batch);
    }
    if (batches.length === 0) throw new Error(`measureModel needs at least ${batchSize} images`);
    await model.predict(batches[0]!, batchSize);
    let seconds = 0;
    const cpuBefore = process.cpuUsage();
    const parallel = model.parallelBatches ?? 1;
    if (parallel === 1) {
      for (const batch of batches) {
        const t0 = performance.now();
        await model.predict(batch, batchSize);
        seconds += (performance.now() - t0) / 1000;
      }
    } else {
      // As extract keeps them in flight.
      const t0 = performance.now();
      const inFlight: Promise<unknown>[] = [];
      for (const batch of batches) {
        inFlight.push(model.predict(batch, batchSize));
        while (inFlight.length > batchesInFlight(parallel)) await inFlight.shift();
      }
      await Promise.all(inFlight);
      seconds = (performance.now() - t0) / 1000;
    }
    const cpu = process.cpuUsage(cpuBefore);
    const images = batches.length * batchSize;
    return { imgPerS: images / seconds, cpuMsPerImage: (cpu.user + cpu.system) / 1000 / images, images, engine: model.engine };
  } finally {
    model.dispose();
  }
}
