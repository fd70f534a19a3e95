// The controller kit: what every Stratum controller is built from. A shared, indexed informer cache per kind over
// the Store (list + watch, re-list on Gone), a de-duplicating work queue with per-key exclusivity and rate-limited
// retries, a reconcile runner with Prometheus metrics, an Event recorder, and an injectable clock so tests drive
// time. Controllers enqueue only the keys an event really affects (look them up with an index) and never fan out
// over all objects on a timer.

export { FakeClock, realClock, settle, type Clock, type TimerHandle } from './clock.js';
export { ExponentialRateLimiter, type ExponentialRateLimiterOptions, type RateLimiter } from './rate-limiter.js';
export { WorkQueue, type WorkQueueOptions } from './work-queue.js';
export { Indexer, deepFreeze, type IndexFunc } from './cache.js';
export { Informer, type EventHandlers, type HandlerOptions, type InformerOptions } from './informer.js';
export { InformerFactory, type InformerFactoryOptions } from './informer-factory.js';
export {
  Controller,
  type ControllerOptions,
  type ControllerQueueOptions,
  type ReconcileFunc,
  type ReconcileResult,
} from './controller.js';
export { EventRecorder, type EventRecorderOptions } from './events.js';
export { keyFor, keyOf, splitKey } from './keys.js';
export { consoleLogger, errorMessage, silentLogger, type LogFields, type Logger } from './log.js';
export { metricsRegistry } from './metrics.js';
