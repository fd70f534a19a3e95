// Per-key retry backoff for the work queue (client-go's ItemExponentialFailureRateLimiter): the n-th consecutive
// failure of a key waits base·2ⁿ ms, capped at max; `forget` after a success starts the key over.

export interface RateLimiter {
  /** Record one more failure of `key` and return how long to wait before retrying it, in ms. */
  when(key: string): number;
  /** Clear the failure history of `key` (call after it succeeded). */
  forget(key: string): void;
  /** How many failures of `key` were recorded since the last `forget`. */
  retries(key: string): number;
}

export interface ExponentialRateLimiterOptions {
  /** Delay after the first failure. Default 5 ms (client-go and Longhorn). */
  baseMs?: number;
  /** Upper bound of the delay. Default 1000 s (client-go and Longhorn). */
  maxMs?: number;
}

export class ExponentialRateLimiter implements RateLimiter {
  readonly #baseMs: number;
  readonly #maxMs: number;
  // Holds only keys that are failing: a successful reconcile calls forget, so this does not grow with the
  // number of objects, only with the number currently in trouble.
  readonly #failures = new Map<string, number>();

  constructor(opts: ExponentialRateLimiterOptions = {}) {
    this.#baseMs = opts.baseMs ?? 5;
    this.#maxMs = opts.maxMs ?? 1_000_000;
    if (!(this.#baseMs > 0) || !(this.#maxMs >= this.#baseMs)) {
      throw new RangeError(`Cannot create rate limiter: need 0 < baseMs <= maxMs, got ${this.#baseMs}, ${this.#maxMs}`);
    }
  }

  when(key: string): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    // 2 ** n overflows to Infinity for large n; Math.min then yields max, which is what we want.
    return Math.min(this.#baseMs * 2 ** n, this.#maxMs);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  retries(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}
