import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { INTERMEDIATE_TAG } from '../contracts/deployment';
import { ExitCode, OrchardError } from '../errors';
import { InvalidJsonError, getJson, NotFoundError, type Storage } from '../storage';

/**
 * A lease on a run folder (or on one shard of it): one object naming its holder and when it expires, renewed
 * while the holder works. A second run of the same run id is refused with the holder's name; a lease whose holder
 * is gone (it expired, or it names a process of this machine that no longer exists) is taken over.
 *
 * Creation is atomic where the store can do it: a local file opened for exclusive creation, S3's conditional
 * write (`If-None-Match: *`). Some S3-compatible servers ignore conditional writes; there the lease is written
 * and read back after a moment (`VERIFY_DELAY_MS`): two holders starting within that moment could both go on.
 * They would never mix their files (every shard commits attempt by attempt), only do the same work twice.
 */

/** How long a lease lasts without renewal: a holder that stops renewing (killed, cut off) loses it after this. */
export const LEASE_TTL_MS = 120_000;
/** Renewed three times per TTL, so that two missed renewals still leave it held. */
const RENEW_EVERY_MS = LEASE_TTL_MS / 3;
/** Fallback for servers without conditional writes: how long to wait before reading the lease back. */
const VERIFY_DELAY_MS = 100;

export interface LeaseRecord {
  readonly owner: string;
  readonly host: string;
  readonly pid: number;
  /** What the holder is doing: `orchard run`, `orchard fit`, `extract shard 12`, … */
  readonly purpose: string;
  readonly acquiredAt: string;
  readonly expiresAt: string;
}

export interface LeaseOptions {
  readonly purpose: string;
  /** @default LEASE_TTL_MS */
  readonly ttlMs?: number;
  /** Called once if the lease is lost while held (another process took it over): the holder must stop. */
  readonly onLost?: (error: OrchardError) => void;
  /** Told when a stale lease (its holder gone) is taken over, so that the log says whose work is continued. */
  readonly onTakeOver?: (previous: LeaseRecord) => void;
  /** For tests: the time. */
  readonly now?: () => number;
}

export class Lease {
  private timer?: NodeJS.Timeout;
  private lost = false;
  private released = false;
  /** The renewal in flight, if any: a release waits for it, or its write would bring the lease back. */
  private renewing?: Promise<void>;

  private constructor(
    private readonly storage: Storage,
    readonly key: string,
    private record: LeaseRecord,
    private readonly ttlMs: number,
    private readonly options: LeaseOptions,
  ) {}

  /** Takes the lease, or throws ERR_RUN_LOCKED naming the holder. */
  static async acquire(storage: Storage, key: string, options: LeaseOptions): Promise<Lease> {
    const lease = await Lease.tryAcquire(storage, key, options);
    if (lease instanceof Lease) return lease;
    throw new OrchardError(
      `${storage.uri(key)} is held by ${describeHolder(lease)} until ${lease.expiresAt}: the same run is being worked on ` +
        `by another process. Wait for it to finish, or, if it is gone, rerun after ${lease.expiresAt}`,
      'ERR_RUN_LOCKED',
      ExitCode.Fatal,
    );
  }

  /** Takes the lease, or returns the live holder's record. */
  static async tryAcquire(storage: Storage, key: string, options: LeaseOptions): Promise<Lease | LeaseRecord> {
    const now = options.now ?? Date.now;
    const ttlMs = options.ttlMs ?? LEASE_TTL_MS;
    const owner = `${os.hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`;
    const exclusive = await storage.exclusiveCreate();
    let takingOver = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      const record: LeaseRecord = {
        owner,
        host: os.hostname(),
        pid: process.pid,
        purpose: options.purpose,
        acquiredAt: new Date(now()).toISOString(),
        expiresAt: new Date(now() + ttlMs).toISOString(),
      };
      const body = JSON.stringify(record);
      let created: boolean;
      if (exclusive) {
        created = await storage.putIfAbsent(key, body, TAGGED);
      } else {
        created = !(await storage.head(key));
        if (created) {
          await storage.put(key, body, TAGGED);
          await new Promise((resolve) => setTimeout(resolve, VERIFY_DELAY_MS));
          created = (await readLease(storage, key))?.owner === owner;
        }
      }
      if (created && takingOver) {
        // Two processes taking over the same stale lease can both succeed: the later one's delete removes the
        // earlier one's new lease. Read back after a moment, as without conditional writes: the one whose lease
        // is gone yields. (A delete conditional on the stale lease's ETag would close this; not every store has it.)
        await new Promise((resolve) => setTimeout(resolve, VERIFY_DELAY_MS));
        const now = await readLease(storage, key);
        if (now?.owner !== owner) {
          if (now) return now;
          continue;
        }
      }
      if (created) {
        const lease = new Lease(storage, key, record, ttlMs, options);
        lease.startRenewing();
        return lease;
      }
      const holder = await readLease(storage, key);
      if (holder && !isStale(holder, now())) return holder;
      if (!holder && !(await storage.head(key))) continue; // gone meanwhile: create it again, delete nothing
      // Expired, unreadable (a holder killed while writing it), or a dead process of this machine: take over.
      if (holder) options.onTakeOver?.(holder);
      await storage.delete(key);
      takingOver = true;
    }
    const holder = await readLease(storage, key);
    if (holder) return holder;
    throw new OrchardError(`Could not take the lease ${storage.uri(key)}: other processes keep taking it over`, 'ERR_RUN_LOCKED');
  }

  /** Whether the lease was lost while held (renewal found another owner). */
  get isLost(): boolean {
    return this.lost;
  }

  /** Stops renewing and deletes the lease, if it is still this holder's. */
  async release(): Promise<void> {
    this.released = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.renewing;
    if (this.lost) return;
    const current = await readLease(this.storage, this.key).catch(() => undefined);
    if (current?.owner === this.record.owner) await this.storage.delete(this.key);
  }

  private startRenewing(): void {
    this.timer = setInterval(() => void this.renew(), RENEW_EVERY_MS);
    // A lease must not keep a finished process alive.
    this.timer.unref();
  }

  /** One renewal at a time; a release waits for the one in flight. */
  private renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    try {
      const current = await readLease(this.storage, this.key);
      if (current?.owner !== this.record.owner) {
        this.lose(current);
        return;
      }
      if (this.released) return;
      const now = (this.options.now ?? Date.now)();
      this.record = { ...this.record, expiresAt: new Date(now + this.ttlMs).toISOString() };
      await this.storage.put(this.key, JSON.stringify(this.record), TAGGED);
    } catch {
      // A failed renewal is retried at the next tick; the lease lasts three of them.
    }
  }

  private lose(holder: LeaseRecord | undefined): void {
    if (this.lost) return;
    this.lost = true;
    clearInterval(this.timer);
    this.options.onLost?.(
      new OrchardError(
        `Lost the lease ${this.storage.uri(this.key)} to ${holder ? describeHolder(holder) : 'nobody (it was deleted)'}: ` +
          'another process took this run over (this one was too slow to renew it?). Stopped; rerun to continue',
        'ERR_LEASE_LOST',
      ),
    );
  }
}

