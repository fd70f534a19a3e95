// A small least-recently-used map with a fixed number of entries, used for the qcow2 reader's L2-table and
// decompressed-cluster caches. It relies on Map keeping insertion order: the first key is the least recent.

export class LruCache<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`LruCache needs at least one entry, got ${maxEntries}`);
    this.#max = maxEntries;
  }

  get maxEntries(): number {
    return this.#max;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    while (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (oldest.done === true) break;
      this.#map.delete(oldest.value);
    }
  }

  /** Remove `key`, but only while it still maps to `value` (a newer entry for the key is left alone). */
  deleteIf(key: K, value: V): void {
    if (this.#map.get(key) === value) this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}
