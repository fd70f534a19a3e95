// The cluster storage backend: the Backend interface on an etcd v3 cluster. etcd already is the model the
// interface was written after — one global revision, compare-and-swap transactions, watch from a revision — so
// this is a thin mapping:
//
//   object key          <prefix><Kind>/<namespace>/<name>
//   object value        the object's JSON without metadata.resourceVersion (that is the key's mod_revision)
//   resourceVersion     etcd's mod_revision of the key; a list's resourceVersion is the header revision
//   create              txn: create_revision(key) == 0 → put
//   update / delete     txn: mod_revision(key) == expected → put / delete; else read the key to say why
//   watch               etcd watch from afterRev+1 with the previous value (a delete's object), 410 past compaction
//
// Reads are linearizable (they go through the raft leader). When no quorum is reachable they fall back to the
// member's own (serializable) copy and the backend says so (`stale()`), so the API can warn that what it shows
// may be old; writes are refused as Unavailable (HTTP 503). History is compacted on a schedule (Kubernetes does
// the same every 5 minutes): each tick compacts to the revision seen at the previous tick, so a watcher has at
// least one interval to resume from.

import { circuitBreaker, ConsecutiveBreaker, handleWhen } from 'cockatiel';
import { Etcd3, GRPCDeadlineExceededError, isRecoverableError, type IKeyValue, type IOptions, type Watcher } from 'etcd3';
import type { KubeObject } from '../../api/meta.js';
import { StoreError } from '../errors.js';
import { EventQueue } from '../sqlite/event-queue.js';
import type { Backend, BackendEntry, BackendEvent } from '../types.js';
import { fromEtcdError, isCompacted, isWatchCanceled } from './errors.js';

export interface EtcdBackendOptions {
  /** Client URLs of the etcd members, e.g. http://127.0.0.1:2379. */
  endpoints: string[];
  /** Key prefix of every object (several clusters can share one etcd). */
  prefix?: string;
  /** Deadline of one unary call (a write without quorum fails after this instead of hanging). */
  callTimeoutMs?: number;
  /** How often history is compacted; 0 turns compaction off (the tests that need history). */
  compactIntervalMs?: number;
  /** Max events buffered for one live watcher before it is ended (the client re-watches from its last version). */
  watcherBuffer?: number;
}

/** A fence: writes succeed only while `key` still has this create revision (the leader's election key). */
export interface Fence {
  key: string;
  createRevision: string;
}

export const DEFAULT_PREFIX = '/stratum/registry/';

/** How long a read waits for a fresh answer while the last one was stale. */
const STALE_PROBE_MS = 1000;

export class EtcdBackend implements Backend {
  readonly client: Etcd3;
  readonly #options: IOptions;
  /** The client of stale reads, made on the first one (see #read). */
  #staleClient: Etcd3 | undefined;
  readonly #prefix: string;
  readonly #watcherBuffer: number;
  readonly #compactTimer: NodeJS.Timeout | undefined;
  #fence: (() => Fence | undefined) | undefined;
  #lastTickRev = 0;
  #staleSince: number | undefined;
  #closed = false;

  constructor(opts: EtcdBackendOptions) {
    const callTimeout = opts.callTimeoutMs ?? 5000;
    const options: IOptions = {
      hosts: opts.endpoints,
      dialTimeout: callTimeout,
      // Unary calls get a deadline (streams — watches, lease keep-alives — must not): without quorum etcd would
      // otherwise hold a write for its own, longer, request timeout.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeout }),
      faultHandling: {
        // A member is skipped for a second after it refused connections twice. The library's default also counts
        // deadlines, which without quorum trips the breaker of the one member still up and leaves no member to
        // read from at all.
        host: () => circuitBreaker(handleWhen((e) => isRecoverableError(e) && !isDeadline(e)), {
          halfOpenAfter: 1000,
          breaker: new ConsecutiveBreaker(2),
        }),
      },
    };
    this.client = new Etcd3(options);
    this.#options = options;
    this.#prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.#watcherBuffer = opts.watcherBuffer ?? 50_000;
    const interval = opts.compactIntervalMs ?? 5 * 60_000;
    if (interval > 0) {
      this.#compactTimer = setInterval(() => void this.compactTick().catch(() => undefined), interval);
      this.#compactTimer.unref();
    }
  }

  /**
   * Makes every later write conditional on the fence (see src/manager/leader-election.ts): a deposed leader's
   * in-flight write then fails in etcd itself, whatever the clocks did.
   */
  setFence(fence: (() => Fence | undefined) | undefined): void {
    this.#fence = fence;
  }

  /** True while the last read could only be served from one member's possibly old copy (no quorum). */
  stale(): boolean {
    return this.#staleSince !== undefined;
  }

  async get(key: string): Promise<BackendEntry | undefined> {
    const kvs = await this.#read(`get ${key}`, (client, serializable, options) =>
      client.get(this.#prefix + key).serializable(serializable).options(options).exec().then((r) => ({ kvs: r.kvs, rev: 0 })),
    );
    const kv = kvs.kvs[0];
    return kv ? this.#entry(kv) : undefined;
  }

