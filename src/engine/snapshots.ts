// Snapshot operations of an engine across its replicas (Longhorn's semantics; docs/replica-protocol.md,
// "Snapshots"). A snapshot is crash-consistent across replicas: the engine takes its range lock exclusively over the
// whole volume, which waits for every write in flight to be acknowledged by every replica and holds new ones back;
// then every replica snapshots (each closes its head, so all it acknowledged is durable in the frozen layer); then
// writes resume. Revert holds the same barrier. Delete and purge change no content and run while I/O goes on.
//
// While a replica is WO (being rebuilt) the chain must not change under the rebuild's copy: every operation here
// but the list is refused then (RebuildRunning).
//
// Tidy-up: after a snapshot is taken or deleted, removed snapshots whose one child is a snapshot are merged into it,
// queued behind the operation (never into the live head: that would copy their data into it). Without it every
// export from a volume and every vol:// clone, which take a system snapshot and delete it, left one more layer in
// the chain for every later read to pass through. Longhorn's UI purges after each delete the same way.

import { randomUUID } from 'node:crypto';
import { isReplicaError, VOLUME_HEAD, WireStatus, type ControlRequest, type RangeLock, type SnapshotInfo } from '../replica/index.js';
import { EngineError } from './errors.js';
import type { ReplicaBackend, ReplicaMode } from './types.js';

export interface SnapshotMember {
  readonly name: string;
  readonly backend: ReplicaBackend;
  readonly mode: ReplicaMode;
}

export interface SnapshotContext {
  readonly volume: string;
  readonly size: number;
  readonly blockSize: number;
  readonly lock: RangeLock;
  members(): SnapshotMember[];
  /** Mark a replica ERR (it failed an operation). */
  fail(member: SnapshotMember, err: unknown, what: string): void;
  /** The rebuild running, if any. */
  rebuilding(): string | undefined;
  /** The chain changed outside a caller's operation (the tidy-up): watchers should hear of it. */
  changed(): void;
  log(line: string): void;
}

export interface CreateSnapshotOptions {
  name?: string | undefined;
  labels?: Record<string, string> | undefined;
  userCreated?: boolean | undefined;
}

/** A replica's snapshot change can close, create and fdatasync files; a purge copies data. */
const CHAIN_TIMEOUT_MS = 120_000;
const PURGE_TIMEOUT_MS = 30 * 60_000;

