import * as fs from 'node:fs';
import { preprocessImage } from '../runtime/images/preprocess';
import { readModelFiles } from '../runtime/model/artifacts';
import { initTf, type BackendName, type BackendPreference } from '../runtime/model/backend';
import { writeNormalized } from '../runtime/model/feature-model';
import { createTfjsFeatureModel } from '../runtime/model/tfjs-model';
import type { ModelPreset } from '../runtime/model/presets';
import { DEFAULTS } from '../runtime/pipeline/config';

export interface ModelMeasure {
  readonly imgPerS: number;
  readonly images: number;
  readonly backend: BackendName;
}

/**
 * Bare `predict` throughput: the pipeline's model, backend and batch size, on the same images preprocessed
 * beforehand, so that only the model is timed (after one untimed warm-up batch).
 */
export async function measureModel(files: readonly string[], preset: ModelPreset, backend: BackendPreference, batchSize: number): Promise<ModelMeasure> {
  const runtime = await initTf(backend);
  const model = await createTfjsFeatureModel(runtime, preset, await readModelFiles(preset.source), batchSize);
  try {
    const size = preset.inputSize;
    const perImage = size * size * 3;
    const batches: Float32Array[] = [];
    for (let start = 0; start + batchSize <= files.length; start += batchSize) {
      const batch = new Float32Array(batchSize * perImage);
      for (let i = 0; i < batchSize; i++) {
        const image = await preprocessImage(await fs.promises.readFile(files[start + i]!), { size, maxPixels: DEFAULTS.maxPixels });
        writeNormalized(batch, i * perImage, image.pixels, preset.normalization);
      }
      batches.push(batch);
    }
    if (batches.length === 0) throw new Error(`measureModel needs at least ${batchSize} images`);
    await model.predict(batches[0]!, batchSize);
    let seconds = 0;
    for (const batch of batches) {
      const t0 = performance.now();
      await model.predict(batch, batchSize);
      seconds += (performance.now() - t0) / 1000;
    }
    const images = batches.length * batchSize;
    return { imgPerS: images / seconds, images, backend: runtime.backend };
  } finally {
    model.dispose();
  }
}
