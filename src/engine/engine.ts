// Engine: a volume's controller. It is a BlockDevice (the NBD frontend serves it) over N replicas: writes, trims
// and flushes go to every replica in RW or WO mode and complete when all of them answered; reads go to one RW
// replica (the one in this process while it is RW, else round-robin) and move to the next when one fails. A
// replica that fails or times out is marked ERR and dropped; I/O continues on the others and succeeds while one RW
// replica acknowledged it, otherwise it fails with EIO (ENOSPC when every replica was full). Rebuild (rebuild.ts) brings a new WO replica up to RW.
//
// Write ordering: every mutation takes the range lock (shared) synchronously on entry, then sends to all replicas
// in one synchronous loop. The NBD server hands requests over in arrival order, so overlapping writes reach every
// replica in the same order and the replicas (which apply overlapping requests in arrival order) agree.

import { isImageDataError, isReplicaError, RangeLock, replicaProtocol, WireStatus, type ReplicaInfo } from '../replica/index.js';
import type { BlockDevice } from '../frontend/nbd/index.js';
import { EngineError, NBD_EIO, NBD_EINVAL, NBD_ENOSPC } from './errors.js';
import { runRebuild, type RebuildMember } from './rebuild.js';
import { SnapshotOps, type CreateSnapshotOptions } from './snapshots.js';
import type { SnapshotInfo } from '../replica/index.js';
import type { EngineStatus, RebuildStatus, ReplicaBackend, ReplicaMode, ReplicaStatus } from './types.js';

export interface EngineReplicaSpec {
  name: string;
  backend: ReplicaBackend;
  /** 'WO' for a replica that is to be rebuilt; default RW (subject to the revision check). */
  mode?: 'RW' | 'WO';
}

export interface EngineOptions {
  /** Volume name (status, messages). */
  volume: string;
  /** Volume size; replicas of another size are refused. Default: the first replica that answers. */
  size?: number;
  replicas: EngineReplicaSpec[];
  /** Ping every replica this often; a failed ping marks it ERR (default 2000 ms; 0 disables). */
  pingIntervalMs?: number;
  /** Timeout of those pings (default 4000 ms). */
  pingTimeoutMs?: number;
  /** Rebuild copy window (default 4 MiB). */
  rebuildChunkBytes?: number;
  /** Called after every replica mode change and rebuild progress step. */
  onChange?: (status: EngineStatus) => void;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

class Member implements RebuildMember {
  readonly name: string;
  readonly backend: ReplicaBackend;
  readonly revision: number;
  mode: ReplicaMode;
  error: string | undefined;
  since = new Date();

  constructor(name: string, backend: ReplicaBackend, mode: ReplicaMode, revision: number, error?: string) {
    this.name = name;
    this.backend = backend;
    this.mode = mode;
    this.revision = revision;
    this.error = error;
  }
}

type Signal = { signal?: AbortSignal | undefined };

const MAX_IO = replicaProtocol.MAX_IO;

function sameVolume(a: ReplicaInfo, size: number, blockSize: number, backing: ReplicaInfo['backing']): string | undefined {
  if (a.size !== size) return `size ${a.size} differs from the volume's ${size}`;
  if (a.blockSize !== blockSize) return `block size ${a.blockSize} differs from ${blockSize}`;
  const b = a.backing;
  if ((b === null) !== (backing === null) || (b && backing && (b.name !== backing.name || b.uuid !== backing.uuid))) {
    return `backing image ${b ? `${b.name}-${b.uuid}` : 'none'} differs from ${backing ? `${backing.name}-${backing.uuid}` : 'none'}`;
  }
  return undefined;
}

export class Engine implements BlockDevice {
  readonly volume: string;
  readonly size: number;
  readonly blockSize: number;
  readonly backing: ReplicaInfo['backing'];
  readonly readOnly = false;
  /** Flush goes to every replica and each replica flushes everything it acknowledged: it covers all connections. */
  readonly multiConn = true;
  readonly #members = new Map<string, Member>();
  readonly #lock = new RangeLock();
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #opts: EngineOptions;
  readonly #log: (line: string) => void;
  #nextReader = 0;
  /** The RW members, for #pickReader; undefined when it must be recomputed. */
  #readers: Member[] | undefined;
  /** The members a mutation goes to (all but ERR), remote ones first; undefined when it must be recomputed. */
  #writers: { targets: Member[]; anyRemote: boolean } | undefined;
  #rebuild: RebuildStatus | undefined;
  #rebuildAbort: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closing = false;
  readonly #snapshots: SnapshotOps;

