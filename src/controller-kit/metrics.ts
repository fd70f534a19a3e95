// Prometheus metrics of the controller kit (work queues, reconciles, events). Metrics live on a registry passed
// in by the owner (the manager's /metrics), defaulting to `metricsRegistry` here. Each metric is created once per
// registry and shared by every queue/controller through its `name` label, because prom-client refuses to
// register the same metric name twice on one registry.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Default registry for everything the controller kit measures. */
export const metricsRegistry = new Registry();

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

function getOrCreate<M extends AnyMetric>(registry: Registry, name: string, create: () => M): M {
  // Reuse an existing metric with this name: a second queue on the same registry must add label values to the
  // first queue's metric, not register a duplicate.
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

/** Exponential buckets from 1 ms to ~16 min, in seconds: covers a fast cache-only reconcile and a long backoff. */
const DURATION_BUCKETS = [0.001, 0.004, 0.016, 0.064, 0.256, 1.024, 4.096, 16.384, 65.536, 262.144, 1048.576];

export interface QueueMetrics {
  depth: Gauge<'name'>;
  adds: Counter<'name'>;
  retries: Counter<'name'>;
  queueDuration: Histogram<'name'>;
  workDuration: Histogram<'name'>;
}

const queueCache = new WeakMap<Registry, QueueMetrics>();

export function queueMetrics(registry: Registry): QueueMetrics {
  const cached = queueCache.get(registry);
  if (cached) return cached;
  const registers = [registry];
  const m: QueueMetrics = {
    depth: getOrCreate(registry, 'stratum_workqueue_depth', () =>
      new Gauge({ name: 'stratum_workqueue_depth', help: 'Keys waiting in the work queue', labelNames: ['name'], registers }),
    ),
    adds: getOrCreate(registry, 'stratum_workqueue_adds_total', () =>
      new Counter({ name: 'stratum_workqueue_adds_total', help: 'Keys added to the work queue (after de-duplication)', labelNames: ['name'], registers }),
    ),
    retries: getOrCreate(registry, 'stratum_workqueue_retries_total', () =>
      new Counter({ name: 'stratum_workqueue_retries_total', help: 'Rate-limited re-adds to the work queue', labelNames: ['name'], registers }),
    ),
    queueDuration: getOrCreate(registry, 'stratum_workqueue_queue_duration_seconds', () =>
      new Histogram({
        name: 'stratum_workqueue_queue_duration_seconds',
        help: 'Time a key waited in the queue before a worker took it',
        labelNames: ['name'],
        buckets: DURATION_BUCKETS,
        registers,
      }),
    ),
    workDuration: getOrCreate(registry, 'stratum_workqueue_work_duration_seconds', () =>
      new Histogram({
        name: 'stratum_workqueue_work_duration_seconds',
        help: 'Time a worker spent on a key',
        labelNames: ['name'],
        buckets: DURATION_BUCKETS,
        registers,
      }),
    ),
  };
  queueCache.set(registry, m);
  return m;
}

export interface ControllerMetrics {
  reconciles: Counter<'controller' | 'result'>;
  errors: Counter<'controller'>;
  duration: Histogram<'controller'>;
}

const controllerCache = new WeakMap<Registry, ControllerMetrics>();

export function controllerMetrics(registry: Registry): ControllerMetrics {
  const cached = controllerCache.get(registry);
  if (cached) return cached;
  const registers = [registry];
  const m: ControllerMetrics = {
    reconciles: getOrCreate(registry, 'stratum_controller_reconcile_total', () =>
      new Counter({
        name: 'stratum_controller_reconcile_total',
        help: 'Reconciles by result (success, requeue, conflict, error)',
        labelNames: ['controller', 'result'],
        registers,
      }),
    ),
    errors: getOrCreate(registry, 'stratum_controller_reconcile_errors_total', () =>
      new Counter({
        name: 'stratum_controller_reconcile_errors_total',
        help: 'Reconciles that failed with an error other than a conflict',
        labelNames: ['controller'],
        registers,
      }),
    ),
    duration: getOrCreate(registry, 'stratum_controller_reconcile_duration_seconds', () =>
      new Histogram({
        name: 'stratum_controller_reconcile_duration_seconds',
        help: 'Time one reconcile took',
        labelNames: ['controller'],
        buckets: DURATION_BUCKETS,
        registers,
      }),
    ),
  };
  controllerCache.set(registry, m);
  return m;
}

export interface EventMetrics {
  written: Counter<'component' | 'result'>;
  dropped: Counter<'component'>;
}

const eventCache = new WeakMap<Registry, EventMetrics>();

export function eventMetrics(registry: Registry): EventMetrics {
  const cached = eventCache.get(registry);
  if (cached) return cached;
  const registers = [registry];
  const m: EventMetrics = {
    written: getOrCreate(registry, 'stratum_events_written_total', () =>
      new Counter({
        name: 'stratum_events_written_total',
        help: 'Event writes by result (created, patched, failed)',
        labelNames: ['component', 'result'],
        registers,
      }),
    ),
    dropped: getOrCreate(registry, 'stratum_events_dropped_total', () =>
      new Counter({
        name: 'stratum_events_dropped_total',
        help: 'Events dropped because the recorder queue was full or closed',
        labelNames: ['component'],
        registers,
      }),
    ),
  };
  eventCache.set(registry, m);
  return m;
}
