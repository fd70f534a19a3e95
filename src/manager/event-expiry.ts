// Events expire, as in Kubernetes (the API server's --event-ttl, one hour by default): without it every retry loop
// and every object ever made leaves Events behind for good, and a client allowed to create Events (or to make
// controllers record them) grows the store without bound. A sweep every minute deletes the Events whose last
// occurrence (lastTimestamp, else eventTime, else creation) is older than the TTL; the recorder's merging of an
// identical event into one Event with a count keeps a live one fresh.

import type { CoreEvent } from '../api/index.js';
import { isNotFound } from '../store/errors.js';
import type { Store } from '../store/types.js';

export const DEFAULT_EVENT_TTL_MS = 60 * 60 * 1000;

export interface EventExpiryOptions {
  store: Store;
  ttlMs: number;
  /** How often to sweep (default: a minute, or the TTL when shorter). */
  intervalMs?: number;
  signal: AbortSignal;
  log: (line: string) => void;
  now?: () => number;
}

/** When an Event last happened, in ms since the epoch (NaN when it says nothing usable). */
export function lastSeen(e: CoreEvent): number {
  const t = e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp;
  return t ? Date.parse(t) : NaN;
}

/** Deletes expired Events once; returns how many went. */
export async function expireEvents(store: Store, ttlMs: number, now: number, signal?: AbortSignal): Promise<number> {
  const { items } = await store.list<CoreEvent>('Event');
  let n = 0;
  for (const e of items) {
    if (signal?.aborted) break;
    const at = lastSeen(e);
    if (!(now - at > ttlMs)) continue;
    try {
      await store.delete('Event', e.metadata.namespace ?? '', e.metadata.name ?? '');
      n++;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  return n;
}

/** Sweeps until `signal` aborts; resolves when the last sweep has finished. */
export function startEventExpiry(o: EventExpiryOptions): Promise<void> {
  const interval = o.intervalMs ?? Math.min(60_000, Math.max(1000, o.ttlMs));
  const now = o.now ?? Date.now;
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(async () => {
      try {
        const n = await expireEvents(o.store, o.ttlMs, now(), o.signal);
        if (n > 0) o.log(`stratum manager: ${n} Event(s) older than ${o.ttlMs / 1000} s expired`);
      } catch (err) {
        if (!o.signal.aborted) o.log(`stratum manager: expiring Events failed: ${(err as Error).message}`);
      }
    });
  }, interval);
  timer.unref();
  return new Promise((resolve) => {
    const stop = () => {
      clearInterval(timer);
      void running.then(resolve);
    };
    if (o.signal.aborted) stop();
    else o.signal.addEventListener('abort', stop, { once: true });
  });
}
