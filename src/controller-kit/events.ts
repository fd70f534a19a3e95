// Kubernetes core/v1 Events for controllers: `recorder.event(obj, 'Warning', 'DownloadFailed', msg)` shows up in
// `kubectl describe` and `kubectl get events`. Recording is fire-and-forget: the call only queues (bounded; drops
// are counted), one background writer talks to the store, and failures are logged, never thrown. An identical
// event within 10 minutes of the last one bumps `count` on the existing Event instead of creating another, like
// client-go's event correlator, so a retry loop produces one Event with a growing count.

import type { Registry } from 'prom-client';
import type { CoreEvent, DeepReadonly, EventType, KubeObject, ObjectReference } from '../api/index.js';
import { isNotFound } from '../store/errors.js';
import type { Store } from '../store/types.js';
import { realClock, type Clock } from './clock.js';
import { consoleLogger, errorMessage, type Logger } from './log.js';
import { eventMetrics, metricsRegistry, type EventMetrics } from './metrics.js';

export interface EventRecorderOptions {
  store: Store;
  /** `source.component` and `reportingComponent`, e.g. `backing-image-controller`. */
  component: string;
  /** `source.host` and `reportingInstance`, e.g. the node or manager instance name. */
  instance?: string;
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
  /** Distinct events waiting to be written before new ones are dropped. Default 1000. */
  maxPending?: number;
  /** Identical events closer than this are merged into one Event. Default 10 minutes. */
  dedupeWindowMs?: number;
  /** Recently written events remembered for merging (least recently used evicted). Default 4096. */
  cacheSize?: number;
}

/** Cluster-scoped objects get their Events here, as in Kubernetes. */
const CLUSTER_EVENT_NAMESPACE = 'default';
const MAX_NAME_LENGTH = 253;

interface Pending {
  dedupeKey: string;
  namespace: string;
  involved: ObjectReference;
  type: EventType;
  reason: string;
  message: string;
  firstAt: number;
  lastAt: number;
  count: number;
}

interface Written {
  namespace: string;
  name: string;
  count: number;
  lastAt: number;
}

export class EventRecorder {
  readonly #store: Store;
  readonly #component: string;
  readonly #instance: string | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #metrics: EventMetrics;
  readonly #maxPending: number;
  readonly #windowMs: number;
  readonly #cacheSize: number;
  /** FIFO of events to write; `#pendingByKey` lets repeats merge into a queued event instead of taking a slot. */
  #queue: Pending[] = [];
  readonly #pendingByKey = new Map<string, Pending>();
  /** LRU (Map insertion order) of Events written, by dedupe key. */
  readonly #written = new Map<string, Written>();
  #writer: Promise<void> | undefined;
  #idleWaiters: (() => void)[] = [];
  #failing = false;
  #closed = false;
  #seq = 0;

  constructor(opts: EventRecorderOptions) {
    this.#store = opts.store;
    this.#component = opts.component;
    this.#instance = opts.instance;
    this.#clock = opts.clock ?? realClock;
    this.#logger = opts.logger ?? consoleLogger;
    this.#metrics = eventMetrics(opts.registry ?? metricsRegistry);
    this.#maxPending = opts.maxPending ?? 1000;
    this.#windowMs = opts.dedupeWindowMs ?? 10 * 60_000;
    this.#cacheSize = opts.cacheSize ?? 4096;
  }

  /** Record an event about `obj`. Never throws and never waits for the store. */
  event(obj: KubeObject | DeepReadonly<KubeObject>, type: EventType, reason: string, message: string): void {
    try {
      const now = this.#clock.now();
      const involved = referenceTo(obj);
      const namespace = involved.namespace || CLUSTER_EVENT_NAMESPACE;
      const dedupeKey = JSON.stringify([involved.kind, namespace, involved.name, involved.uid ?? '', type, reason, message]);
      const queued = this.#pendingByKey.get(dedupeKey);
      if (queued !== undefined) {
        queued.count++;
        queued.lastAt = now;
        queued.involved = involved;
        return;
      }
      if (this.#closed || this.#queue.length >= this.#maxPending) {
        this.#metrics.dropped.inc({ component: this.#component });
        return;
      }
      const item: Pending = { dedupeKey, namespace, involved, type, reason, message, firstAt: now, lastAt: now, count: 1 };
      this.#pendingByKey.set(dedupeKey, item);
      this.#queue.push(item);
      this.#writer ??= this.#drain();
    } catch (err) {
      this.#logger.error(`${this.#component}: cannot record event ${reason}`, { error: errorMessage(err) });
    }
  }

