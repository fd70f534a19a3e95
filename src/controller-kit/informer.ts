// A shared informer for one kind: lists the objects from a Store, then watches from the list's resourceVersion,
// keeping an indexed in-memory cache and telling registered handlers about adds, updates and deletes.
//
//   run ─► list ─► replace cache (diff → add/update/delete) ─► watch from rv ─► apply events ─┐
//           ▲                                                                                 │
//           └──── Gone: at once (then backoff) ◄── watch error: backoff ◄─────────────────────┘
//
// There is no periodic resync over all objects by default: that fan-out is what flooded Longhorn's replica queue.
// A handler may ask for one (`resyncPeriodMs`), and then only that handler is called.

import type { DeepReadonly, KubeObject } from '../api/meta.js';
import { isGone } from '../store/errors.js';
import type { Store, WatchEvent } from '../store/types.js';
import { Indexer, deepFreeze, type IndexFunc } from './cache.js';
import { realClock, type Clock, type TimerHandle } from './clock.js';
import { keyFor, keyOf } from './keys.js';
import { consoleLogger, errorMessage, type Logger } from './log.js';
import { ExponentialRateLimiter, type ExponentialRateLimiterOptions } from './rate-limiter.js';

/** Handlers must be quick and must not block: they typically only add keys to a work queue. */
export interface EventHandlers<T extends KubeObject> {
  onAdd?(obj: DeepReadonly<T>): void;
  onUpdate?(oldObj: DeepReadonly<T>, newObj: DeepReadonly<T>): void;
  onDelete?(obj: DeepReadonly<T>): void;
}

export interface HandlerOptions {
  /** Call `onUpdate(obj, obj)` for every cached object this often. Only for a controller's own kind. */
  resyncPeriodMs?: number;
}

export interface InformerOptions {
  store: Store;
  kind: string;
  /** Only this namespace; default all. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  clock?: Clock;
  logger?: Logger;
  /** Backoff between re-lists after failures. Default 200 ms … 30 s. */
  backoff?: ExponentialRateLimiterOptions;
}

interface Registration<T extends KubeObject> {
  handlers: EventHandlers<T>;
  resyncPeriodMs: number;
  timer: TimerHandle | undefined;
}

const BACKOFF_KEY = 'relist';

export class Informer<T extends KubeObject = KubeObject> {
  readonly kind: string;
  readonly #store: Store;
  readonly #listOpts: { namespace?: string; labelSelector?: string; fieldSelector?: string };
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #backoff: ExponentialRateLimiter;
  readonly #backoffMaxMs: number;
  readonly #cache: Indexer<T>;
  readonly #registrations = new Set<Registration<T>>();
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #running = false;

  constructor(opts: InformerOptions) {
    this.kind = opts.kind;
    this.#store = opts.store;
    this.#listOpts = {
      ...(opts.namespace ? { namespace: opts.namespace } : {}),
      ...(opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
      ...(opts.fieldSelector ? { fieldSelector: opts.fieldSelector } : {}),
    };
    this.#clock = opts.clock ?? realClock;
    this.#logger = opts.logger ?? consoleLogger;
    const backoff = { baseMs: 200, maxMs: 30_000, ...opts.backoff };
    this.#backoff = new ExponentialRateLimiter(backoff);
    this.#backoffMaxMs = backoff.maxMs;
    this.#cache = new Indexer<T>(opts.kind, this.#logger);
  }

  /** Index cached objects by `fn`; may be called before or after start. */
  addIndex(name: string, fn: IndexFunc<T>): void {
    this.#cache.addIndex(name, fn);
  }

  /** Cached objects whose index `name` yields `value`. */
  byIndex(name: string, value: string): readonly DeepReadonly<T>[] {
    return this.#cache.byIndex(name, value);
  }

  /** Keys (`namespace/name`) of the cached objects whose index `name` yields `value`. */
  indexKeys(name: string, value: string): readonly string[] {
    return this.#cache.indexKeys(name, value);
  }