  async list(prefix: string): Promise<{ entries: BackendEntry[]; rev: number }> {
    const res = await this.#read(`list ${prefix}`, (client, serializable, options) =>
      client.getAll().prefix(this.#prefix + prefix).serializable(serializable).options(options).exec()
        .then((r) => ({ kvs: r.kvs, rev: Number(r.header.revision) })),
    );
    return { entries: res.kvs.map((kv) => this.#entry(kv)), rev: res.rev };
  }

  async create(key: string, build: (rev: number) => KubeObject): Promise<BackendEntry> {
    const full = this.#prefix + key;
    const res = await this.#txn(`create ${key}`, [['Create', full, 0]], [this.client.put(full).value(encode(build(0)))], []);
    if (!res.ok) throw this.#fenceOr(res, new StoreError('AlreadyExists', `${key} already exists`));
    return { key, rev: res.rev, value: build(res.rev) };
  }

  async update(key: string, expectedRev: number, build: (rev: number) => KubeObject): Promise<BackendEntry> {
    const full = this.#prefix + key;
    const res = await this.#txn(`update ${key}`, [['Mod', full, expectedRev]], [this.client.put(full).value(encode(build(0)))], [this.client.get(full)]);
    if (!res.ok) throw this.#fenceOr(res, this.#whyNot(key, res.failed));
    return { key, rev: res.rev, value: build(res.rev) };
  }

  async delete(key: string, expectedRev: number, build: (rev: number) => KubeObject): Promise<BackendEntry> {
    const full = this.#prefix + key;
    let expected = expectedRev;
    // The object's last state differs from what is stored when the delete comes from removing the last
    // finalizer: store that state first (a MODIFIED event), then delete it, as Kubernetes does.
    const stored = await this.get(key);
    if (stored && stored.rev === expectedRev && encode(stored.value) !== encode(build(0))) {
      expected = (await this.update(key, expectedRev, build)).rev;
    }
    const res = await this.#txn(`delete ${key}`, [['Mod', full, expected]], [this.client.delete().key(full)], [this.client.get(full)]);
    if (!res.ok) throw this.#fenceOr(res, this.#whyNot(key, res.failed));
    return { key, rev: res.rev, value: build(res.rev) };
  }

  async *watch(prefix: string, afterRev: number, signal: AbortSignal): AsyncIterable<BackendEvent> {
    const queue = new EventQueue<BackendEvent>(this.#watcherBuffer);
    let last = afterRev;
    // Handlers go on before the watch is sent: etcd can answer "created" and "canceled" in one read, and both
    // events would fire before an `await create()` returned.
    const watcher: Watcher = this.client.watch().prefix(this.#prefix + prefix).withPreviousKV()
      .startRevision(String(afterRev + 1)).watcher();
    // Where the client re-creates the watch after a reconnect. The library moves it to the "created" answer's header
    // revision, which is etcd's current revision, before the events from our start revision up to it have arrived:
    // a second reconnect in that window would skip them. Only an answer carrying events moves it (to its header
    // revision, up to which etcd has sent everything).
    let resumeFrom = String(afterRev + 1);
    watcher.on('connected', () => {
      watcher.request.start_revision = resumeFrom;
    });
    // Runs after the library's own handler, which has just moved start_revision to the answer's header revision.
    watcher.on('data', () => {
      resumeFrom = String(watcher.request.start_revision ?? resumeFrom);
    });
    const push = (ev: BackendEvent) => {
      // The client re-creates the watch after a member restart from its last seen revision: drop anything we
      // already delivered, so every event is seen exactly once.
      if (ev.rev <= last) return;
      last = ev.rev;
      if (!queue.push(ev)) {
        queue.fail(new StoreError('Gone', 'watch ended: the client is too slow to keep up; re-watch'));
        void watcher.cancel().catch(() => undefined);
      }
    };
    watcher.on('put', (kv) => push({
      type: 'put',
      created: kv.create_revision === kv.mod_revision,
      key: this.#key(kv),
      rev: Number(kv.mod_revision),
      value: decode(kv.value),
    }));
    watcher.on('delete', (kv, prev) => {
      const rev = Number(kv.mod_revision);
      const value = prev ? decode(prev.value) : ({ kind: '', metadata: {} } as KubeObject);
      push({ type: 'delete', created: false, key: this.#key(kv), rev, value });
    });
    let failed = false;
    watcher.on('error', (err) => {
      failed = true;
      queue.fail(isWatchCanceled(err) ? gone(afterRev, err) : fromEtcdError(err, `watch ${prefix}`));
    });
    const onAbort = () => queue.end();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const ev of queue) yield ev;
    } finally {
      signal.removeEventListener('abort', onAbort);
      // A watch etcd canceled is gone from the client already; cancelling it again would wait forever.
      if (!failed) await watcher.cancel().catch(() => undefined);
    }
  }

  async currentRev(): Promise<number> {
    return (await this.list('\u0000none/')).rev;
  }

  /** One compaction step: compacts to the revision seen at the previous step. */
  async compactTick(): Promise<void> {
    const target = this.#lastTickRev;
    this.#lastTickRev = await this.currentRev();
    if (target <= 0) return;
    try {
      await this.client.kv.compact({ revision: String(target) });
    } catch (err) {
      // Another manager compacted past this already: nothing to do.
      if (!isCompacted(err)) throw fromEtcdError(err, 'compact');
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#compactTimer) clearInterval(this.#compactTimer);
    this.client.close();
    this.#staleClient?.close();
  }

  async #read<T>(what: string, fn: (client: Etcd3, serializable: boolean, options: { deadline: number } | undefined) => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError('Internal', 'store is closed');
    try {
      // While there is no quorum, each read still tries for a fresh answer first, but only briefly: waiting the
      // full call timeout every time would make every read take that long.
      const out = await fn(this.client, false, this.#staleSince !== undefined ? { deadline: Date.now() + STALE_PROBE_MS } : undefined);
      this.#staleSince = undefined;
      return out;
    } catch (err) {
      const mapped = fromEtcdError(err, what);
      if (mapped.code !== 'Unavailable') throw mapped;
      // No quorum: one member's copy is better than nothing for reads, as long as we say so. The client picks a
      // member per call and avoids ones that just failed, so a few tries find the one still up. Stale reads go
      // through a client of their own: the main client closes every channel to a member whose call failed with
      // a retryable error — and without quorum every linearizable read and write fails that way on the member
      // still up — which broke the stale reads in flight on that member and tripped its circuit breaker.
      this.#staleClient ??= new Etcd3(this.#options);
      let last = mapped;
      for (let attempt = 0; attempt < 6; attempt++) {
        try {
          const out = await fn(this.#staleClient, true, undefined);
          this.#staleSince ??= Date.now();
          return out;
        } catch (again) {
          last = fromEtcdError(again, `${what} (from one member)`);
          if (last.code !== 'Unavailable') throw mapped;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new StoreError('Unavailable', `${mapped.message}; no member could answer on its own either: ${last.message}`, { cause: mapped });
    }
  }

  async #txn(
    what: string,
    compares: [column: 'Create' | 'Mod', key: string, value: number][],
    then: Parameters<ReturnType<Etcd3['if']>['then']>,
    otherwise: Parameters<ReturnType<Etcd3['if']>['else']>,
  ): Promise<{ ok: true; rev: number } | { ok: false; rev: number; failed: IKeyValue | undefined; fenced: boolean }> {
    if (this.#closed) throw new StoreError('Internal', 'store is closed');
    const [first, ...rest] = compares;
    if (!first) throw new StoreError('Internal', 'a transaction needs a comparison');
    let txn = this.client.if(first[1], first[0], '==', first[2]);
    for (const c of rest) txn = txn.and(c[1], c[0], '==', c[2]);
    const fence = this.#fence?.();
    if (this.#fence && !fence) throw notLeader();
    if (fence) txn = txn.and(fence.key, 'Create', '==', fence.createRevision);
    try {
      const res = await txn.then(...then).else(...otherwise, ...(fence ? [this.client.get(fence.key)] : [])).commit();
      const rev = Number(res.header.revision);
      if (res.succeeded) return { ok: true, rev };
      const kvs = res.responses.map((r) => r.response_range?.kvs?.[0]);
      const fenced = fence !== undefined && kvs[kvs.length - 1]?.create_revision !== fence.createRevision;
      return { ok: false, rev, failed: otherwise.length > 0 ? kvs[0] : undefined, fenced };
    } catch (err) {
      throw fromEtcdError(err, what);
    }
  }

  #fenceOr(res: { fenced: boolean }, err: StoreError): StoreError {
    return res.fenced ? notLeader() : err;
  }

  #whyNot(key: string, current: IKeyValue | undefined): StoreError {
    if (!current) return new StoreError('NotFound', `${key} not found`);
    return new StoreError(
      'Conflict',
      `Operation cannot be fulfilled on ${key}: the object has been modified (current resourceVersion is ` +
        `${current.mod_revision}); please apply your changes to the latest version and try again`,
    );
  }

  #key(kv: IKeyValue): string {
    return kv.key.toString().slice(this.#prefix.length);
  }

  #entry(kv: IKeyValue): BackendEntry {
    const rev = Number(kv.mod_revision);
    const value = decode(kv.value);
    return { key: this.#key(kv), rev, value };
  }
}

function isDeadline(e: Error): boolean {
  return e instanceof GRPCDeadlineExceededError || /DEADLINE_EXCEEDED/.test(e.message);
}

function gone(afterRev: number, cause: unknown): StoreError {
  return new StoreError('Gone', `too old resource version: ${afterRev} (history was compacted); re-list and watch again`, { cause });
}

function notLeader(): StoreError {
  return new StoreError('Unavailable', 'this manager is no longer the leader: its controllers may not write');
}

function encode(obj: KubeObject): string {
  const { resourceVersion: _rv, ...meta } = obj.metadata ?? {};
  return JSON.stringify({ ...obj, metadata: meta });
}

function decode(value: Buffer): KubeObject {
  return JSON.parse(value.toString()) as KubeObject;
}
