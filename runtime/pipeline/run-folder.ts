import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { INTERMEDIATE_TAG } from '../contracts/deployment';
import { OUTPUTS, partKey } from '../contracts/results';
import { ExitCode, OrchardError, describeError } from '../errors';
import type { EngineInfo, ModelIdentity } from '../model/feature-model';
import type { Int8Graph, Int8Info } from '../model/int8';
import type { CompiledGraph } from '../model/to-onnx/compile';
import { pcaModelFromJson, pcaModelToJson } from '../pca/model-json';
import type { PcaModel } from '../pca/fit';
import { decodeMoments, encodeMoments, encodedMomentsLength, type Moments } from '../stats/moments';
import { InvalidJsonError, NotFoundError, exists, getJson, getJsonIfExists, putJson, type PutOptions, type Storage } from '../storage';

/**
 * The shard contract: the one owner of a run folder's `_work/` layout. Every stage reads and writes shards
 * through it and nothing else builds a key, decides when a shard is complete, or knows where an attempt's data
 * sits.
 *
 * Layout (all under `<output>/<run-id>/`, every `_work/` object tagged for the bucket's lifecycle rule):
 *
 *   _work/config.json                      the run's settings, frozen by plan (children read them)
 *   _work/plan.json                        shard count and sizes, written last by plan
 *   _work/shards/NNNNN.json                the keys (and sizes) of one shard's images
 *   _work/model.json                       the network and engine the shards were extracted with
 *   _work/int8/graph.onnx                  the run's int8 graph (--precision int8), built once by plan
 *   _work/int8/graph.json                  its SHA-256, weight range and calibration images, written after it
 *   _work/items/<stage>.json               work items for an engine: [{"shard": n}, …], shards not yet done
 *   _work/extract/NNNNN/<attempt>.features.f32   n × dim float32, row-major, rows in the meta's order
 *   _work/extract/NNNNN/<attempt>.moments.bin    the shard's statistics (runtime/stats/moments.ts)
 *   _work/extract/NNNNN.meta.json          rows, errors, timings, engine, and the attempt that holds the data
 *   _work/fit/LL-NNNNN.moments.bin         partial merges of the fit's tree (level LL ≥ 1, group NNNNN)
 *   _work/fit/pca.json                     the fitted PCA model (float64 exact), written last by fit
 *   _work/project/NNNNN/<attempt>.pcs.f32  n × k float32 projections, for the single-file outputs
 *   _work/project/NNNNN.meta.json          rows projected, and the attempt that holds them
 *   _work/lease.json                       who is running the run's stages now (runtime/pipeline/lease.ts)
 *   _work/leases/<stage>-NNNNN.json        who is working on one shard now
 *   _work/sessions/<id>.json               what one process did (stages, times, images), for the manifest
 *   pca/part-NNNNN.parquet                 the shard's rows in the published Parquet dataset
 *
 * Commit protocol: an attempt writes its data under keys of its own (a random attempt id), then the meta,
 * which names the attempt, last. A shard is complete when its meta exists and names data that exists with the
 * expected sizes. Two overlapping attempts of one shard (a retried task whose first try was not dead) never mix
 * their files: whichever meta lands last names a whole set of data of one attempt. The Parquet part is the only
 * shared key; every attempt writes the same bytes to it (projection is deterministic).
 */

export const WORK = '_work/';
const TAGGED: PutOptions = { tags: { [INTERMEDIATE_TAG.key]: INTERMEDIATE_TAG.value } };