  get(namespace: string, name: string): DeepReadonly<T> | undefined {
    return this.#cache.get(keyFor(namespace, name));
  }

  getByKey(key: string): DeepReadonly<T> | undefined {
    return this.#cache.get(key);
  }

  list(): readonly DeepReadonly<T>[] {
    return this.#cache.list();
  }

  /**
   * Register handlers. When objects are cached already, `onAdd` is called for each of them before this returns,
   * so a late handler sees the same world as an early one. Returns a function that unregisters.
   */
  addEventHandler(handlers: EventHandlers<T>, opts: HandlerOptions = {}): () => void {
    const reg: Registration<T> = { handlers, resyncPeriodMs: opts.resyncPeriodMs ?? 0, timer: undefined };
    this.#registrations.add(reg);
    for (const obj of this.#cache.list()) this.#call(reg, 'onAdd', obj);
    if (this.#running) this.#scheduleResync(reg);
    return () => {
      this.#registrations.delete(reg);
      if (reg.timer !== undefined) this.#clock.clearTimeout(reg.timer);
      reg.timer = undefined;
    };
  }

  /** True once the first list has been applied to the cache. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolve once the first list has been applied; rejects with `signal.reason` when aborted first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.#syncWaiters = this.#syncWaiters.filter((w) => w !== done);
        reject(signal?.reason);
      };
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#syncWaiters.push(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** List and watch until `signal` aborts; resolves after the watch loop stopped. Failures are retried forever. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running) throw new Error(`Cannot run the ${this.kind} informer: it is running already`);
    this.#running = true;
    for (const reg of this.#registrations) this.#scheduleResync(reg);
    try {
      await this.#listAndWatch(signal);
    } finally {
      this.#running = false;
      for (const reg of this.#registrations) {
        if (reg.timer !== undefined) this.#clock.clearTimeout(reg.timer);
        reg.timer = undefined;
      }
    }
  }

  async #listAndWatch(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let rv: string;
      try {
        const res = await this.#store.list<T>(this.kind, this.#listOpts);
        if (signal.aborted) return;
        this.#replace(res.items);
        rv = res.resourceVersion;
      } catch (err) {
        if (signal.aborted) return;
        this.#logger.warn(`Listing ${this.kind} failed; retrying`, { error: errorMessage(err) });
        if (!(await this.#sleepBackoff(signal))) return;
        continue;
      }
      // Watch from rv; a clean end of the stream (a server-side timeout) only needs a new watch, not a new list.
      for (;;) {
        const started = this.#clock.now();
        const outcome = await this.#watch(rv, signal);
        if (signal.aborted) return;
        if (outcome.events > 0 || this.#clock.now() - started >= this.#backoffMaxMs) this.#backoff.forget(BACKOFF_KEY);
        rv = outcome.resourceVersion;
        if (outcome.error === undefined) {
          if (outcome.events === 0 && !(await this.#sleepBackoff(signal))) return;
          continue;
        }
        if (isGone(outcome.error) && this.#backoff.retries(BACKOFF_KEY) === 0) {
          // The version we watched from was compacted (or we fell behind): expected now and then, re-list at once.
          this.#logger.info(`Watch of ${this.kind} expired; re-listing`, { error: errorMessage(outcome.error) });
          this.#backoff.when(BACKOFF_KEY);
        } else {
          this.#logger.warn(`Watch of ${this.kind} failed; re-listing after backoff`, {
            error: errorMessage(outcome.error),
          });
          if (!(await this.#sleepBackoff(signal))) return;
        }
        break;
      }
    }
  }

  async #watch(
    rv: string,
    signal: AbortSignal,
  ): Promise<{ error?: unknown; events: number; resourceVersion: string }> {
    let events = 0;
    try {
      const stream = this.#store.watch<T>(this.kind, { ...this.#listOpts, resourceVersion: rv, allowBookmarks: true, signal });
      for await (const ev of stream) {
        if (signal.aborted) break;
        events++;
        rv = ev.object.metadata.resourceVersion ?? rv;
        this.#apply(ev);
      }
      return { events, resourceVersion: rv };
    } catch (error) {
      return { error, events, resourceVersion: rv };
    }
  }

  /** Sleep the next backoff step; false when aborted meanwhile. */
  async #sleepBackoff(signal: AbortSignal): Promise<boolean> {
    try {
      await this.#clock.sleep(this.#backoff.when(BACKOFF_KEY), signal);
      return true;
    } catch {
      return false;
    }
  }

  #apply(ev: WatchEvent<T>): void {
    if (ev.type === 'BOOKMARK') return;
    const key = keyOf(ev.object);
    if (ev.type === 'DELETED') {
      // Handlers get the object's final state from the event (it may carry a newer status than the cache had).
      if (this.#cache.delete(key) !== undefined) this.#dispatchDelete(this.#freeze(ev.object));
      return;
    }
    const obj = this.#freeze(ev.object);
    const old = this.#cache.set(key, obj);
    if (old === undefined) this.#dispatchAdd(obj);
    else this.#dispatchUpdate(old, obj);
  }

  /** Make the cache equal `items` (a fresh list), telling handlers only about real differences. */
  #replace(items: T[]): void {
    const seen = new Set<string>();
    for (const item of items) {
      const key = keyOf(item);
      seen.add(key);
      const old = this.#cache.get(key);
      // Same resourceVersion means unchanged: a re-list must not fan out as updates of every object.
      if (old !== undefined && old.metadata.resourceVersion === item.metadata.resourceVersion) continue;
      const obj = this.#freeze(item);
      this.#cache.set(key, obj);
      if (old === undefined) this.#dispatchAdd(obj);
      else this.#dispatchUpdate(old, obj);
    }
    for (const key of this.#cache.keys()) {
      if (seen.has(key)) continue;
      const old = this.#cache.delete(key);
      if (old !== undefined) this.#dispatchDelete(old);
    }
    if (!this.#synced) {
      this.#synced = true;
      const waiters = this.#syncWaiters;
      this.#syncWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Clone before freezing: the store may share parts of the object with the writer's result or other watchers,
   * and freezing those in place would make an unrelated caller's mutation throw.
   */
  #freeze(obj: T): DeepReadonly<T> {
    return deepFreeze(structuredClone(obj));
  }

  #dispatchAdd(obj: DeepReadonly<T>): void {
    for (const reg of [...this.#registrations]) this.#call(reg, 'onAdd', obj);
  }

  #dispatchUpdate(old: DeepReadonly<T>, obj: DeepReadonly<T>): void {
    for (const reg of [...this.#registrations]) this.#call(reg, 'onUpdate', old, obj);
  }

  #dispatchDelete(obj: DeepReadonly<T>): void {
    for (const reg of [...this.#registrations]) this.#call(reg, 'onDelete', obj);
  }

  #call(reg: Registration<T>, what: 'onAdd' | 'onDelete', obj: DeepReadonly<T>): void;
  #call(reg: Registration<T>, what: 'onUpdate', old: DeepReadonly<T>, obj: DeepReadonly<T>): void;
  #call(reg: Registration<T>, what: keyof EventHandlers<T>, a: DeepReadonly<T>, b?: DeepReadonly<T>): void {
    try {
      if (what === 'onUpdate') reg.handlers.onUpdate?.(a, b ?? a);
      else reg.handlers[what]?.(a);
    } catch (err) {
      // A throwing handler must not stop the others nor the watch loop.
      this.#logger.error(`${this.kind} informer handler ${what} threw`, { key: keyOf(a), error: errorMessage(err) });
    }
  }

  #scheduleResync(reg: Registration<T>): void {
    if (!(reg.resyncPeriodMs > 0) || reg.timer !== undefined) return;
    reg.timer = this.#clock.setTimeout(() => {
      reg.timer = undefined;
      if (!this.#running || !this.#registrations.has(reg)) return;
      for (const obj of this.#cache.list()) this.#call(reg, 'onUpdate', obj, obj);
      this.#scheduleResync(reg);
    }, reg.resyncPeriodMs);
  }
}
