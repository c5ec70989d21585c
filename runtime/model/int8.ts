import { createHash } from 'node:crypto';
import { onnx } from 'onnx-proto';
import type { Int8Support } from '../onnx/cpu';
import type { OrtRuntime } from '../onnx/runtime';
import { calibrate } from './to-onnx/calibrate';
import type { CompiledGraph } from './to-onnx/compile';
import { quantizationTargets, quantizeGraph } from './to-onnx/quantize';

export type Precision = 'fp32' | 'int8';
export const PRECISIONS: readonly Precision[] = ['fp32', 'int8'];

/** What the manifest records about an int8 graph, beside the graph's own SHA-256. */
export interface Int8Info {
  /** 7 or 8: the range of the full and 1×1 convolutions' weights (depthwise ones always take 8). */
  readonly weightBits: 7 | 8;
  /** The CPU features that chose the range, on the machine that built the graph. */
  readonly cpu: string;
  /** The float graph it was quantized from. */
  readonly fp32GraphSha256: string;
  readonly calibrationImages: number;
}

export interface Int8Graph {
  readonly graph: CompiledGraph;
  readonly info: Int8Info;
}

/**
 * The int8 QDQ graph of a compiled float graph: calibrated on `images` (inputSize² × 3 RGB bytes each, as
 * preprocessing gives them), with the weight range the CPU takes.
 */
export async function buildInt8Graph(
  runtime: OrtRuntime,
  fp32: CompiledGraph,
  images: readonly Uint8Array[],
  options: { readonly inputSize: number; readonly threads: number; readonly support: Int8Support },
): Promise<Int8Graph> {
  const targets = quantizationTargets(fp32.bytes);
  const stats = await calibrate(runtime, fp32.bytes, targets, images, options.inputSize, options.threads);
  const bytes = quantizeGraph(fp32.bytes, stats, { weightBits: options.support.weightBits });
  return {
    graph: { ...fp32, bytes, sha256: createHash('sha256').update(bytes).digest('hex'), nodes: countNodes(bytes) },
    info: { weightBits: options.support.weightBits, cpu: options.support.reason, fp32GraphSha256: fp32.sha256, calibrationImages: images.length },
  };
}

function countNodes(bytes: Uint8Array): number {
  return onnx.ModelProto.decode(bytes).graph?.node?.length ?? 0;
}
