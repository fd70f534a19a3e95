// Test doubles for the controller kit: `MemoryStore`, a small in-memory implementation of the Store interface
// (resourceVersions from one global revision, watch from a version with history replay, Gone for a compacted
// version, finalizers), with hooks that real stores do not offer: compact history, break live watches, count
// calls and fail the next write. Kind-agnostic: no schemas, no defaults, namespace as given. Not for production.

import { randomUUID } from 'node:crypto';
import fastJsonPatch from 'fast-json-patch';
import type { KubeObject } from '../api/meta.js';
import { StoreError } from '../store/errors.js';
import type {
  DeleteOptions,
  DeleteResult,
  ListOptions,
  ListResult,
  PatchType,
  Store,
  WatchEvent,
  WatchOptions,
  WriteOptions,
  WriteResult,
} from '../store/types.js';

interface HistoryEntry {
  rev: number;
  kind: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
}

interface Watcher {
  kind: string;
  match: (obj: KubeObject) => boolean;
  events: WatchEvent[];
  wake: (() => void) | undefined;
  error: unknown;
}

export class MemoryStore implements Store {
  #rev = 0;
  /** Revisions up to and including this one are no longer in history. */
  #compacted = 0;
  readonly #objects = new Map<string, KubeObject>();
  #history: HistoryEntry[] = [];
  readonly #watchers = new Set<Watcher>();
  #failNext: { op: string; err: unknown }[] = [];
  /** Calls per method, for asserting that a client re-listed. */
  readonly calls = { get: 0, list: 0, create: 0, update: 0, patch: 0, delete: 0, watch: 0 };

  /** Forget history up to the current revision: watching from an older version now fails with Gone. */
  compact(): void {
    this.#compacted = this.#rev;
    this.#history = [];
  }

  /** Make every live watch throw `err` at its next step, dropping events it has not delivered yet. */
  breakWatches(err: unknown = new StoreError('Gone', 'watch expired')): void {
    for (const w of this.#watchers) {
      w.error = err;
      w.events = [];
      this.#watchers.delete(w);
      w.wake?.();
    }
  }

  /** Live watches. */
  watcherCount(): number {
    return this.#watchers.size;
  }

  /** Make the next call of `op` (`create`, `patch`, …) throw `err`. */
  failNext(op: keyof MemoryStore['calls'], err: unknown): void {
    this.#failNext.push({ op, err });
  }

  async get<T extends KubeObject>(kind: string, namespace: string, name: string): Promise<T> {
    this.#call('get');
    const obj = this.#objects.get(storeKey(kind, namespace, name));
    if (!obj) throw notFound(kind, name);
    return structuredClone(obj) as T;
  }

