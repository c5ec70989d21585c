import { createHash } from 'node:crypto';
import { describeError } from '../../errors';
import { getJsonIfExists, putJson, type Storage } from '../../storage';
import type { Tf } from '../backend';
import type { ModelFiles } from '../artifacts';
import { COMPILER_VERSION, compileToOnnx, type CompiledGraph, type CompileOptions } from './compile';

/** What sits next to a cached graph; written after the graph, so its presence means the graph is whole. */
interface CacheEntry {
  readonly sha256: string;
  readonly featureDim: number;
  readonly format: CompiledGraph['format'];
  readonly nodes: number;
  readonly compilerVersion: number;
  readonly weightsSha256: string;
}

export interface GraphResult {
  readonly graph: CompiledGraph;
  /** True when the graph was read from the cache rather than compiled now. */
  readonly cached: boolean;
  readonly seconds: number;
}

/**
 * Keys of a compiled graph in the model cache, beside the web models' weights:
 * `onnx/<weights sha256>/v<compiler>-<input size>-<feature layer>-<tag>.onnx` and its `.json` entry. The weights' hash
 * comes first, so a changed model never meets an old graph; the rest names what else shapes the graph.
 */
export function graphCacheKeys(files: ModelFiles, options: CompileOptions): { graph: string; entry: string } {
  const layer = options.featureLayer ?? 'output';
  const slug = layer.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
  // The layer's own spelling and the normalisation, which the slug cannot show, tell graphs apart.
  const tag = createHash('sha256').update(JSON.stringify([layer, options.normalization.scale, options.normalization.offset])).digest('hex').slice(0, 8);
  const base = `onnx/${files.weightsSha256}/v${COMPILER_VERSION}-${options.inputSize}-${slug}-${tag}`;
  return { graph: `${base}.onnx`, entry: `${base}.json` };
}

/**
 * The ONNX graph for a model, compiled at most once per cache: read from `cache` when an entry exists and the
 * graph's bytes still hash to what the entry says (a damaged copy is compiled again and replaced), compiled and
 * stored otherwise. Without a cache it is compiled in memory (about 0.1 s for MobileNetV2).
 */
export async function loadOrCompileGraph(
  tf: () => Promise<Tf>,
  files: ModelFiles,
  options: CompileOptions,
  cache?: Storage,
  warn: (message: string) => void = () => undefined,
): Promise<GraphResult> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const keys = graphCacheKeys(files, options);
  if (cache) {
    // A cache that cannot be read is no reason to stop: the graph is compiled again (a write error is reported).
    const entry = await getJsonIfExists<CacheEntry>(cache, keys.entry).catch(() => undefined);
    if (entry && entry.compilerVersion === COMPILER_VERSION && entry.weightsSha256 === files.weightsSha256) {
      const bytes = await cache.get(keys.graph).catch(() => undefined);
      if (bytes && sha256(bytes) === entry.sha256) {
        const graph: CompiledGraph = { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), ...pick(entry) };
        return { graph, cached: true, seconds: seconds() };
      }
    }
  }
  const graph = compileToOnnx(await tf(), files, options);
  if (cache) {
    try {
      await cache.put(keys.graph, Buffer.from(graph.bytes.buffer, graph.bytes.byteOffset, graph.bytes.byteLength));
      const entry: CacheEntry = { ...pick(graph), compilerVersion: COMPILER_VERSION, weightsSha256: files.weightsSha256 };
      await putJson(cache, keys.entry, entry);
    } catch (error) {
      warn(`model cache: could not store the compiled graph at ${cache.uri(keys.graph)} (${describeError(error)}); it is compiled again next time`);
    }
  }
  return { graph, cached: false, seconds: seconds() };
}

function pick(source: Omit<CompiledGraph, 'bytes'>): Omit<CompiledGraph, 'bytes'> {
  return { sha256: source.sha256, featureDim: source.featureDim, format: source.format, nodes: source.nodes };
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
