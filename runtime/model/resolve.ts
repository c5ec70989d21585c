import { ExitCode, OrchardError } from '../errors';
import type { ModelChoice } from './choice';
import { PRESETS, UNIT_RANGE, type ModelPreset } from './presets';

/**
 * Turns `--model` (a preset name, or a tfjs model by URL, S3 URI or path) plus overrides into a preset.
 * A tfjs model given by location defaults to a 224-pixel input in [0, 1] and its own output as features; a Keras
 * weights file (`.h5`) to Keras's MobileNetV2 input, [-1, 1], and the global average pooling of `out_relu`.
 */
export function resolveModel(choice: ModelChoice): ModelPreset {
  const preset = PRESETS[choice.ref];
  const looksLikeLocation = /^(https?|s3|file):\/\//i.test(choice.ref) || /[/\\.]/.test(choice.ref);
  if (!preset && !looksLikeLocation) {
    throw new OrchardError(
      `Unknown model '${choice.ref}': use one of ${Object.keys(PRESETS).join(', ')}, a URL, s3:// URI or folder of a tfjs model, or a Keras MobileNetV2 weights file (.h5)`,
      'ERR_INVALID_PARAMETER',
      ExitCode.Usage,
    );
  }
  const h5 = !preset && /\.h5$/i.test(choice.ref.replace(/[?#].*$/, ''));
  const base: ModelPreset =
    preset ??
    (h5
      ? { ...PRESETS.mobilenet_v2!, name: choice.ref, description: `Keras MobileNetV2 weights at ${choice.ref}`, source: { kind: 'keras-h5', uri: choice.ref } }
      : { name: choice.ref, description: `tfjs model at ${choice.ref}`, source: { kind: 'uri', uri: choice.ref }, inputSize: 224, normalization: UNIT_RANGE });
  const overridden = choice.featureLayer !== undefined || choice.inputSize !== undefined;
  return {
    ...base,
    featureLayer: choice.featureLayer ?? base.featureLayer,
    inputSize: choice.inputSize ?? base.inputSize,
    normalization: choice.normalization ?? base.normalization,
    // A preset's expected feature length no longer holds once its layer or input size is changed.
    featureDim: overridden ? undefined : base.featureDim,
  };
}