const pad = (n: number) => String(n).padStart(5, '0');
const KEYS = {
  config: `${WORK}config.json`,
  plan: `${WORK}plan.json`,
  model: `${WORK}model.json`,
  int8Graph: `${WORK}int8/graph.onnx`,
  int8Entry: `${WORK}int8/graph.json`,
  items: (stage: WorkStage) => `${WORK}items/${stage}.json`,
  shardItems: (shard: number) => `${WORK}shards/${pad(shard)}.json`,
  extractPrefix: `${WORK}extract/`,
  extractMeta: (shard: number) => `${WORK}extract/${pad(shard)}.meta.json`,
  features: (shard: number, attempt: string) => `${WORK}extract/${pad(shard)}/${attempt}.features.f32`,
  moments: (shard: number, attempt: string) => `${WORK}extract/${pad(shard)}/${attempt}.moments.bin`,
  merge: (level: number, group: number) => `${WORK}fit/${String(level).padStart(2, '0')}-${pad(group)}.moments.bin`,
  fit: `${WORK}fit/pca.json`,
  projectMeta: (shard: number) => `${WORK}project/${pad(shard)}.meta.json`,
  projections: (shard: number, attempt: string) => `${WORK}project/${pad(shard)}/${attempt}.pcs.f32`,
  runLease: `${WORK}lease.json`,
  sessionsPrefix: `${WORK}sessions/`,
  session: (id: string) => `${WORK}sessions/${id}.json`,
  shardLease: (stage: WorkStage, shard: number) => `${WORK}leases/${stage}-${pad(shard)}.json`,
} as const;

export type WorkStage = 'extract' | 'project';

/**
 * Every key orchard writes under `_work/` (KEYS above, the leases, S3's conditional-write probe: keep in step): what
 * `deleteWork` may delete, and what a new run's `_work/` may already hold. Anything else there is not orchard's.
 */
const OWN_WORK_KEY =
  /^_work\/(?:(?:config|plan|model|lease)\.json|int8\/graph\.(?:onnx|json)|items\/(?:extract|project)\.json|shards\/\d{5,}\.json|extract\/\d{5,}\.meta\.json|extract\/\d{5,}\/[\w-]+\.(?:features\.f32|moments\.bin)|fit\/\d{2}-\d{5,}\.moments\.bin|fit\/pca\.json|project\/\d{5,}\.meta\.json|project\/\d{5,}\/[\w-]+\.pcs\.f32|leases\/(?:extract|project)-\d{5,}\.json|sessions\/[\w-]+\.json|\.conditional-write-probe-[\w-]+)$/;

export function isOwnWorkKey(key: string): boolean {
  return OWN_WORK_KEY.test(key);
}

export interface ShardItem {
  readonly key: string;
  readonly size: number;
}

export interface Plan {
  readonly shards: number;
  readonly images: number;
  readonly shardSize: number;
  /** When plan started (the run's start, for the manifest's total time). */
  readonly startedAt: string;
  readonly listSeconds: number;
}

/** The network and engine a run's shards come from; a resume on anything else is refused. */
export interface ExtractedWith extends ModelIdentity {
  readonly engine: EngineInfo['name'];
  readonly graphSha256?: string;
}

/** The network alone (what the manifest and pca-model.json show), without the engine bookkeeping. */
export function modelIdentityOf(extractedWith: ExtractedWith): ModelIdentity {
  const { engine: _engine, graphSha256: _graph, ...identity } = extractedWith;
  return identity;
}

/** What `_work/int8/graph.json` says of the graph beside it. */
interface Int8Entry extends Omit<CompiledGraph, 'bytes'> {
  readonly weightsSha256: string;
  readonly info: Int8Info;
  /** The images it was calibrated on, relative to the input. */
  readonly calibrationKeys: readonly string[];
}

/** What a finished extract shard records. */
export interface ExtractMeta {
  readonly shard: number;
  readonly attempt: string;
  readonly dim: number;
  /** Successful images, in feature-row order. */
  readonly rows: readonly { readonly key: string; readonly label: string }[];
  readonly errors: readonly { readonly key: string; readonly reason: string }[];
  readonly seconds: number;
  /** Seconds the model computed (reading, decoding and writing overlap with it). */
  readonly predictSeconds: number;
  /**
   * CPU seconds the engine spent enlarging small images right before the CNN (the onnx engine, in its worker):
   * preprocessing, not the model. 0 or absent when the main thread enlarged them in JavaScript.
   */
  readonly enlargeSeconds?: number;
  /** Seconds spent on the shard's statistics (mean and co-moment) for PCA. */
  readonly momentsSeconds: number;
  readonly engine: EngineInfo;
  readonly versions: Readonly<Record<string, string>>;
  /** Machine and process of the attempt, for the manifest and for debugging overlaps. */
  readonly host: string;
  readonly finishedAt: string;
  /** S3 requests retried while the shard was extracted, per command. */
  readonly s3Retries?: Readonly<Record<string, number>>;
}

