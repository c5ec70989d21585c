import { createHash } from 'node:crypto';
import type { Tf } from '../backend';
import type { ModelFiles } from '../artifacts';
import type { Normalization } from '../presets';
import { compileGraphModel } from './from-graph';
import { compileLayersModel } from './from-layers';
import { Network } from './network';
import { decodeWeights } from './weights';

/**
 * Bumped whenever the compiler's output for the same weights may change: it is part of the cache key, so a
 * new compiler never reuses a graph compiled by an old one.
 */
export const COMPILER_VERSION = 1;

export interface CompileOptions {
  readonly inputSize: number;
  /** How pixel bytes become model input; the graph takes uint8 and applies it. */
  readonly normalization: Normalization;
  /** Layer (layers model) or node (graph model) whose output is the feature vector; the model's output if absent. */
  readonly featureLayer?: string;
}

export interface CompiledGraph {
  /** The serialised ONNX model (opset 13): input `images` [batch, size, size, 3] NHWC uint8, output `features` [batch, dim]. */
  readonly bytes: Uint8Array;
  readonly featureDim: number;
  readonly format: 'layers-model' | 'graph-model';
  /** SHA-256 of `bytes`: the graph's identity in the manifest, checked again when a run resumes. */
  readonly sha256: string;
  readonly nodes: number;
}

/**
 * Compiles a tfjs model (its model.json and weights, the source of truth) into an ONNX graph that computes the
 * same features. Throws UnsupportedModelError, naming the layer class or op, for anything it cannot translate.
 */
export function compileToOnnx(tf: Tf, files: ModelFiles, options: CompileOptions): CompiledGraph {
  const weights = decodeWeights(tf, files);
  const network = new Network(options.inputSize, options.normalization);
  const format = isGraphModel(files) ? 'graph-model' : 'layers-model';
  const output =
    format === 'graph-model'
      ? compileGraphModel({ topology: files.modelJson.modelTopology, signature: signatureOf(files), weights, inputSize: options.inputSize, featureNode: options.featureLayer }, network)
      : compileLayersModel({ topology: files.modelJson.modelTopology, weights, inputSize: options.inputSize, featureLayer: options.featureLayer }, network);
  const { bytes, featureDim } = network.finish(output, {
    'orchard.compiler_version': String(COMPILER_VERSION),
    'orchard.weights_sha256': files.weightsSha256,
    'orchard.source': files.loadedFrom,
    'orchard.feature_layer': options.featureLayer ?? '',
    'orchard.input_size': String(options.inputSize),
    'orchard.normalization': `${options.normalization.scale},${options.normalization.offset}`,
  });
  return { bytes, featureDim, format, sha256: createHash('sha256').update(bytes).digest('hex'), nodes: network.graph.nodeCount };
}

export function isGraphModel(files: ModelFiles): boolean {
  const topology = files.modelJson.modelTopology as { node?: unknown } | undefined;
  return files.modelJson.format === 'graph-model' || (typeof topology === 'object' && topology !== null && Array.isArray(topology.node));
}

function signatureOf(files: ModelFiles): unknown {
  const json = files.modelJson as { signature?: unknown; userDefinedMetadata?: { signature?: unknown } };
  return json.signature ?? json.userDefinedMetadata?.signature;
}