  /** Resolve once every event recorded so far was written (or failed). Rejects with `signal.reason` on abort. */
  flush(signal?: AbortSignal): Promise<void> {
    if (this.#writer === undefined) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== done);
        reject(signal?.reason);
      };
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#idleWaiters.push(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Stop accepting events (later ones count as dropped) and write what is queued. */
  close(signal?: AbortSignal): Promise<void> {
    this.#closed = true;
    return this.flush(signal);
  }

  async #drain(): Promise<void> {
    // Start on a later turn of the event loop: the store may do synchronous work (SQLite) that must not run
    // inside the caller's reconcile.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      for (let item = this.#queue.shift(); item !== undefined; item = this.#queue.shift()) {
        this.#pendingByKey.delete(item.dedupeKey);
        await this.#write(item);
      }
    } finally {
      this.#writer = undefined;
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  async #write(item: Pending): Promise<void> {
    const labels = { component: this.#component };
    try {
      const prior = this.#written.get(item.dedupeKey);
      if (prior !== undefined && item.firstAt - prior.lastAt <= this.#windowMs) {
        const count = prior.count + item.count;
        try {
          await this.#store.patch('Event', prior.namespace, prior.name, 'merge', {
            count,
            lastTimestamp: timestamp(item.lastAt),
            involvedObject: item.involved,
          });
          this.#remember(item.dedupeKey, { ...prior, count, lastAt: item.lastAt });
          this.#metrics.written.inc({ ...labels, result: 'patched' });
          this.#recovered();
          return;
        } catch (err) {
          // The Event was deleted (TTL, by hand): start a new one below. Anything else is a failed write.
          if (!isNotFound(err)) throw err;
          this.#written.delete(item.dedupeKey);
        }
      }
      const event = this.#build(item);
      await this.#store.create(event);
      this.#remember(item.dedupeKey, { namespace: item.namespace, name: event.metadata.name ?? '', count: item.count, lastAt: item.lastAt });
      this.#metrics.written.inc({ ...labels, result: 'created' });
      this.#recovered();
    } catch (err) {
      this.#metrics.written.inc({ ...labels, result: 'failed' });
      // Log the transition into failure only; during a store outage every event would fail the same way.
      if (!this.#failing) {
        this.#failing = true;
        this.#logger.warn(`${this.#component}: writing event ${item.reason} failed; further failures are counted only`, {
          object: `${item.namespace}/${item.involved.name ?? ''}`,
          error: errorMessage(err),
        });
      }
    }
  }

  #recovered(): void {
    if (!this.#failing) return;
    this.#failing = false;
    this.#logger.info(`${this.#component}: writing events works again`);
  }

  #remember(key: string, entry: Written): void {
    this.#written.delete(key);
    this.#written.set(key, entry);
    if (this.#written.size > this.#cacheSize) {
      const oldest = this.#written.keys().next();
      if (!oldest.done) this.#written.delete(oldest.value);
    }
  }

  #build(item: Pending): CoreEvent {
    // Kubernetes names events `<object>.<unix nanos in hex>`; the sequence number keeps names unique when
    // several events share a millisecond (and under a fake clock).
    const hex = (BigInt(item.firstAt) * 1_000_000n + BigInt(this.#seq++ % 1_000_000)).toString(16);
    const name = `${(item.involved.name ?? '').slice(0, MAX_NAME_LENGTH - hex.length - 1)}.${hex}`;
    return {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace: item.namespace },
      involvedObject: item.involved,
      reason: item.reason,
      message: item.message,
      type: item.type,
      source: this.#instance === undefined ? { component: this.#component } : { component: this.#component, host: this.#instance },
      reportingComponent: this.#component,
      ...(this.#instance === undefined ? {} : { reportingInstance: this.#instance }),
      firstTimestamp: timestamp(item.firstAt),
      lastTimestamp: timestamp(item.lastAt),
      count: item.count,
    };
  }
}

function referenceTo(obj: KubeObject | DeepReadonly<KubeObject>): ObjectReference {
  const m = obj.metadata;
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: m.name ?? '',
    ...(m.namespace ? { namespace: m.namespace } : {}),
    ...(m.uid ? { uid: m.uid } : {}),
    ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
  };
}

/** RFC 3339 with second precision, as Kubernetes serialises metav1.Time. */
function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
