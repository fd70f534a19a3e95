// Flow control of copy work: a per-copy retry backoff (failed copies are retried after 1 min, doubling to 5 min,
// both settable) and a per-node limit on syncs in flight. Longhorn mixed two key orders in its limiter and so
// counted some copies twice (longhorn-manager-backing-images.md §8.1); here one typed key, `<manager>|<image>`,
// is used everywhere.

export class CopyBackoff {
  readonly #entries = new Map<string, { next: number; delay: number }>();
  readonly #min: () => number;
  readonly #max: () => number;
  readonly #now: () => number;

  constructor(minMs: () => number, maxMs: () => number, now: () => number) {
    this.#min = minMs;
    this.#max = maxMs;
    this.#now = now;
  }

  /** Milliseconds until the copy may be tried again (0 = now). */
  remaining(key: string): number {
    const e = this.#entries.get(key);
    return e ? Math.max(0, e.next - this.#now()) : 0;
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Records an attempt: the next one waits the current delay, which then doubles up to the maximum. */
  next(key: string): void {
    const e = this.#entries.get(key);
    const delay = e ? Math.min(this.#max(), e.delay * 2) : this.#min();
    this.#entries.set(key, { next: this.#now() + delay, delay });
  }

  reset(key: string): void {
    this.#entries.delete(key);
  }
}

export class NodeSyncLimiter {
  /** Admissions not yet visible in any manager's status, so two quick reconciles cannot both pass the limit. */
  readonly #admitted = new Map<string, Map<string, number>>();
  readonly #now: () => number;
  readonly #graceMs: number;

  constructor(now: () => number, graceMs = 10_000) {
    this.#now = now;
    this.#graceMs = graceMs;
  }

  /** Admits `key` on `node` if fewer than `limit` syncs are busy there (reported busy ∪ recently admitted). */
  admit(node: string, key: string, busy: ReadonlySet<string>, limit: number): boolean {
    if (limit <= 0) return false;
    const mine = this.#admitted.get(node) ?? new Map<string, number>();
    const t = this.#now();
    for (const [k, at] of mine) if (busy.has(k) || t - at > this.#graceMs) mine.delete(k);
    const inFlight = new Set([...busy, ...mine.keys()]);
    if (inFlight.has(key)) return true;
    if (inFlight.size >= limit) return false;
    mine.set(key, t);
    this.#admitted.set(node, mine);
    return true;
  }
}
