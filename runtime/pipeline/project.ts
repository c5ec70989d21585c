import { loadOrt } from '../onnx/runtime';
import { ortProjector } from '../pca/ort-project';
import { projectInJs, type Projector } from '../pca/project';
import type { PcaModel } from '../pca/fit';
import { parquetBytes } from '../output/table-writers';
import type { Reporter } from '../progress';
import type { RunConfig } from './config';
import { throwIfAborted } from './extract';
import type { OrchardError } from '../errors';
import { workThroughShards } from './lease';
import { newAttempt, type ExtractMeta, type ProjectMeta, type RunFolder } from './run-folder';

/**
 * The projection every stage process uses, whatever engine extracted the features: ONNX Runtime's float64 Gemm
 * where onnxruntime-node loads, else the JavaScript loop. Both sum in float64; the outputs are float32.
 */
export function projectorFor(threads: number): Projector {
  try {
    return ortProjector(loadOrt(), threads);
  } catch {
    return projectInJs;
  }
}

export interface ProjectSummary {
  readonly shards: number;
  readonly resumed: number;
  readonly rows: number;
}

export interface ProjectDependencies {
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
  readonly project?: Projector;
  readonly onLeaseLost?: (error: OrchardError) => void;
}

/**
 * The project stage over some shards of a fitted run: each shard's features onto the k components, written as
 * the shard's part of the Parquet dataset (`pca/part-NNNNN.parquet`) and, when the run is small enough for the
 * single-file outputs, kept as float32 rows for publish. Complete shards are skipped.
 */
export async function projectStage(
  folder: RunFolder,
  config: RunConfig,
  model: PcaModel,
  shards: readonly number[],
  deps: ProjectDependencies,
): Promise<ProjectSummary> {
  const project = deps.project ?? projectorFor(config.threads);
  // The fitted model counts every processed image: it decides whether publish writes the single files.
  const keep = model.nSamples <= config.singleFileMaxRows;
  const extractedWith = await folder.readExtractedWith();
  const metadata = { orchard_run_id: config.runId, orchard_model: extractedWith?.name ?? '' };
  const todo: ExtractMeta[] = [];
  for (const shard of shards) {
    if (!(await folder.projected(shard))) todo.push(await folder.requireExtracted(shard));
  }
  const byShard = new Map(todo.map((meta) => [meta.shard, meta]));
  // The next shard's features are read while this one is projected and written: from S3, a 4096-image shard's
  // 21 MB read is most of its time. One read ahead at most (a shard another process does is not read twice
  // over), so 21 MB more at most.
  let ahead: { shard: number; read: Promise<Float32Array> } | undefined;
  const readAhead = (meta: ExtractMeta | undefined) => {
    ahead = meta && meta.rows.length > 0 ? { shard: meta.shard, read: folder.readFeatures(meta) } : undefined;
    ahead?.read.catch(() => undefined); // a read ahead that fails fails again when its shard awaits it
  };
  const task = deps.reporter.task('project', todo.reduce((sum, meta) => sum + meta.rows.length, 0));
  let rows = 0;
  let done: number[];
  try {
    done = await workThroughShards(folder.storage, [...byShard.keys()], {
      isDone: async (shard) => (await folder.projected(shard)) !== undefined,
      leaseKey: (shard) => folder.leaseKey({ stage: 'project', shard }),
      purpose: (shard) => `project shard ${shard}`,
      onLost: deps.onLeaseLost,
      signal: deps.signal,
      work: async (shard) => {
        const extracted = byShard.get(shard)!;
        const started = performance.now();
        const n = extracted.rows.length;
        const features = n === 0 ? undefined : ahead?.shard === shard ? ahead.read : folder.readFeatures(extracted);
        readAhead(todo[todo.indexOf(extracted) + 1]);
        const values = features ? await project(await features, n, model) : new Float32Array(0);
        const block = { keys: extracted.rows.map((row) => row.key), labels: extracted.rows.map((row) => row.label), values };
        const part = await parquetBytes(block, model.nComponents, metadata);
        const meta: ProjectMeta = { shard, attempt: newAttempt(), rows: n, components: model.nComponents, kept: keep, seconds: (performance.now() - started) / 1000 };
        await folder.commitProject(meta, part, keep ? values : undefined);
        rows += n;
        task.update(rows, 0);
      },
    });
    throwIfAborted(deps.signal);
  } finally {
    task.stop();
  }
  return { shards: done.length, resumed: shards.length - done.length, rows };
}
