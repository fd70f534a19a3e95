// Writes a controller made that its informer cache has not shown yet. A reconcile that runs before the cache
// caught up would otherwise see a replica it just created as missing and create another (or see one it deleted
// as still there): controller-runtime's "expectations". Entries expire so a lost watch event cannot wedge a key.

export class Expectations {
  readonly #pending = new Map<string, Map<string, number>>();
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(opts: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = opts.ttlMs ?? 30_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Records that `key` wrote `name` (created or deleted it). */
  expect(key: string, name: string): void {
    let m = this.#pending.get(key);
    if (!m) this.#pending.set(key, (m = new Map()));
    m.set(name, this.#now() + this.#ttlMs);
  }

  /** True when every write of `key` has been observed (`seen(name)`) or expired. */
  satisfied(key: string, seen: (name: string) => boolean): boolean {
    const m = this.#pending.get(key);
    if (!m) return true;
    const now = this.#now();
    for (const [name, deadline] of m) if (seen(name) || deadline <= now) m.delete(name);
    if (m.size === 0) this.#pending.delete(key);
    return m.size === 0;
  }
}
