// Push monitors of data-plane processes: one long-lived change stream per process (`GET <url>`, one line per
// change), each line triggering a coalesced refresh of the object's status, or applied as it is; a stream that
// begins with a snapshot of the whole state is applied line by line with no refresh at all. Longhorn polls every
// 1–3 s per object and backs that with 30 s resyncs; a stream costs nothing while nothing changes and reacts at once
// when it does.

import { dataPlaneHeaders } from './http-json.js';

export interface MonitorHandlers {
  /**
   * Called (coalesced, never concurrently) when the stream (re)connects, and after a change line that `onEvent`
   * did not apply. Heartbeat lines (`{"type":"HEARTBEAT"}`) trigger nothing.
   *
   * Without it, the stream itself starts with the whole state (a snapshot line `onEvent` applies), in order with
   * the changes after it: nothing is read on the side (a read answered after a change it predates would put the
   * older view back over the newer one), and a line `onEvent` cannot apply makes the monitor reconnect for a new
   * snapshot.
   */
  refresh?(signal: AbortSignal): Promise<void>;
  /** A change line, parsed; return true when it was applied as it is (no refresh needed). */
  onEvent?(event: Record<string, unknown>): boolean;
  /** The stream broke; it is retried after `retryMs`. */
  down?(err: unknown): void;
}

interface Running {
  url: string;
  ac: AbortController;
  done: Promise<void>;
}

export class Monitors {
  readonly #running = new Map<string, Running>();
  readonly #retryMs: number;
  readonly #minIntervalMs: number;
  readonly #silenceMs: number;

  /**
   * `silenceMs`: a stream that sends nothing for this long, not even a heartbeat (every server sends one at least
   * every 15 s), or a server that takes this long to answer at all, is taken as broken: the monitor reports it down
   * and reconnects (default 45 s). A frozen pod or a lost peer is noticed then, not when the HTTP client gives up.
   */
  constructor(opts: { retryMs?: number; minIntervalMs?: number; silenceMs?: number } = {}) {
    this.#retryMs = opts.retryMs ?? 1000;
    this.#minIntervalMs = opts.minIntervalMs ?? 200;
    this.#silenceMs = opts.silenceMs ?? 45_000;
  }

  has(key: string, url: string): boolean {
    return this.#running.get(key)?.url === url;
  }

  /** Starts a monitor for `key` on `url` (restarting it if the URL changed). */
  ensure(key: string, url: string, h: MonitorHandlers): void {
    const cur = this.#running.get(key);
    if (cur?.url === url) return;
    if (cur) cur.ac.abort();
    const ac = new AbortController();
    const done = this.#loop(url, h, ac.signal);
    this.#running.set(key, { url, ac, done });
  }

  stop(key: string): void {
    const cur = this.#running.get(key);
    if (!cur) return;
    cur.ac.abort();
    this.#running.delete(key);
  }

  async stopAll(): Promise<void> {
    const all = [...this.#running.values()];
    this.#running.clear();
    for (const r of all) r.ac.abort();
    await Promise.allSettled(all.map((r) => r.done));
  }

  async #loop(url: string, h: MonitorHandlers, signal: AbortSignal): Promise<void> {
    // A refresh that fails (the source did not answer, the store refused the status write) is tried again: the
    // stream only carries changes, so without it the status would stay stale until the stream reconnects.
    const refresh: () => void = coalesce(async (s) => {
      try {
        await h.refresh?.(s);
      } catch (err) {
        if (!s.aborted) setTimeout(refresh, this.#retryMs).unref();
        throw err;
      }
    }, this.#minIntervalMs, signal);
    while (!signal.aborted) {
      // This connection ends with the monitor, or when it stays silent too long.
      const cut = new AbortController();
      const connection = AbortSignal.any([signal, cut.signal]);
      let silence: NodeJS.Timeout | undefined;
      const heard = (): void => {
        clearTimeout(silence);
        silence = setTimeout(() => cut.abort(new Error(`${url}: nothing heard for ${this.#silenceMs / 1000} s, not even a heartbeat; reconnecting`)), this.#silenceMs);
        silence.unref();
      };
      heard();
      try {
        const res = await fetch(url, { signal: connection, headers: { ...dataPlaneHeaders(), accept: 'application/x-ndjson, application/json' } });
        if (!res.ok || !res.body) throw new Error(`${url} answered HTTP ${res.status}`);
        if (h.refresh) refresh();
        const decoder = new TextDecoder();
        let partial = '';
        for await (const chunk of res.body) {
          heard();
          const lines = (partial + decoder.decode(chunk as Uint8Array, { stream: true })).split('\n');
          partial = lines.pop() ?? '';
          if (partial.length > 16 * 1024 * 1024) throw new Error(`${url}: a change line over 16 MiB`);
          let stale = false;
          for (const line of lines) {
            if (line.trim() === '') continue;
            let ev: Record<string, unknown> | undefined;
            try {
              ev = JSON.parse(line) as Record<string, unknown>;
            } catch {
              ev = undefined; // not ours to judge: refresh from the source
            }
            if (ev?.['type'] === 'HEARTBEAT') continue;
            if (!ev || !h.onEvent?.(ev)) stale = true;
          }
          if (stale && !h.refresh) throw new Error(`${url}: a change line that could not be applied; reconnecting for a new snapshot`);
          if (stale) refresh();
        }
        throw new Error(`${url}: the change stream ended`);
      } catch (err) {
        if (signal.aborted) return;
        h.down?.(cut.signal.aborted ? cut.signal.reason : err);
        await new Promise((r) => setTimeout(r, this.#retryMs));
      } finally {
        clearTimeout(silence);
      }
    }
  }
}

/** Returns a trigger that runs `fn` soon, never twice at once, at most once per `minIntervalMs`, and once more if triggered while running. */
export function coalesce(fn: (signal: AbortSignal) => Promise<void>, minIntervalMs: number, signal: AbortSignal): () => void {
  let running = false;
  let dirty = false;
  let last = 0;
  const run = async () => {
    if (running) {
      dirty = true;
      return;
    }
    running = true;
    try {
      do {
        dirty = false;
        const wait = last + minIntervalMs - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (signal.aborted) return;
        last = Date.now();
        await fn(signal).catch(() => undefined);
      } while (dirty && !signal.aborted);
    } finally {
      running = false;
    }
  };
  return () => void run();
}