const TAGGED = { tags: { [INTERMEDIATE_TAG.key]: INTERMEDIATE_TAG.value } };

/** The holder as a person reads it: `orchard run on build-7 (pid 4242) since 12:03:04Z`. */
export function describeHolder(record: LeaseRecord): string {
  return `${record.purpose} on ${record.host} (pid ${record.pid}) since ${record.acquiredAt}`;
}

/** A lease is stale once expired, or when it names a process of this machine that no longer runs. */
export function isStale(record: LeaseRecord, now: number): boolean {
  return staleBecause(record, now) !== undefined;
}

/** Why a lease is stale, as a person reads it, or undefined while its holder may still be working. */
export function staleBecause(record: LeaseRecord, now: number): string | undefined {
  if (Date.parse(record.expiresAt) <= now) return `its lease expired at ${record.expiresAt}`;
  if (record.host === os.hostname() && record.pid !== process.pid && !processAlive(record.pid)) return `process ${record.pid} no longer runs`;
  return undefined;
}

/** Whether a process of this machine runs under `pid` (signal 0 checks without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is someone else's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The current lease, or undefined when there is none or it is unreadable (a holder killed while writing it). */
async function readLease(storage: Storage, key: string): Promise<LeaseRecord | undefined> {
  try {
    const record = await getJson<LeaseRecord>(storage, key);
    return typeof record?.owner === 'string' && typeof record.expiresAt === 'string' ? record : undefined;
  } catch (error) {
    if (error instanceof NotFoundError || error instanceof InvalidJsonError) return undefined;
    throw error;
  }
}

/** How often a task waiting for a shard another process holds looks again. */
const WAIT_FOR_HOLDER_MS = 1_000;

export interface ShardWork {
  /** Whether the shard is already done (checked again once its lease is held). */
  readonly isDone: (shard: number) => Promise<boolean>;
  /** Does the shard; called with its lease held. */
  readonly work: (shard: number) => Promise<void>;
  readonly purpose: (shard: number) => string;
  readonly leaseKey: (shard: number) => string;
  readonly onLost?: (error: OrchardError) => void;
  /** Told once per shard another live process holds (it is done later, or found done). */
  readonly onHeld?: (shard: number, holder: LeaseRecord) => void;
  readonly signal?: AbortSignal;
}

/**
 * Works through shards one at a time, each under its own lease, so that tasks given overlapping shards (a retried
 * task whose first try still runs) do not both do one: a shard held by another live process is left for later
 * and looked at again until it is done or its holder is gone. Returns the shards this process did.
 */
export async function workThroughShards(storage: Storage, shards: readonly number[], options: ShardWork): Promise<number[]> {
  const done: number[] = [];
  let pending = [...shards];
  const told = new Set<number>();
  while (pending.length > 0) {
    const heldElsewhere: number[] = [];
    for (const shard of pending) {
      if (options.signal?.aborted) return done;
      const lease = await Lease.tryAcquire(storage, options.leaseKey(shard), { purpose: options.purpose(shard), onLost: options.onLost });
      if (!(lease instanceof Lease)) {
        if (!told.has(shard)) options.onHeld?.(shard, lease);
        told.add(shard);
        heldElsewhere.push(shard);
        continue;
      }
      try {
        if (!(await options.isDone(shard))) {
          await options.work(shard);
          done.push(shard);
        }
      } finally {
        await lease.release();
      }
    }
    pending = [];
    for (const shard of heldElsewhere) if (!(await options.isDone(shard))) pending.push(shard);
    if (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, WAIT_FOR_HOLDER_MS));
  }
  return done;
}