  async list<T extends KubeObject>(kind: string, opts: ListOptions = {}): Promise<ListResult<T>> {
    this.#call('list');
    const match = matcher(opts);
    const items = [...this.#objects.values()].filter((o) => o.kind === kind && match(o));
    return { items: items.map((o) => structuredClone(o) as T), resourceVersion: String(this.#rev) };
  }

  async create<T extends KubeObject>(input: T, opts: WriteOptions = {}): Promise<WriteResult<T>> {
    this.#call('create');
    const obj = structuredClone(input) as KubeObject;
    const meta = obj.metadata;
    if (!meta.name && meta.generateName) meta.name = meta.generateName + randomUUID().slice(0, 5);
    if (!meta.name) throw new StoreError('Invalid', `${input.kind} is invalid: metadata.name is required`);
    const key = storeKey(obj.kind, meta.namespace ?? '', meta.name);
    if (this.#objects.has(key)) throw new StoreError('AlreadyExists', `${obj.kind} "${meta.name}" already exists`);
    meta.uid = randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    meta.generation = 1;
    if (opts.dryRun) return { object: obj as T, warnings: [] };
    return { object: this.#commit(key, obj, 'ADDED') as T, warnings: [] };
  }

  async update<T extends KubeObject>(input: T, opts: WriteOptions = {}): Promise<WriteResult<T>> {
    this.#call('update');
    return { object: this.#replace(structuredClone(input) as KubeObject, opts) as T, warnings: [] };
  }

  async patch<T extends KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    type: PatchType,
    patch: unknown,
    opts: WriteOptions = {},
  ): Promise<WriteResult<T>> {
    this.#call('patch');
    const current = this.#objects.get(storeKey(kind, namespace, name));
    if (!current) throw notFound(kind, name);
    const base = structuredClone(current);
    const next =
      type === 'merge'
        ? (mergePatch(base, patch) as KubeObject)
        : fastJsonPatch.applyPatch(base, patch as fastJsonPatch.Operation[], true, false).newDocument;
    return { object: this.#replace(next, opts) as T, warnings: [] };
  }

  async delete<T extends KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    opts: DeleteOptions = {},
  ): Promise<DeleteResult<T>> {
    this.#call('delete');
    const key = storeKey(kind, namespace, name);
    const current = this.#objects.get(key);
    if (!current) throw notFound(kind, name);
    const pre = opts.preconditions;
    if ((pre?.uid && pre.uid !== current.metadata.uid) || (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion)) {
      throw new StoreError('Conflict', `${kind} "${name}": precondition failed`);
    }
    if (opts.dryRun) return { object: structuredClone(current) as T, deleted: true };
    if ((current.metadata.finalizers ?? []).length > 0) {
      if (current.metadata.deletionTimestamp) return { object: structuredClone(current) as T, deleted: false };
      const next = structuredClone(current);
      next.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      return { object: this.#commit(key, next, 'MODIFIED') as T, deleted: false };
    }
    return { object: this.#commit(key, structuredClone(current), 'DELETED') as T, deleted: true };
  }

  async *watch<T extends KubeObject>(kind: string, opts: WatchOptions): AsyncIterable<WatchEvent<T>> {
    this.#call('watch');
    // Everything up to registering the watcher is synchronous, so no commit can fall between replay and live.
    const w: Watcher = { kind, match: matcher(opts), events: [], wake: undefined, error: undefined };
    const rv = opts.resourceVersion;
    if (!rv || rv === '0') {
      for (const o of this.#objects.values()) {
        if (o.kind === kind && w.match(o)) w.events.push({ type: 'ADDED', object: structuredClone(o) });
      }
    } else {
      const after = Number(rv);
      if (after < this.#compacted) throw new StoreError('Gone', `too old resource version: ${rv} (compacted ${this.#compacted})`);
      for (const h of this.#history) {
        if (h.rev > after && h.kind === kind && w.match(h.object)) w.events.push({ type: h.type, object: structuredClone(h.object) });
      }
    }
    this.#watchers.add(w);
    const onAbort = (): void => w.wake?.();
    opts.signal.addEventListener('abort', onAbort);
    try {
      for (;;) {
        if (opts.signal.aborted) return;
        if (w.error !== undefined) throw w.error;
        const ev = w.events.shift();
        if (ev !== undefined) {
          yield ev as WatchEvent<T>;
          continue;
        }
        await new Promise<void>((resolve) => (w.wake = resolve));
        w.wake = undefined;
      }
    } finally {
      opts.signal.removeEventListener('abort', onAbort);
      this.#watchers.delete(w);
    }
  }

  #call(op: keyof MemoryStore['calls']): void {
    this.calls[op]++;
    const i = this.#failNext.findIndex((f) => f.op === op);
    if (i >= 0) {
      const [f] = this.#failNext.splice(i, 1);
      throw f?.err;
    }
  }

  #replace(next: KubeObject, opts: WriteOptions): KubeObject {
    const name = next.metadata.name ?? '';
    const key = storeKey(next.kind, next.metadata.namespace ?? '', name);
    const current = this.#objects.get(key);
    if (!current) throw notFound(next.kind, name);
    const wantRv = next.metadata.resourceVersion;
    if (wantRv && wantRv !== current.metadata.resourceVersion) {
      throw new StoreError('Conflict', `Operation cannot be fulfilled on ${next.kind} "${name}": the object has been modified`);
    }
    if (opts.subresource === 'status') {
      const status = next.status;
      next = structuredClone(current);
      next.status = status;
    }
    next.metadata = {
      ...next.metadata,
      ...pick(current.metadata, ['uid', 'creationTimestamp', 'generation', 'deletionTimestamp']),
    };
    if (JSON.stringify(next.spec) !== JSON.stringify(current.spec)) next.metadata.generation = (current.metadata.generation ?? 1) + 1;
    if (opts.dryRun) return next;
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) return this.#commit(key, next, 'DELETED');
    return this.#commit(key, next, 'MODIFIED');
  }

  #commit(key: string, obj: KubeObject, type: HistoryEntry['type']): KubeObject {
    obj.metadata.resourceVersion = String(++this.#rev);
    if (type === 'DELETED') this.#objects.delete(key);
    else this.#objects.set(key, obj);
    this.#history.push({ rev: this.#rev, kind: obj.kind, type, object: structuredClone(obj) });
    for (const w of this.#watchers) {
      if (w.kind !== obj.kind || !w.match(obj)) continue;
      w.events.push({ type, object: structuredClone(obj) });
      w.wake?.();
    }
    return structuredClone(obj);
  }
}

function storeKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

function notFound(kind: string, name: string): StoreError {
  return new StoreError('NotFound', `${kind} "${name}" not found`);
}

function pick(meta: KubeObject['metadata'], keys: (keyof KubeObject['metadata'])[]): Partial<KubeObject['metadata']> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (meta[k] !== undefined) out[k] = meta[k];
  return out as Partial<KubeObject['metadata']>;
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Namespace, equality-based label selectors (`a=b`, `a!=b`, `a`, `!a`) and dotted-path field selectors. */
function matcher(opts: ListOptions): (obj: KubeObject) => boolean {
  const tests: ((obj: KubeObject) => boolean)[] = [];
  if (opts.namespace) tests.push((o) => (o.metadata.namespace ?? '') === opts.namespace);
  for (const term of (opts.labelSelector ?? '').split(',').filter(Boolean)) {
    const m = /^\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*))?\s*$/.exec(term);
    if (!m) throw new StoreError('BadRequest', `MemoryStore does not support label selector "${term}"`);
    const [, not, key = '', op, value] = m;
    tests.push((o) => {
      const v = o.metadata.labels?.[key];
      if (op === undefined) return not ? v === undefined : v !== undefined;
      return op === '!=' ? v !== value : v === value;
    });
  }
  for (const term of (opts.fieldSelector ?? '').split(',').filter(Boolean)) {
    const m = /^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(term);
    if (!m) throw new StoreError('BadRequest', `MemoryStore does not support field selector "${term}"`);
    const [, path = '', op, value] = m;
    tests.push((o) => {
      let v: unknown = o;
      for (const part of path.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
      const s = v === undefined || v === null ? '' : String(v);
      return op === '!=' ? s !== value : s === value;
    });
  }
  return (o) => tests.every((t) => t(o));
}

/** What runControllers needs of a controller and of the informer factory (kept structural: no import cycle). */
interface Runnable {
  run(signal: AbortSignal): Promise<unknown>;
}

/**
 * Starts `informers`, waits for their first sync, then runs `controllers` over them; the returned stop() aborts
 * them all and waits until they have returned (call it in the test file's `after`).
 */
export async function runControllers(informers: Runnable & { waitForSync(): Promise<unknown> }, ...controllers: Runnable[]): Promise<() => Promise<void>> {
  const ac = new AbortController();
  const informersDone = informers.run(ac.signal);
  await informers.waitForSync();
  const running = Promise.all([...controllers.map((c) => c.run(ac.signal)), informersDone]);
  return async () => {
    ac.abort();
    await running;
  };
}