/**
 * What one process (an `orchard run`, one stage command, one invocation of the stage function) did on a run: the
 * stages it ran, when and for how long, and the images it extracted. Each is stored in the run folder (`_work/sessions/`) when the
 * process ends, interrupted or not; publish sums them into the manifest's timings and throughput, so that neither
 * the time between typed commands nor shards done in an earlier process (a resumed run) distort them.
 */
export interface SessionRecord {
  readonly id: string;
  /** `run`, `plan`, `extract`, `merge`, `fit`, `project` or `publish`. */
  readonly command: string;
  readonly host: string;
  readonly stages: readonly StageSpan[];
  /** Images this process extracted (processed and failed); shards found complete are not counted. */
  readonly images: number;
  /** Seconds the model computed, and spent on the shards' statistics, within this process's extract. */
  readonly predictSeconds: number;
  readonly momentsSeconds: number;
  /** CPU seconds the engine spent enlarging small images (ExtractMeta.enlargeSeconds), when it did. */
  readonly enlargeSeconds?: number;
  /** True when the process was stopped (a signal, an error) before its stages finished. */
  readonly interrupted?: boolean;
}

export interface StageSpan {
  readonly stage: string;
  /** Wall clock (ISO 8601): spans of processes on different machines are compared by it. */
  readonly startedAt: string;
  readonly seconds: number;
}

export interface ProjectMeta {
  readonly shard: number;
  readonly attempt: string;
  readonly rows: number;
  readonly components: number;
  /** Whether the attempt kept its projections for the single-file outputs. */
  readonly kept: boolean;
  readonly seconds: number;
}

/** Where a shard stands: complete, never committed, or committed with data that is no longer whole. */
export type ShardState<T> =
  | { readonly state: 'complete'; readonly meta: T }
  | { readonly state: 'missing' }
  | { readonly state: 'damaged'; readonly why: string };

export interface FitRecord {
  readonly model: object;
  readonly seconds: number;
  readonly shards: number;
}

/** A new attempt id: sortable by time, unique across machines. */
export function newAttempt(now = new Date()): string {
  return `${now.toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(4).toString('hex')}`;
}

export function hostDescription(): string {
  return `${os.hostname()} pid ${process.pid}`;
}

export class RunFolder {
  constructor(readonly storage: Storage) {}

  /** The key of a run-folder object in its bucket (what a Step Functions item reader or result writer is given). */
  storageKey(key: string): string {
    const location = this.storage.location;
    return location.kind === 's3' ? `${location.prefix}${key}` : path.join(location.dir, key);
  }

  uri(key = ''): string {
    return this.storage.uri(key);
  }

  /** The stage command that does one shard of this run, as a user types it. */
  private commandFor(stage: WorkStage, shard: number): string {
    const folder = this.uri().replace(/\/+$/, '');
    const cut = folder.lastIndexOf('/');
    return `orchard ${stage} -o ${folder.slice(0, cut + 1)} --run-id ${folder.slice(cut + 1)} --shards ${shard}`;
  }

  // ----- settings and plan --------------------------------------------------------------------------------------

  readConfig<T>(): Promise<T | undefined> {
    return readState<T>(this.storage, KEYS.config, shape({ input: 'string', output: 'string' }), NEW_RUN);
  }

  writeConfig(settings: object): Promise<void> {
    return putJson(this.storage, KEYS.config, settings, TAGGED);
  }

  readPlan(): Promise<Plan | undefined> {
    return readState<Plan>(this.storage, KEYS.plan, shape({ shards: 'number', images: 'number', shardSize: 'number', startedAt: 'string' }), NEW_RUN);
  }

