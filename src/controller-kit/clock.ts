// Injected time. Everything in the controller kit that waits or measures (queue delays, backoff, informer
// re-list backoff, event timestamps, metrics durations) goes through a Clock so tests drive time with FakeClock
// instead of sleeping.

declare const timerBrand: unique symbol;
/** Opaque timer handle; only meaningful to the clock that returned it. */
export type TimerHandle = { readonly [timerBrand]: true };

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /**
   * Resolve after `ms`. Rejects with `signal.reason` when aborted (before or during the wait), like
   * `timers/promises.setTimeout`, so a loop that sleeps between retries stops at once on shutdown.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function sleepWith(clock: Pick<Clock, 'setTimeout' | 'clearTimeout'>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Wall-clock time and Node timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  // Node fires delays above 2^31-1 ms after 1 ms (with a warning); clamp instead. Waking a level-triggered loop
  // after ~24 days rather than later is harmless, waking it at once would be a busy loop.
  setTimeout: (fn, ms) =>
    globalThis.setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS)) as unknown as TimerHandle,
  clearTimeout: (handle) => globalThis.clearTimeout(handle as unknown as NodeJS.Timeout),
  sleep: (ms, signal) => sleepWith(realClock, ms, signal),
};

interface FakeTimer {
  readonly id: number;
  readonly due: number;
  readonly fn: () => void;
}

/**
 * A clock that only moves when told to. `advance(ms)` fires every timer that becomes due, in due-time order (ties
 * in creation order), with `now()` equal to each timer's due time while it runs; timers scheduled by a firing timer
 * fire in the same call when they fall inside the window.
 *
 * Timers fire synchronously. Code that continues after a promise settles (an awaited `sleep`, a queue handing a
 * key to a waiting worker) runs only once the caller yields to the event loop: use `advanceAndSettle`.
 */
export class FakeClock implements Clock {
  #now: number;
  #nextId = 1;
  #timers = new Map<number, FakeTimer>();

  /** Starts at a fixed, realistic epoch time so timestamps in tests look like real ones. */
  constructor(startMs = Date.UTC(2025, 0, 1)) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { id, due: this.#now + Math.max(0, ms), fn });
    return { id } as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete((handle as unknown as { id: number }).id);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Number of timers not yet fired or cleared. */
  pendingTimers(): number {
    return this.#timers.size;
  }

  /** Move time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const next = this.#earliest();
      if (next === undefined || next.due > end) break;
      this.#timers.delete(next.id);
      this.#now = Math.max(this.#now, next.due);
      next.fn();
    }
    this.#now = end;
  }

  /**
   * Like `advance`, but lets promise continuations run after every fired timer (and once at the end), so
   * async code woken by one timer can schedule the next before time moves past it.
   */
  async advanceAndSettle(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const next = this.#earliest();
      if (next === undefined || next.due > end) break;
      this.#timers.delete(next.id);
      this.#now = Math.max(this.#now, next.due);
      next.fn();
    }
    this.#now = end;
    await settle();
  }

  #earliest(): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.#timers.values()) {
      // Map iteration is insertion order, so `<` (not `<=`) keeps creation order among equal due times.
      if (best === undefined || t.due < best.due) best = t;
    }
    return best;
  }
}

/** Let pending promise continuations (and anything they chain) run: a few macrotask turns. */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
