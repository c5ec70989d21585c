import type { Normalization } from './presets';

/** Which model to run: a preset name, or a tfjs model by URL / S3 URI / path, with optional overrides. */
export interface ModelChoice {
  readonly ref: string;
  readonly featureLayer?: string;
  readonly inputSize?: number;
  readonly normalization?: Normalization;
}