  /** The plan, or an error saying that `orchard plan` must run first. */
  async requirePlan(): Promise<Plan> {
    const plan = await this.readPlan();
    if (!plan) {
      throw new OrchardError(`${this.uri()} has no ${KEYS.plan}: run \`orchard plan\` (or \`orchard run\`) for this run id first`, 'ERR_NO_PLAN');
    }
    return plan;
  }

  writePlan(plan: Plan): Promise<void> {
    return putJson(this.storage, KEYS.plan, plan, TAGGED);
  }

  /** Whether any extract data exists (shards cut by a plan that is now gone). */
  async hasExtractData(): Promise<string | undefined> {
    for await (const object of this.storage.list(KEYS.extractPrefix)) return object.key;
    return undefined;
  }

  writeShardItems(shard: number, items: readonly ShardItem[]): Promise<void> {
    return putJson(this.storage, KEYS.shardItems(shard), { shard, items }, TAGGED);
  }

  deleteShardItems(shard: number): Promise<void> {
    return this.storage.delete(KEYS.shardItems(shard));
  }

  async readShardItems(shard: number): Promise<ShardItem[]> {
    const items = await readState<{ items: ShardItem[] }>(this.storage, KEYS.shardItems(shard), shape({ shard: 'number', items: 'array' }), NEW_RUN);
    if (!items) throw damaged(this.uri(KEYS.shardItems(shard)), 'missing, though the plan has this shard', NEW_RUN);
    return items.items;
  }

  readExtractedWith(): Promise<ExtractedWith | undefined> {
    return readState<ExtractedWith>(this.storage, KEYS.model, shape({ name: 'string', weightsSha256: 'string', featureDim: 'number' }), NEW_RUN);
  }

  /** Records the network and engine unless a concurrent shard did first; returns what is recorded. */
  async claimExtractedWith(identity: ExtractedWith): Promise<ExtractedWith> {
    await this.storage.putIfAbsent(KEYS.model, `${JSON.stringify(identity, null, 2)}\n`, TAGGED);
    const recorded = await this.readExtractedWith();
    if (!recorded) throw new Error(`${this.uri(KEYS.model)} disappeared right after it was written`);
    return recorded;
  }