/** Serialises an engine's snapshot operations. */
export class SnapshotOps {
  readonly #ctx: SnapshotContext;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(ctx: SnapshotContext) {
    this.#ctx = ctx;
  }

  /** Resolves when no snapshot operation is running or queued (a rebuild waits for it). */
  idle(): Promise<void> {
    return this.#queue.then(() => {}, () => {});
  }

  /** Take a snapshot on every replica under a write barrier; returns its name (generated when not given). */
  create(opts: CreateSnapshotOptions = {}): Promise<string> {
    const name = opts.name || randomUUID();
    const req: ControlRequest = { op: 'snapshot', name, createdAt: new Date().toISOString(), userCreated: opts.userCreated ?? true, labels: opts.labels ?? {} };
    return this.#serial(`create snapshot "${name}"`, async () => {
      this.#checkNew(await this.list(), name);
      await this.#barrier(() => this.#everyRW(`snapshot "${name}"`, req, CHAIN_TIMEOUT_MS));
      await this.#tidyAfter();
      return name;
    });
  }

  /** The snapshots of one RW replica, with 'volume-head' last. */
  async list(): Promise<SnapshotInfo[]> {
    const errors: unknown[] = [];
    for (const m of this.#ctx.members().filter((x) => x.mode === 'RW')) {
      try {
        return (await m.backend.control({ op: 'listSnapshots' }, undefined, { timeoutMs: CHAIN_TIMEOUT_MS })).result as SnapshotInfo[];
      } catch (err) {
        errors.push(err);
        this.#ctx.fail(m, err, 'list snapshots');
      }
    }
    throw new EngineError('NoHealthyReplica', `Cannot list the snapshots of volume "${this.#ctx.volume}": no RW replica answered`, { cause: errors[0] });
  }

  delete(name: string): Promise<void> {
    return this.#serial(`delete snapshot "${name}"`, async () => {
      this.#checkExists(await this.list(), name);
      await this.#everyRW(`delete snapshot "${name}"`, { op: 'deleteSnapshot', name }, CHAIN_TIMEOUT_MS);
      await this.#tidyAfter();
    });
  }

  /** Revert every replica to snapshot `name` under a write barrier (the caller checked there is no frontend). */
  revert(name: string): Promise<void> {
    return this.#serial(`revert to snapshot "${name}"`, async () => {
      const list = await this.list();
      this.#checkExists(list, name);
      if (list.find((s) => s.name === name)?.removed) throw new EngineError('InvalidState', `Cannot revert volume "${this.#ctx.volume}" to snapshot "${name}": it is removed`);
      await this.#barrier(() => this.#everyRW(`revert to snapshot "${name}"`, { op: 'revertSnapshot', name }, CHAIN_TIMEOUT_MS));
    });
  }

  /** Merge removed snapshots into their child on every replica; returns what the first replica merged. */
  purge(): Promise<string[]> {
    return this.#serial('purge snapshots', async () => {
      const results = await this.#everyRW('purge snapshots', { op: 'purgeSnapshots' }, PURGE_TIMEOUT_MS);
      return ((results[0] as { merged?: string[] } | undefined)?.merged ?? []);
    });
  }

  /** The tidy-up's look at the chain after a create or delete: that operation succeeded whatever the look finds. */
  async #tidyAfter(): Promise<void> {
    try {
      this.#tidy(await this.list());
    } catch {
      // No RW replica answered the list (they are marked ERR): nothing to tidy on them now.
    }
  }

  /** Queues the tidy-up (top of file) when `list` has a removed snapshot with one child snapshot; never waited for. */
  #tidy(list: SnapshotInfo[]): void {
    const names = list.filter((s) => s.removed && s.children.length === 1 && s.children[0] !== VOLUME_HEAD).map((s) => s.name);
    if (names.length === 0) return;
    const what = 'merge removed snapshots into their child snapshots';
    void this.#serial(what, () => this.#everyRW(what, { op: 'purgeSnapshots', intoHead: false }, PURGE_TIMEOUT_MS)).then(
      (results) => {
        const merged = (results[0] as { merged?: string[] } | undefined)?.merged ?? [];
        if (merged.length === 0) return;
        const one = merged.length === 1;
        this.#ctx.log(`engine ${this.#ctx.volume}: merged removed snapshot${one ? '' : 's'} ${merged.join(', ')} into ${one ? 'its child snapshot' : 'their child snapshots'}`);
        this.#ctx.changed();
      },
      // Tried again after the next snapshot change (a rebuild running refuses it, for one).
      (err: unknown) => this.#ctx.log(`engine ${this.#ctx.volume}: could not ${what} (${names.join(', ')}): ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  #serial<T>(what: string, op: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const r = this.#ctx.rebuilding();
      if (r !== undefined) throw new EngineError('RebuildRunning', `Cannot ${what} on volume "${this.#ctx.volume}": replica "${r}" is being rebuilt`);
      return op();
    };
    const p = this.#queue.catch(() => {}).then(run);
    this.#queue = p;
    return p;
  }

  /** Run `op` with every write acknowledged and new ones held back. */
  async #barrier<T>(op: () => Promise<T>): Promise<T> {
    const release = await this.#ctx.lock.acquire(0, this.#ctx.size / this.#ctx.blockSize, 'exclusive');
    try {
      return await op();
    } finally {
      release();
    }
  }

  /**
   * Send `req` to every RW replica; one that fails for a reason other than the request itself (EINVAL) is marked
   * ERR and rebuilt later, as for a failed write. Succeeds when one RW replica did it.
   */
  async #everyRW(what: string, req: ControlRequest, timeoutMs: number): Promise<unknown[]> {
    const targets = this.#ctx.members().filter((m) => m.mode === 'RW');
    const results = await Promise.allSettled(targets.map((m) => m.backend.control(req, undefined, { timeoutMs })));
    const ok: unknown[] = [];
    const errors: unknown[] = [];
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') ok.push(r.value.result);
      else {
        errors.push(r.reason);
        if (!(isReplicaError(r.reason, 'Remote') && r.reason.status === WireStatus.EINVAL)) this.#ctx.fail(targets[i]!, r.reason, what);
      }
    });
    if (ok.length === 0) {
      const why = errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ');
      throw new EngineError('NoHealthyReplica', `Cannot ${what} on volume "${this.#ctx.volume}": no RW replica did it (${why})`, { cause: errors[0] });
    }
    if (errors.length > 0 && ok.length < targets.length && errors.every((e) => isReplicaError(e, 'Remote') && e.status === WireStatus.EINVAL)) {
      throw new EngineError('InvalidState', `Cannot ${what} on volume "${this.#ctx.volume}": the replicas disagree (${(errors[0] as Error).message})`, { cause: errors[0] });
    }
    return ok;
  }

  #checkExists(list: SnapshotInfo[], name: string): void {
    if (name === VOLUME_HEAD || !list.some((s) => s.name === name)) throw new EngineError('SnapshotUnknown', `Volume "${this.#ctx.volume}" has no snapshot "${name}"`);
  }

  #checkNew(list: SnapshotInfo[], name: string): void {
    if (name === VOLUME_HEAD || list.some((s) => s.name === name)) throw new EngineError('SnapshotExists', `Volume "${this.#ctx.volume}" already has a snapshot "${name}"`);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(name)) throw new EngineError('InvalidArgument', `snapshot name ${JSON.stringify(name)} must be 1-253 letters, digits, '.', '_' or '-'`);
  }
}
