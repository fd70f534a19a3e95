// The informer's in-memory cache: frozen objects keyed `namespace/name`, plus secondary indexes computed by
// arbitrary functions (client-go's thread-safe store + indexer). Indexes are how a controller finds the few
// objects an event affects — e.g. replicas by backing image × disk — instead of scanning every object.

import type { DeepReadonly, KubeObject } from '../api/meta.js';
import { errorMessage, type Logger } from './log.js';

/** Values under which an object is indexed. Must depend only on the object (it is re-run to un-index it). */
export type IndexFunc<T extends KubeObject> = (obj: DeepReadonly<T>) => readonly string[];

/** Freeze an object graph in place; returns it typed read-only. */
export function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value as DeepReadonly<T>;
}

export class Indexer<T extends KubeObject> {
  readonly #items = new Map<string, DeepReadonly<T>>();
  readonly #indexFuncs = new Map<string, IndexFunc<T>>();
  /** index name → index value → keys of the objects carrying that value. */
  readonly #indices = new Map<string, Map<string, Set<string>>>();
  readonly #logger: Logger;
  readonly #what: string;

  constructor(what: string, logger: Logger) {
    this.#what = what;
    this.#logger = logger;
  }

  /** Add an index; allowed at any time (it is built over the objects already cached). */
  addIndex(name: string, fn: IndexFunc<T>): void {
    if (this.#indexFuncs.has(name)) throw new Error(`Cannot add index "${name}" to the ${this.#what} cache: it exists`);
    this.#indexFuncs.set(name, fn);
    this.#indices.set(name, new Map());
    for (const [key, obj] of this.#items) this.#indexOne(name, fn, key, obj);
  }

  get(key: string): DeepReadonly<T> | undefined {
    return this.#items.get(key);
  }

  has(key: string): boolean {
    return this.#items.has(key);
  }

  keys(): string[] {
    return [...this.#items.keys()];
  }

  list(): DeepReadonly<T>[] {
    return [...this.#items.values()];
  }

  get size(): number {
    return this.#items.size;
  }

  /** Keys of the objects indexed under `value` in index `name`. */
  indexKeys(name: string, value: string): string[] {
    const index = this.#indices.get(name);
    if (!index) throw new Error(`Cannot look up index "${name}" of the ${this.#what} cache: no such index`);
    return [...(index.get(value) ?? [])];
  }

  byIndex(name: string, value: string): DeepReadonly<T>[] {
    const out: DeepReadonly<T>[] = [];
    for (const key of this.indexKeys(name, value)) {
      const obj = this.#items.get(key);
      if (obj !== undefined) out.push(obj);
    }
    return out;
  }

  /** Store `obj` under `key`, re-indexing it; returns the object it replaced. */
  set(key: string, obj: DeepReadonly<T>): DeepReadonly<T> | undefined {
    const old = this.#items.get(key);
    if (old !== undefined) this.#unindex(key, old);
    this.#items.set(key, obj);
    for (const [name, fn] of this.#indexFuncs) this.#indexOne(name, fn, key, obj);
    return old;
  }

  delete(key: string): DeepReadonly<T> | undefined {
    const old = this.#items.get(key);
    if (old === undefined) return undefined;
    this.#unindex(key, old);
    this.#items.delete(key);
    return old;
  }

  #unindex(key: string, obj: DeepReadonly<T>): void {
    for (const [name, fn] of this.#indexFuncs) {
      const index = this.#indices.get(name);
      if (!index) continue;
      for (const value of this.#values(name, fn, key, obj)) {
        const keys = index.get(value);
        if (!keys) continue;
        keys.delete(key);
        // Drop empty buckets so index memory follows the live objects, not every value ever seen.
        if (keys.size === 0) index.delete(value);
      }
    }
  }

  #indexOne(name: string, fn: IndexFunc<T>, key: string, obj: DeepReadonly<T>): void {
    const index = this.#indices.get(name);
    if (!index) return;
    for (const value of this.#values(name, fn, key, obj)) {
      let keys = index.get(value);
      if (!keys) index.set(value, (keys = new Set()));
      keys.add(key);
    }
  }

  #values(name: string, fn: IndexFunc<T>, key: string, obj: DeepReadonly<T>): Set<string> {
    try {
      return new Set(fn(obj));
    } catch (err) {
      // One bad object must not break the cache for every other object: it is simply not indexed.
      this.#logger.error(`Index "${name}" of the ${this.#what} cache failed for ${key}`, { error: errorMessage(err) });
      return new Set();
    }
  }
}