  private constructor(opts: EngineOptions, size: number, blockSize: number, backing: ReplicaInfo['backing'], members: Member[]) {
    this.volume = opts.volume;
    this.size = size;
    this.blockSize = blockSize;
    this.backing = backing;
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
    for (const m of members) this.#adopt(m);
    this.#snapshots = new SnapshotOps({
      volume: this.volume,
      size,
      blockSize,
      lock: this.#lock,
      members: () => [...this.#members.values()],
      fail: (m, err, what) => this.#fail(m as Member, err, what),
      rebuilding: () => (this.#rebuild?.state === 'running' ? this.#rebuild.replica : [...this.#members.values()].find((m) => m.mode === 'WO')?.name),
      changed: () => this.#changed(),
      log: (line) => this.#log(line),
    });
    const every = opts.pingIntervalMs ?? 2000;
    if (every > 0) this.#timer = setInterval(() => this.#pingAll(), every).unref();
  }

  /**
   * Connect the replicas: ask each for its info; those that do not answer, do not match the volume, or are behind
   * the highest revision (they missed writes) start as ERR. At least one must end up RW.
   */
  static async start(opts: EngineOptions): Promise<Engine> {
    const names = new Set(opts.replicas.map((r) => r.name));
    if (opts.replicas.length === 0 || names.size !== opts.replicas.length) {
      throw new EngineError('InvalidArgument', `Cannot start engine for volume "${opts.volume}": replicas must be given, with distinct names`);
    }
    const answers = await Promise.allSettled(opts.replicas.map((r) => r.backend.info({ signal: opts.signal })));
    opts.signal?.throwIfAborted();
    const infos = answers.map((a) => (a.status === 'fulfilled' ? a.value : undefined));
    const ref = infos.find((i) => i !== undefined);
    if (!ref) {
      for (const r of opts.replicas) r.backend.destroy();
      throw new EngineError('NoHealthyReplica', `Cannot start engine for volume "${opts.volume}": no replica answered`, { nbdErrno: NBD_EIO });
    }
    const size = opts.size ?? ref.size;
    const mismatch = infos.map((i) => i && sameVolume(i, size, ref.blockSize, ref.backing));
    const top = Math.max(...infos.map((i, k) => (i && !mismatch[k] && opts.replicas[k]!.mode !== 'WO' ? i.revision : -1)));
    const members = opts.replicas.map((r, k) => {
      const info = infos[k];
      const answer = answers[k]!;
      if (!info) return new Member(r.name, r.backend, 'ERR', 0, `no answer: ${(answer as PromiseRejectedResult).reason}`);
      if (mismatch[k]) return new Member(r.name, r.backend, 'ERR', info.revision, `does not belong to the volume: ${mismatch[k]}`);
      if (r.mode === 'WO') return new Member(r.name, r.backend, 'WO', info.revision);
      if (info.revision < top) return new Member(r.name, r.backend, 'ERR', info.revision, `revision ${info.revision} is behind ${top}: it missed writes`);
      return new Member(r.name, r.backend, 'RW', info.revision);
    });
    if (!members.some((m) => m.mode === 'RW')) {
      for (const r of opts.replicas) r.backend.destroy();
      const why = members.map((m) => `${m.name}: ${m.error ?? m.mode}`).join('; ');
      throw new EngineError('NoHealthyReplica', `Cannot start engine for volume "${opts.volume}": no replica can be RW (${why})`, { nbdErrno: NBD_EIO });
    }
    for (const m of members) if (m.mode === 'ERR') m.backend.destroy();
    return new Engine(opts, size, ref.blockSize, ref.backing, members);
  }

