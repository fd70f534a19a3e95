// The reconcile runner: N workers take keys from a de-duplicating work queue and call a level-triggered
// `reconcile(key, signal)`. Success forgets the key's backoff (and honours `requeueAfter`); a Conflict means a
// stale read and is retried with backoff quietly; any other error is retried with per-key backoff and logged
// only when the key's error changes, so a stuck object does not fill the log.

import type { Registry } from 'prom-client';
import type { DeepReadonly, KubeObject } from '../api/meta.js';
import { isConflict } from '../store/errors.js';
import { realClock, type Clock } from './clock.js';
import { keyOf } from './keys.js';
import { consoleLogger, errorMessage, type Logger } from './log.js';
import { controllerMetrics, metricsRegistry, type ControllerMetrics } from './metrics.js';
import { ExponentialRateLimiter, type ExponentialRateLimiterOptions, type RateLimiter } from './rate-limiter.js';
import { WorkQueue } from './work-queue.js';

export interface ReconcileResult {
  /** Reconcile this key again after this many ms (e.g. to time out a state), even if nothing changes. */
  requeueAfter?: number;
}

/** Reads what it needs, computes the desired state, writes once if changed. Must stop soon after `signal` aborts. */
export type ReconcileFunc = (key: string, signal: AbortSignal) => Promise<ReconcileResult | void>;

export interface ControllerQueueOptions {
  /** Backoff of failed keys; default exponential (see `backoff`). */
  rateLimiter?: RateLimiter;
  /** Parameters of the default exponential backoff: 5 ms … 1000 s. */
  backoff?: ExponentialRateLimiterOptions;
}

export interface ControllerOptions {
  /** Names the queue and the metrics; use the kind, e.g. `backing-image`. */
  name: string;
  /** Concurrent reconciles (never two for one key). Default 1. */
  workers?: number;
  reconcile: ReconcileFunc;
  queue?: ControllerQueueOptions;
  clock?: Clock;
  logger?: Logger;
  /** Where queue and reconcile metrics go. Default: `metricsRegistry`. */
  registry?: Registry;
}

export class Controller {
  readonly name: string;
  /** Enqueue from informer handlers with `queue.add`; keep `addRateLimited` for retries (the runner does them). */
  readonly queue: WorkQueue;
  readonly #workers: number;
  readonly #reconcile: ReconcileFunc;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #metrics: ControllerMetrics;
  /** The last error message logged per failing key; cleared on success. */
  readonly #lastError = new Map<string, string>();
  #started = false;

  constructor(opts: ControllerOptions) {
    this.name = opts.name;
    this.#workers = opts.workers ?? 1;
    if (!Number.isInteger(this.#workers) || this.#workers < 1) {
      throw new RangeError(`Cannot create controller "${opts.name}": workers must be a positive integer`);
    }
    this.#reconcile = opts.reconcile;
    this.#logger = opts.logger ?? consoleLogger;
    this.#clock = opts.clock ?? realClock;
    const registry = opts.registry ?? metricsRegistry;
    this.#metrics = controllerMetrics(registry);
    this.queue = new WorkQueue({
      name: opts.name,
      clock: this.#clock,
      registry,
      rateLimiter: opts.queue?.rateLimiter ?? new ExponentialRateLimiter(opts.queue?.backoff),
    });
  }

  /** Queue a key for reconcile (de-duplicated). */
  enqueue(key: string): void {
    this.queue.add(key);
  }

  /** Queue the key of an object, e.g. from an informer handler. */
  enqueueObject(obj: KubeObject | DeepReadonly<KubeObject>): void {
    this.queue.add(keyOf(obj));
  }

  /**
   * Start the workers; resolves after `signal` aborted and every worker finished its current reconcile. A
   * controller runs once: its queue is shut down at the end.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#started) throw new Error(`Cannot run controller "${this.name}": it was started already`);
    this.#started = true;
    const stop = (): void => this.queue.shutdown();
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    try {
      await Promise.all(Array.from({ length: this.#workers }, () => this.#worker(signal)));
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  async #worker(signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.#process(key, signal);
      } finally {
        this.queue.done(key);
      }
      // Back to the event loop between reconciles. A reconcile whose store calls complete synchronously (SQLite) and
      // whose writes enqueue more work never leaves the microtask queue otherwise, and the process stops answering
      // HTTP, timers and sockets while the storm lasts (seen as a manager that went silent after a disk failed).
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  async #process(key: string, signal: AbortSignal): Promise<void> {
    const labels = { controller: this.name };
    const started = this.#clock.now();
    try {
      const result = await this.#reconcile(key, signal);
      this.queue.forget(key);
      if (this.#lastError.delete(key)) this.#logger.info(`${this.name}: reconcile of ${key} succeeded again`);
      const after = result ? result.requeueAfter : undefined;
      if (after !== undefined && after >= 0) {
        this.queue.addAfter(key, after);
        this.#metrics.reconciles.inc({ ...labels, result: 'requeue' });
      } else {
        this.#metrics.reconciles.inc({ ...labels, result: 'success' });
      }
    } catch (err) {
      // Failures caused by shutdown are not failures of the object; the queue is closed anyway.
      if (signal.aborted) return;
      this.queue.addRateLimited(key);
      if (isConflict(err)) {
        // Someone wrote the object after we read it: normal under concurrency, retry against the fresh cache.
        this.#metrics.reconciles.inc({ ...labels, result: 'conflict' });
        this.#logger.debug(`${this.name}: conflict reconciling ${key}; retrying`, { error: errorMessage(err) });
        return;
      }
      this.#metrics.reconciles.inc({ ...labels, result: 'error' });
      this.#metrics.errors.inc(labels);
      const message = errorMessage(err);
      if (this.#lastError.get(key) !== message) {
        this.#lastError.set(key, message);
        this.#logger.error(`${this.name}: reconcile of ${key} failed; retrying with backoff`, {
          error: message,
          retries: this.queue.numRequeues(key),
        });
      }
    } finally {
      this.#metrics.duration.observe(labels, (this.#clock.now() - started) / 1000);
    }
  }
}