  /**
   * Stores the run's int8 graph: the graph first, then its entry, so that an entry means a whole graph. Every
   * extract process and worker of the run reads these very bytes (`readInt8Graph`).
   */
  async writeInt8Graph(int8: Int8Graph, weightsSha256: string, calibrationKeys: readonly string[]): Promise<void> {
    const { bytes, ...graph } = int8.graph;
    await this.storage.put(KEYS.int8Graph, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), TAGGED);
    const entry: Int8Entry = { ...graph, weightsSha256, info: int8.info, calibrationKeys };
    await putJson(this.storage, KEYS.int8Entry, entry, TAGGED);
  }

  /** The run's int8 graph, checked against its entry's SHA-256; undefined when plan has not built it. */
  async readInt8Graph(): Promise<(Int8Graph & { readonly weightsSha256: string }) | undefined> {
    const remedy = 'Start again with another --run-id';
    const entry = await readState<Int8Entry>(this.storage, KEYS.int8Entry, shape({ sha256: 'string', weightsSha256: 'string', info: 'object', calibrationKeys: 'array' }), remedy);
    if (!entry) return undefined;
    const data = await this.storage.get(KEYS.int8Graph).catch((error: unknown) => {
      if (error instanceof NotFoundError) throw damaged(this.uri(KEYS.int8Graph), 'missing, though its entry exists', remedy);
      throw error;
    });
    if (createHash('sha256').update(data).digest('hex') !== entry.sha256) throw damaged(this.uri(KEYS.int8Graph), `its SHA-256 is not ${entry.sha256}`, remedy);
    const { info, weightsSha256, calibrationKeys: _keys, ...graph } = entry;
    return { graph: { ...graph, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }, info, weightsSha256 };
  }

  /** Writes the work items of a stage (the shards still to do) and returns the key, for an engine's item reader. */
  async writeWorkItems(stage: WorkStage, shards: readonly number[]): Promise<string> {
    await this.storage.put(KEYS.items(stage), `${JSON.stringify(shards.map((shard) => ({ shard })))}\n`, TAGGED);
    return KEYS.items(stage);
  }

  // ----- extract --------------------------------------------------------------------------------------------------

  /** Data first, meta last: see the commit protocol above. */
  async commitExtract(meta: ExtractMeta, features: Float32Array, moments: Moments): Promise<void> {
    const { shard, attempt } = meta;
    await this.storage.put(KEYS.features(shard, attempt), Buffer.from(features.buffer, features.byteOffset, meta.rows.length * meta.dim * 4), TAGGED);
    await this.storage.put(KEYS.moments(shard, attempt), encodeMoments(moments), TAGGED);
    await putJson(this.storage, KEYS.extractMeta(shard), meta, TAGGED);
  }

  /** The meta of a complete extract shard (its data present with the expected sizes), else undefined. */
  async extracted(shard: number): Promise<ExtractMeta | undefined> {
    const status = await this.extractState(shard);
    return status.state === 'complete' ? status.meta : undefined;
  }

  /**
   * Where an extract shard stands. Its data is checked against its meta when the shard is looked at (on resume),
   * not when it is read at the end: a truncated or missing features or statistics file makes the shard
   * `damaged`, and it is extracted again. (Lifecycle expiry is per object and may take some data and leave the
   * meta.)
   */
  async extractState(shard: number): Promise<ShardState<ExtractMeta>> {
    const meta = await readState<ExtractMeta>(
      this.storage,
      KEYS.extractMeta(shard),
      shape({ shard: 'number', attempt: 'string', dim: 'number', rows: 'array', errors: 'array', engine: 'object' }),
      redoShard('extract', shard),
    );
    if (!meta) return { state: 'missing' };
    const [features, moments] = await Promise.all([
      this.storage.head(KEYS.features(shard, meta.attempt)),
      this.storage.head(KEYS.moments(shard, meta.attempt)),
    ]);
    const rowsBytes = meta.rows.length * meta.dim * 4;
    if (!features) return { state: 'damaged', why: `its features (${this.uri(KEYS.features(shard, meta.attempt))}) are missing` };
    if (features.size !== rowsBytes) return { state: 'damaged', why: `its features hold ${features.size} bytes instead of ${rowsBytes}` };
    if (!moments) return { state: 'damaged', why: `its statistics (${this.uri(KEYS.moments(shard, meta.attempt))}) are missing` };
    if (moments.size !== encodedMomentsLength(meta.dim)) return { state: 'damaged', why: `its statistics hold ${moments.size} bytes instead of ${encodedMomentsLength(meta.dim)}` };
    return { state: 'complete', meta };
  }

  /** The meta of a shard that must be complete (fit, project and publish need every shard). */
  async requireExtracted(shard: number): Promise<ExtractMeta> {
    const meta = await this.extracted(shard);
    if (!meta) throw incomplete('extract', shard, this.uri(KEYS.extractMeta(shard)), this.commandFor('extract', shard));
    return meta;
  }

  /** A complete shard's feature rows (float32, row-major). */
  async readFeatures(meta: ExtractMeta): Promise<Float32Array> {
    const key = KEYS.features(meta.shard, meta.attempt);
    const data = await this.storage.get(key);
    if (data.length !== meta.rows.length * meta.dim * 4) {
      throw new OrchardError(`${this.uri(key)} holds ${data.length} bytes, expected ${meta.rows.length} × ${meta.dim} float32 values`, 'ERR_CORRUPT_SHARD');
    }
    return float32View(data);
  }

  async readMoments(meta: ExtractMeta): Promise<Moments> {
    const key = KEYS.moments(meta.shard, meta.attempt);
    return decodeMoments(await this.storage.get(key), this.uri(key));
  }

  // ----- fit --------------------------------------------------------------------------------------------------------

  writeMerge(level: number, group: number, moments: Moments): Promise<void> {
    return this.storage.put(KEYS.merge(level, group), encodeMoments(moments), TAGGED);
  }

  /** Whether a merge is stored whole (its size is that of `dim` features' statistics). */
  async hasMerge(level: number, group: number, dim: number): Promise<boolean> {
    return (await this.storage.head(KEYS.merge(level, group)))?.size === encodedMomentsLength(dim);
  }

  async readMerge(level: number, group: number): Promise<Moments | undefined> {
    const key = KEYS.merge(level, group);
    try {
      return decodeMoments(await this.storage.get(key), this.uri(key));
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  writeFit(model: PcaModel, seconds: number, shards: number, extra: Record<string, unknown>): Promise<void> {
    const record: FitRecord = { model: pcaModelToJson(model, extra), seconds, shards };
    return putJson(this.storage, KEYS.fit, record, TAGGED);
  }

  /** The fitted model, or undefined before fit has finished. */
  async readFit(): Promise<{ model: PcaModel; record: FitRecord } | undefined> {
    const remedy = 'Delete it to fit again (`orchard fit`, or rerun `orchard run`)';
    const record = await readState<FitRecord>(this.storage, KEYS.fit, shape({ model: 'object', seconds: 'number', shards: 'number' }), remedy);
    if (!record) return undefined;
    try {
      return { model: pcaModelFromJson(record.model, this.uri(KEYS.fit)), record };
    } catch (error) {
      throw damaged(this.uri(KEYS.fit), describeError(error), remedy);
    }
  }

  async requireFit(): Promise<{ model: PcaModel; record: FitRecord }> {
    const fit = await this.readFit();
    if (!fit) throw new OrchardError(`${this.uri()} has no fitted model (${KEYS.fit}): run \`orchard fit\` first`, 'ERR_NOT_FITTED');
    return fit;
  }

  // ----- project ------------------------------------------------------------------------------------------------

  /** The part first, then the projections an attempt keeps for the single files, then the meta. */
  async commitProject(meta: ProjectMeta, part: Buffer, projections: Float32Array | undefined): Promise<void> {
    await this.storage.put(partKey(meta.shard), part);
    if (meta.kept && projections) {
      await this.storage.put(KEYS.projections(meta.shard, meta.attempt), Buffer.from(projections.buffer, projections.byteOffset, projections.byteLength), TAGGED);
    }
    await putJson(this.storage, KEYS.projectMeta(meta.shard), meta, TAGGED);
  }

  async projected(shard: number): Promise<ProjectMeta | undefined> {
    const meta = await readState<ProjectMeta>(
      this.storage,
      KEYS.projectMeta(shard),
      shape({ shard: 'number', attempt: 'string', rows: 'number', components: 'number', kept: 'boolean' }),
      redoShard('project', shard),
    );
    if (!meta) return undefined;
    if (!(await exists(this.storage, partKey(shard)))) return undefined;
    if (meta.kept) {
      const values = await this.storage.head(KEYS.projections(shard, meta.attempt));
      if (!values || values.size !== meta.rows * meta.components * 4) return undefined;
    }
    return meta;
  }

  async requireProjected(shard: number): Promise<ProjectMeta> {
    const meta = await this.projected(shard);
    if (!meta) throw incomplete('project', shard, this.uri(KEYS.projectMeta(shard)), this.commandFor('project', shard));
    return meta;
  }

  async readProjections(meta: ProjectMeta): Promise<Float32Array> {
    const key = KEYS.projections(meta.shard, meta.attempt);
    const data = await this.storage.get(key);
    if (data.length !== meta.rows * meta.components * 4) {
      throw new OrchardError(`${this.uri(key)} holds ${data.length} bytes, expected ${meta.rows} × ${meta.components} float32 values`, 'ERR_CORRUPT_SHARD');
    }
    return float32View(data);
  }

  // ----- leases ---------------------------------------------------------------------------------------------------

  /** The key of the run's lease (plan, fit, publish, `orchard run`), or of one shard's (an extract or project task). */
  leaseKey(scope: 'run' | { readonly stage: WorkStage; readonly shard: number }): string {
    return scope === 'run' ? KEYS.runLease : KEYS.shardLease(scope.stage, scope.shard);
  }

  // ----- sessions: what each process did, for the manifest's timings ---------------------------------------------

  writeSession(record: SessionRecord): Promise<void> {
    return putJson(this.storage, KEYS.session(record.id), record, TAGGED);
  }

  async readSessions(): Promise<SessionRecord[]> {
    const keys: string[] = [];
    for await (const object of this.storage.list(KEYS.sessionsPrefix)) if (object.key.endsWith('.json')) keys.push(object.key);
    const records = await Promise.all(keys.map((key) => getJsonIfExists<SessionRecord>(this.storage, key)));
    return records.filter((record): record is SessionRecord => record !== undefined && Array.isArray(record.stages));
  }

  // ----- results ----------------------------------------------------------------------------------------------

  isPublished(): Promise<boolean> {
    return exists(this.storage, OUTPUTS.success);
  }

  /**
   * Deletes orchard's own files in `_work/` (after a successful publish, unless the user keeps the features):
   * only keys of its layout, so that nothing orchard did not write is ever deleted.
   */
  deleteWork(): Promise<void> {
    return this.storage.deletePrefix(WORK, isOwnWorkKey);
  }

  /** The first object under `_work/` that orchard would not have written there, if any. */
  async foreignWorkObject(): Promise<string | undefined> {
    for await (const object of this.storage.list(WORK)) if (!isOwnWorkKey(object.key)) return object.key;
    return undefined;
  }
}

/**
 * A state file, read and checked: a file that does not parse, or lacks what it must hold, is named with the
 * remedy (exit 1), never a stack trace about JSON.
 */
async function readState<T>(storage: Storage, key: string, valid: (value: unknown) => string | undefined, remedy: string): Promise<T | undefined> {
  let value: unknown;
  try {
    value = await getJson<unknown>(storage, key);
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    if (error instanceof InvalidJsonError) throw damaged(storage.uri(key), `not valid JSON (${error.detail}): truncated or overwritten`, remedy);
    throw error;
  }
  const problem = valid(value);
  if (problem) throw damaged(storage.uri(key), problem, remedy);
  return value as T;
}

function damaged(uri: string, problem: string, remedy: string): OrchardError {
  return new OrchardError(`${uri} is damaged: ${problem}. ${remedy}`, 'ERR_CORRUPT_STATE', ExitCode.Fatal);
}

/** Checks that a value is an object with the given fields of the given kinds; returns what is wrong, if anything. */
function shape(fields: Readonly<Record<string, 'number' | 'string' | 'array' | 'object' | 'boolean'>>): (value: unknown) => string | undefined {
  return (value) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
    for (const [field, kind] of Object.entries(fields)) {
      const v = (value as Record<string, unknown>)[field];
      const ok = kind === 'array' ? Array.isArray(v) : kind === 'object' ? typeof v === 'object' && v !== null && !Array.isArray(v) : typeof v === kind;
      if (!ok) return `"${field}" is ${v === undefined ? 'missing' : `not a${kind === 'array' || kind === 'object' ? 'n' : ''} ${kind}`}`;
    }
    return undefined;
  };
}

const NEW_RUN = 'The run cannot be resumed from it: start again with another --run-id (or delete the run folder\'s _work/ to start this one over)';
const redoShard = (stage: WorkStage, shard: number) => `Delete it to ${stage === 'extract' ? 'extract' : 'project'} shard ${shard} again (rerun the stage), or use another --run-id`;

function incomplete(stage: WorkStage, shard: number, where: string, command: string): OrchardError {
  return new OrchardError(
    `Shard ${shard} has not been ${stage === 'extract' ? 'extracted' : 'projected'} (${where} is missing or its data is incomplete): ` +
      `run \`${command}\` (or \`--shards all\`, or rerun \`orchard run\` with this run id) first`,
    'ERR_SHARD_INCOMPLETE',
  );
}

/** float32 rows over a buffer, copying only when the buffer is not 4-byte aligned. */
function float32View(data: Buffer): Float32Array {
  return data.byteOffset % 4 === 0
    ? new Float32Array(data.buffer, data.byteOffset, data.length / 4)
    : new Float32Array(new Uint8Array(data).buffer);
}
