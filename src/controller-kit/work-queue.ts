// The de-duplicating work queue behind every controller (client-go's workqueue): a key is queued at most once, and
// a key being processed is never handed to a second worker — if it is added meanwhile it is marked dirty and
// queued again when the current run calls `done`. Delayed and rate-limited re-adds, and shutdown with drain.
//
//   add(k) ──► dirty ∌ k ? ──► dirty += k ──► processing ∌ k ? ──► queue (FIFO) ──► get() ──► processing += k
//                                                                        ▲                             │
//                                                  done(k): dirty ∋ k ───┘◄────────────────────────────┘

import type { Registry } from 'prom-client';
import { realClock, type Clock, type TimerHandle } from './clock.js';
import { metricsRegistry, queueMetrics, type QueueMetrics } from './metrics.js';
import { ExponentialRateLimiter, type RateLimiter } from './rate-limiter.js';

export interface WorkQueueOptions {
  /** Label of this queue's metrics; use the controller name. */
  name: string;
  /** Backoff for `addRateLimited`. Default: exponential 5 ms … 1000 s. */
  rateLimiter?: RateLimiter;
  clock?: Clock;
  /** Where the queue's metrics are registered. Default: `metricsRegistry`. */
  registry?: Registry;
}

export class WorkQueue {
  readonly name: string;
  readonly #clock: Clock;
  readonly #limiter: RateLimiter;
  readonly #metrics: QueueMetrics;
  /** FIFO of keys ready for a worker; `#head` avoids O(n) shifts. */
  #queue: string[] = [];
  #head = 0;
  /** Keys that need processing: queued, or added again while being processed. */
  readonly #dirty = new Set<string>();
  /** Keys handed to a worker and not yet `done`, with the time they were taken. */
  readonly #processing = new Map<string, number>();
  /** When each dirty key was added, for the queue-latency histogram. */
  readonly #addedAt = new Map<string, number>();
  /** Delayed adds: one timer per key, the earliest wins. */
  readonly #waiting = new Map<string, { due: number; handle: TimerHandle }>();
  /** Workers blocked in `get()`. */
  #getters: ((key: string | undefined) => void)[] = [];
  #drainWaiters: (() => void)[] = [];
  #shuttingDown = false;

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.#clock = opts.clock ?? realClock;
    this.#limiter = opts.rateLimiter ?? new ExponentialRateLimiter();
    this.#metrics = queueMetrics(opts.registry ?? metricsRegistry);
    this.#metrics.depth.set({ name: this.name }, 0);
  }

  /** Queue `key` unless it is already queued. Ignored after shutdown. */
  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    this.#addedAt.set(key, this.#clock.now());
    this.#metrics.adds.inc({ name: this.name });
    // A key in a worker's hands stays only dirty; `done` queues it, so it is never processed twice at once.
    if (this.#processing.has(key)) return;
    this.#push(key);
  }

  /**
   * Add `key` after `ms`. If the key already waits for a delayed add, the earlier deadline is kept (a later
   * request never postpones an earlier one). `ms <= 0` adds at once.
   */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const due = this.#clock.now() + ms;
    const existing = this.#waiting.get(key);
    if (existing !== undefined) {
      if (existing.due <= due) return;
      this.#clock.clearTimeout(existing.handle);
    }
    const handle = this.#clock.setTimeout(() => {
      this.#waiting.delete(key);
      this.add(key);
    }, ms);
    this.#waiting.set(key, { due, handle });
  }

  /** Add `key` after its per-key backoff (one more failure recorded). */
  addRateLimited(key: string): void {
    if (this.#shuttingDown) return;
    this.#metrics.retries.inc({ name: this.name });
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Reset the backoff of `key`; call after it was processed successfully. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  /** Failures recorded for `key` since its last `forget`. */
  numRequeues(key: string): number {
    return this.#limiter.retries(key);
  }

  /**
   * Wait for the next key and mark it processing; the caller must call `done(key)` when finished. Resolves
   * `undefined` once the queue is shut down (keys still queued then are discarded, see `shutdown`).
   */
  get(): Promise<string | undefined> {
    const key = this.#shift();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#getters.push(resolve));
  }

  /** Finish processing `key`. If it was added meanwhile it is queued again now. */
  done(key: string): void {
    const started = this.#processing.get(key);
    if (started === undefined) return;
    this.#processing.delete(key);
    this.#metrics.workDuration.observe({ name: this.name }, (this.#clock.now() - started) / 1000);
    if (this.#dirty.has(key)) this.#push(key);
    if (this.#processing.size === 0 && this.#drainWaiters.length > 0) {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Keys waiting for a worker (not counting keys being processed or waiting for a delayed add). */
  len(): number {
    return this.#queue.length - this.#head;
  }

  /** Keys currently handed to workers. */
  processing(): number {
    return this.#processing.size;
  }

  isShuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /**
   * Stop at once: later adds are ignored, delayed adds are cancelled, queued keys are discarded and every blocked
   * `get()` resolves `undefined`. Keys already being processed finish normally. Unlike client-go, queued keys are
   * not worked off: controllers are level-triggered, and the next start lists every object again anyway.
   */
  shutdown(): void {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    for (const { handle } of this.#waiting.values()) this.#clock.clearTimeout(handle);
    this.#waiting.clear();
    this.#queue = [];
    this.#head = 0;
    this.#dirty.clear();
    this.#addedAt.clear();
    this.#metrics.depth.set({ name: this.name }, 0);
    const getters = this.#getters;
    this.#getters = [];
    for (const g of getters) g(undefined);
  }

  /** `shutdown()`, then resolve once every key being processed is `done`. */
  shutDownWithDrain(): Promise<void> {
    this.shutdown();
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #push(key: string): void {
    const getter = this.#getters.shift();
    if (getter !== undefined) {
      // Hand over directly, marking it processing in the same synchronous step so no other worker can see it.
      getter(this.#take(key));
      return;
    }
    this.#queue.push(key);
    this.#metrics.depth.set({ name: this.name }, this.len());
  }

  #shift(): string | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const key = this.#queue[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#metrics.depth.set({ name: this.name }, this.len());
    return key;
  }

  #take(key: string): string {
    const now = this.#clock.now();
    this.#dirty.delete(key);
    this.#processing.set(key, now);
    const added = this.#addedAt.get(key);
    this.#addedAt.delete(key);
    if (added !== undefined) this.#metrics.queueDuration.observe({ name: this.name }, (now - added) / 1000);
    return key;
  }
}