  status(): EngineStatus {
    const replicas: ReplicaStatus[] = [...this.#members.values()].map((m) => ({
      name: m.name,
      address: m.backend.address,
      mode: m.mode,
      revision: m.revision,
      ...(m.error === undefined ? {} : { error: m.error }),
      since: m.since.toISOString(),
    }));
    const rw = replicas.filter((r) => r.mode === 'RW').length;
    const state = rw === 0 ? 'faulted' : rw === replicas.length ? 'healthy' : 'degraded';
    return { volume: this.volume, size: this.size, blockSize: this.blockSize, state, replicas, ...(this.#rebuild ? { rebuild: { ...this.#rebuild } } : {}) };
  }

  read(offset: number, length: number, { signal }: Signal = {}): Promise<Uint8Array> {
    const bad = this.#checkRange('read', offset, length, MAX_IO);
    if (bad) return Promise.reject(bad);
    return this.#track('read', async () => {
      // Replicas that could not decode the backing image's bytes here: every replica over the same image meets the
      // same error, so they are marked ERR only if another replica reads the range (then their copy is bad).
      let unreadable: { m: Member; err: unknown }[] | undefined;
      for (;;) {
        // A failed reader is marked ERR, so the next pick skips it; only those that could not decode the image are
        // remembered, since they stay RW.
        const m = unreadable ? this.#untried(unreadable) : this.#pickReader();
        if (!m && unreadable) throw this.#imageUnreadable(`read ${offset}+${length}`, unreadable[0]!.err);
        if (!m) throw this.#faulted('read', []);
        try {
          const data = await m.backend.read(offset, length, { signal });
          for (const u of unreadable ?? []) this.#fail(u.m, u.err, 'read');
          return data;
        } catch (err) {
          if (signal?.aborted) throw signal.reason;
          if (isImageDataError(err)) (unreadable ??= []).push({ m, err });
          else this.#fail(m, err, 'read');
        }
      }
    });
  }

  write(offset: number, data: Uint8Array, { fua, signal }: { fua: boolean } & Signal): Promise<void> {
    return this.#mutate('write', offset, data.byteLength, signal, (b, deferred) => b.write(offset, data, { fua, deferred }));
  }

  trim(offset: number, length: number, { fua, signal }: { fua: boolean } & Signal): Promise<void> {
    return this.#mutate('trim', offset, length, signal, (b, deferred) => b.trim(offset, length, { fua, deferred }));
  }

  writeZeroes(offset: number, length: number, { fua, signal }: { fua: boolean; noHole?: boolean } & Signal): Promise<void> {
    return this.#mutate('write zeroes', offset, length, signal, (b, deferred) => b.writeZeroes(offset, length, { fua, deferred }));
  }

  flush({ signal }: Signal = {}): Promise<void> {
    return this.#track('flush', async () => {
      signal?.throwIfAborted();
      await this.#fanOut('flush', (b, deferred) => b.flush({ deferred }));
    });
  }

  /** Add a replica in WO mode (it must match the volume); `rebuild` then brings it to RW. Takes the backend. */
  async addReplica(name: string, backend: ReplicaBackend, { signal }: Signal = {}): Promise<void> {
    try {
      this.#checkOpen(`add replica "${name}"`);
      if (this.#members.has(name)) throw new EngineError('ReplicaExists', `Cannot add replica "${name}" to volume "${this.volume}": it is already there`);
      const info = await backend.info({ signal });
      const mismatch = sameVolume(info, this.size, this.blockSize, this.backing);
      if (mismatch) throw new EngineError('ReplicaMismatch', `Cannot add replica "${name}" to volume "${this.volume}": ${mismatch}`);
      if (this.#members.has(name)) throw new EngineError('ReplicaExists', `Cannot add replica "${name}" to volume "${this.volume}": it is already there`);
      this.#adopt(new Member(name, backend, 'WO', info.revision));
    } catch (err) {
      backend.destroy();
      throw err;
    }
    this.#log(`engine ${this.volume}: replica ${name} at ${backend.address} added in WO mode`);
    this.#changed();
  }

  /** Copy the written extents of an RW replica to WO replica `name`, then make it RW. One rebuild at a time. */
  async rebuild(name: string, { signal }: Signal = {}): Promise<RebuildStatus> {
    this.#checkOpen(`rebuild replica "${name}"`);
    const target = this.#member(name);
    if (target.mode !== 'WO') throw new EngineError('InvalidState', `Cannot rebuild replica "${name}": it is ${target.mode}, not WO`);
    if (this.#rebuild?.state === 'running') throw new EngineError('RebuildRunning', `Cannot rebuild replica "${name}": replica "${this.#rebuild.replica}" is being rebuilt`);
    const abort = new AbortController();
    this.#rebuildAbort = abort;
    const progress: RebuildStatus = { replica: name, source: '', state: 'running', startedAt: new Date().toISOString(), bytesListed: 0, bytesCopied: 0, zeroBytes: 0, chunks: 0 };
    this.#rebuild = progress;
    this.#log(`engine ${this.volume}: rebuilding replica ${name}`);
    const combined = signal ? AbortSignal.any([signal, abort.signal]) : abort.signal;
    try {
      // A snapshot operation that began before the replica was added finishes first: the copy needs a still chain.
      await this.#snapshots.idle();
      await runRebuild(
        {
          size: this.size,
          blockSize: this.blockSize,
          lock: this.#lock,
          chunkBytes: this.#opts.rebuildChunkBytes ?? 4 * 1024 * 1024,
          target,
          pickSource: (exclude) => [...this.#members.values()].find((m) => m.mode === 'RW' && !exclude.has(m)),
          fail: (m, err, what) => this.#fail(m as Member, err, what),
          promote: () => this.#setMode(target, 'RW'),
          changed: () => this.#changed(),
        },
        progress,
        combined,
      );
      progress.state = 'complete';
      this.#log(`engine ${this.volume}: replica ${name} rebuilt from ${progress.source}: ${progress.bytesCopied} data bytes copied, ${progress.zeroBytes} zero bytes, of ${progress.bytesListed} written`);
      return { ...progress };
    } catch (err) {
      progress.state = 'failed';
      progress.error = err instanceof Error ? err.message : String(err);
      if (target.mode === 'WO') this.#fail(target, err, 'rebuild');
      throw new EngineError('RebuildFailed', `Rebuild of replica "${name}" failed: ${progress.error}`, { cause: err });
    } finally {
      progress.finishedAt = new Date().toISOString();
      if (this.#rebuildAbort === abort) this.#rebuildAbort = undefined;
      this.#changed();
    }
  }

  /** Snapshot every replica, crash-consistently (snapshots.ts); returns the snapshot's name. Watchers hear of every change. */
  snapshotCreate(opts: CreateSnapshotOptions = {}): Promise<string> {
    return this.#track('create snapshot', () => this.#snapshots.create(opts).finally(() => this.#changed()));
  }

  snapshotList(): Promise<SnapshotInfo[]> {
    return this.#track('list snapshots', () => this.#snapshots.list());
  }

  snapshotDelete(name: string): Promise<void> {
    return this.#track('delete snapshot', () => this.#snapshots.delete(name).finally(() => this.#changed()));
  }

  snapshotRevert(name: string): Promise<void> {
    return this.#track('revert snapshot', () => this.#snapshots.revert(name).finally(() => this.#changed()));
  }

  snapshotPurge(): Promise<string[]> {
    return this.#track('purge snapshots', () => this.#snapshots.purge().finally(() => this.#changed()));
  }

  /** Drop a replica from the volume (an ERR one, or any but the last RW). Its connection is closed. */
  async removeReplica(name: string): Promise<void> {
    const m = this.#member(name);
    const rw = [...this.#members.values()].filter((x) => x.mode === 'RW');
    if (m.mode === 'RW' && rw.length === 1) throw new EngineError('InvalidState', `Cannot remove replica "${name}": it is the last RW replica of volume "${this.volume}"`);
    if (this.#rebuild?.state === 'running' && this.#rebuild.replica === name) this.#rebuildAbort?.abort(new EngineError('InvalidState', `replica "${name}" was removed`));
    this.#members.delete(name);
    this.#readers = this.#writers = undefined;
    m.mode = 'ERR';
    m.error = 'removed';
    this.#log(`engine ${this.volume}: replica ${name} removed`);
    this.#changed();
    await Promise.race([m.backend.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
    m.backend.destroy();
  }

  /** Graceful: wait for I/O in flight, flush the replicas, close their connections. */
  async close({ signal }: Signal = {}): Promise<void> {
    this.#closing = true;
    clearInterval(this.#timer);
    this.#rebuildAbort?.abort(new EngineError('Closed', `engine for volume "${this.volume}" is closing`));
    const onAbort = (): void => this.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.allSettled([...this.#inFlight]);
      const live = [...this.#members.values()].filter((m) => m.mode !== 'ERR');
      await Promise.allSettled(live.map((m) => m.backend.flush()));
      await Promise.allSettled(live.map((m) => m.backend.close()));
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Abrupt: drop every replica connection; I/O in flight fails. */
  destroy(err?: Error): void {
    this.#closing = true;
    clearInterval(this.#timer);
    this.#rebuildAbort?.abort(err ?? new EngineError('Closed', `engine for volume "${this.volume}" destroyed`));
    for (const m of this.#members.values()) m.backend.destroy(err);
  }

  #mutate(what: string, offset: number, length: number, signal: AbortSignal | undefined, send: Send): Promise<void> {
    if (this.#closing) return Promise.reject(new EngineError('Closed', `Cannot ${what} on volume "${this.volume}": the engine is closed`));
    // A bad request is refused before any replica sees it: it must never get a healthy replica marked ERR.
    const bad = this.#checkRange(what, offset, length, what === 'write' ? MAX_IO : 0xffff_ffff);
    if (bad) return Promise.reject(bad);
    // Registered synchronously: see the write-ordering note at the top.
    const locked = this.#lock.acquire(Math.floor(offset / this.blockSize), Math.ceil((offset + length) / this.blockSize), 'shared', { signal });
    return this.#track(what, async () => {
      const release = await locked;
      try {
        // The caller's signal stops nothing once sent: a write aborted on some replicas and not others would leave
        // them disagreeing. Each request still has its own timeout.
        await this.#fanOut(what, send);
      } finally {
        release();
      }
    });
  }

  /**
   * Send to every RW and WO replica; mark failures ERR; succeed when one RW replica acknowledged. Remote replicas
   * first, and the replica in this process told so (`deferred`): it runs its part once their requests left
   * (local-replica.ts).
   */
  async #fanOut(what: string, send: Send): Promise<void> {
    const { targets, anyRemote } = (this.#writers ??= writers([...this.#members.values()].filter((m) => m.mode !== 'ERR')));
    const results = await Promise.allSettled(targets.map((m) => send(m.backend, anyRemote)));
    const errors: unknown[] = [];
    // A partial-block write merges with the backing image's bytes: where those cannot be decoded, every replica
    // over the image fails alike and none applied it, so they are marked ERR only if another one acknowledged.
    const unreadable: { m: Member; err: unknown }[] = [];
    let acked = 0;
    results.forEach((r, i) => {
      const m = targets[i]!;
      if (r.status === 'rejected') {
        errors.push(r.reason);
        if (isImageDataError(r.reason)) unreadable.push({ m, err: r.reason });
        else this.#fail(m, r.reason, what);
      } else if (m.mode === 'RW') acked++;
    });
    if (acked > 0) for (const u of unreadable) this.#fail(u.m, u.err, what);
    else if (unreadable.length > 0) throw this.#imageUnreadable(what, unreadable[0]!.err);
    if (acked === 0) throw this.#faulted(what, errors);
  }

  #faulted(what: string, errors: unknown[]): EngineError {
    const full = errors.length > 0 && errors.every((e) => isReplicaError(e, 'Remote') && e.status === WireStatus.ENOSPC);
    const why = errors.length > 0 ? `: ${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}` : '';
    return new EngineError('NoHealthyReplica', `Cannot ${what} on volume "${this.volume}": no RW replica left${why}`, { nbdErrno: full ? NBD_ENOSPC : NBD_EIO, cause: errors[0] });
  }

  #pickReader(): Member | undefined {
    // Rebuilt only when a mode or the member set changed: this runs once per read. An RW replica in this process
    // serves every read while it is RW (no socket, no copy through the kernel; the others are on other nodes);
    // without one, reads go round-robin over the RW replicas.
    const rw = (this.#readers ??= preferLocal([...this.#members.values()].filter((m) => m.mode === 'RW')));
    if (rw.length === 0) return undefined;
    this.#nextReader = (this.#nextReader + 1) % 1_000_000;
    return rw[this.#nextReader % rw.length];
  }

  /** An RW replica not among `tried`: after a read that could not decode the image, any other may still read it. */
  #untried(tried: readonly { m: Member }[]): Member | undefined {
    return [...this.#members.values()].find((m) => m.mode === 'RW' && !tried.some((t) => t.m === m));
  }

  #imageUnreadable(what: string, err: unknown): EngineError {
    const why = err instanceof Error ? err.message : String(err);
    return new EngineError('ImageUnreadable', `Cannot ${what} on volume "${this.volume}": no replica can decode its backing image there (${why}); the replicas stay RW`, { nbdErrno: NBD_EIO, cause: err });
  }

  #fail(m: Member, err: unknown, what: string): void {
    if (m.mode === 'ERR') return;
    const from = m.mode;
    m.error = `${what} failed: ${err instanceof Error ? err.message : String(err)}`;
    this.#setMode(m, 'ERR');
    this.#log(`engine ${this.volume}: replica ${m.name} ${from} → ERR: ${m.error}`);
    m.backend.destroy();
  }

  #setMode(m: Member, mode: ReplicaMode): void {
    m.mode = mode;
    this.#readers = this.#writers = undefined;
    m.since = new Date();
    if (mode === 'RW') m.error = undefined;
    this.#changed();
  }

  #adopt(m: Member): void {
    this.#members.set(m.name, m);
    this.#readers = this.#writers = undefined;
    void m.backend.closed.then(() => {
      if (!this.#closing && this.#members.get(m.name) === m) this.#fail(m, new Error(`connection to ${m.backend.address} closed`), 'connection');
    });
  }

  #pingAll(): void {
    const timeoutMs = this.#opts.pingTimeoutMs ?? 4000;
    for (const m of this.#members.values()) {
      if (m.mode !== 'ERR') m.backend.ping({ timeoutMs }).catch((err: unknown) => this.#fail(m, err, 'ping'));
    }
  }

  #track<T>(what: string, op: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new EngineError('Closed', `Cannot ${what} on volume "${this.volume}": the engine is closed`));
    const p = op();
    this.#inFlight.add(p);
    const done = (): void => void this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  #checkRange(what: string, offset: number, length: number, max: number): EngineError | undefined {
    const ok = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && length <= max && offset + length <= this.size;
    if (ok) return undefined;
    return new EngineError('InvalidArgument', `Cannot ${what} ${offset}+${length} on volume "${this.volume}": outside the ${this.size}-byte volume or longer than ${max} bytes`, { nbdErrno: NBD_EINVAL });
  }

  #member(name: string): Member {
    const m = this.#members.get(name);
    if (!m) throw new EngineError('ReplicaUnknown', `Volume "${this.volume}" has no replica "${name}"`);
    return m;
  }

  #checkOpen(what: string): void {
    if (this.#closing) throw new EngineError('Closed', `Cannot ${what}: the engine for volume "${this.volume}" is closed`);
  }

  #changed(): void {
    this.#opts.onChange?.(this.status());
  }
}

/** Sends a mutation to one replica; `deferred`: it went to a remote replica first (MutationOptions). */
type Send = (b: ReplicaBackend, deferred: boolean) => Promise<void>;

/** The members on other nodes, then those in this process. */
function writers(members: Member[]): { targets: Member[]; anyRemote: boolean } {
  const remote = members.filter((m) => m.backend.local !== true);
  return { targets: [...remote, ...members.filter((m) => m.backend.local === true)], anyRemote: remote.length > 0 };
}

/** The members in this process, when there are any; else all of them. */
function preferLocal(rw: Member[]): Member[] {
  const local = rw.filter((m) => m.backend.local === true);
  return local.length > 0 ? local : rw;
}
