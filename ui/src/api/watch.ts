// Live collections: list, then watch from the list's resourceVersion with a streaming fetch (newline-delimited
// JSON, as kubectl does; EventSource cannot send the Authorization header). A stream that ends is resumed from
// the last version seen, so nothing is missed across manager restarts; a 410 re-lists. Snapshots go into the
// TanStack Query cache, so components read them with useQuery and re-render only when they change.

import { useQuery, type QueryClient } from '@tanstack/react-query';
import { createContext, useContext, useEffect } from 'react';
import { ApiError, apiFetch, apiJson } from './http.js';
import { reportConnection } from './connection.js';
import { KINDS, type KindKey } from './kinds.js';
import type { CoreEvent, KubeObject } from './types.js';

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'ERROR' | 'BOOKMARK';
  object: KubeObject & { code?: number; message?: string };
}

/** Coalesces bursts (progress updates) into one render; far below the 2 s a state change may take to show. */
const FLUSH_MS = 50;
/** A collection nobody shows is kept this long, so moving back to a page does not re-list. */
const LINGER_MS = 10_000;
/**
 * Watch streams the page keeps open at most, beyond those shown (no page shows more than five kinds). A browser
 * opens at most six HTTP/1.1 connections per host, and every watch holds one for its whole life: with six open,
 * a click's request waits until a lingering watch ends (that was up to 30 s). Collections nobody shows are stopped
 * first, oldest first, so at least one connection stays free for actions.
 */
const MAX_STREAMS = 4;

class Collection {
  readonly #items = new Map<string, KubeObject>();
  #rv = '';
  #refs = 0;
  #stopTimer: ReturnType<typeof setTimeout> | undefined;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #ac = new AbortController();
  readonly first: Promise<KubeObject[]>;
  #resolveFirst!: (items: KubeObject[]) => void;

  constructor(
    readonly path: string,
    readonly selector: string,
    readonly onChange: (items: KubeObject[]) => void,
    readonly onStop: () => void,
  ) {
    this.first = new Promise((r) => (this.#resolveFirst = r));
    void this.#run(this.#ac.signal);
  }

  /** When the last holder let go; undefined while shown (or about to be: a new one is retained by its effect). */
  idleSince: number | undefined;

  retain(): () => void {
    this.#refs++;
    this.idleSince = undefined;
    clearTimeout(this.#stopTimer);
    return () => {
      if (--this.#refs > 0) return;
      this.idleSince = Date.now();
      this.#stopTimer = setTimeout(() => this.stop(), LINGER_MS);
    };
  }

  stop(): void {
    if (this.#ac.signal.aborted) return;
    clearTimeout(this.#stopTimer);
    // A flush still pending would write this stopped collection's snapshot into the cache, over the data of the
    // collection that replaces it for the same key: a row deleted meanwhile would stay on screen for good.
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#ac.abort();
    this.onStop();
  }

  #snapshot(): KubeObject[] {
    return [...this.#items.values()].sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
  }

  #flushSoon(): void {
    if (this.#flushTimer) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.onChange(this.#snapshot());
    }, FLUSH_MS);
  }

  #url(watch: boolean): string {
    const q = new URLSearchParams();
    if (this.selector) q.set('fieldSelector', this.selector);
    if (watch) {
      q.set('watch', 'true');
      q.set('resourceVersion', this.#rv);
      q.set('timeoutSeconds', '300');
    }
    const qs = q.toString();
    return qs ? `${this.path}?${qs}` : this.path;
  }

  async #run(signal: AbortSignal): Promise<void> {
    let backoff = 250;
    while (!signal.aborted) {
      try {
        if (!this.#rv) await this.#list(signal);
        const res = await apiFetch(this.#url(true), { signal });
        reportConnection('ok');
        backoff = 250;
        await this.#consume(res, signal);
      } catch (err) {
        if (signal.aborted) return;
        // A server that answers (even with an error) is reachable; only a failed connection is "lost".
        if (!(err instanceof ApiError)) reportConnection('lost', err instanceof Error ? err.message : String(err));
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 4000);
      }
    }
  }

  async #list(signal: AbortSignal): Promise<void> {
    const list = await apiJson<{ items: KubeObject[]; metadata: { resourceVersion?: string } }>(this.#url(false), { signal });
    if (signal.aborted) return;
    reportConnection('ok');
    this.#items.clear();
    for (const o of list.items) this.#items.set(o.metadata.name ?? '', o);
    this.#rv = list.metadata.resourceVersion ?? '0';
    const snap = this.#snapshot();
    this.onChange(snap);
    this.#resolveFirst(snap);
  }

  async #consume(res: Response, signal: AbortSignal): Promise<void> {
    const reader = res.body?.getReader();
    if (!reader) return;
    const decoder = new TextDecoder();
    let buf = '';
    try {
      while (!signal.aborted) {
        const { done, value } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) this.#apply(JSON.parse(line) as WatchEvent);
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  #apply(ev: WatchEvent): void {
    if (this.#ac.signal.aborted) return;
    if (ev.type === 'ERROR') {
      // 410: our version is older than the retained history. Re-list and watch from there.
      if (ev.object.code === 410) this.#rv = '';
      throw new ApiError(ev.object.code ?? 500, 'WatchError', ev.object.message ?? 'watch failed');
    }
    const name = ev.object.metadata.name ?? '';
    if (ev.object.metadata.resourceVersion) this.#rv = ev.object.metadata.resourceVersion;
    if (ev.type === 'BOOKMARK') return;
    if (ev.type === 'DELETED') this.#items.delete(name);
    else this.#items.set(name, ev.object);
    this.#flushSoon();
  }
}

export class WatchHub {
  readonly #collections = new Map<string, Collection>();

  constructor(readonly queryClient: QueryClient) {}

  static queryKey(kind: KindKey, selector: string): readonly unknown[] {
    return ['k8s', kind, selector];
  }

  #get(kind: KindKey, selector: string): Collection {
    const key = `${kind}?${selector}`;
    let c = this.#collections.get(key);
    if (!c) {
      this.#makeRoom();
      const qk = WatchHub.queryKey(kind, selector);
      const fresh: Collection = new Collection(
        KINDS[kind],
        selector,
        (items) => this.queryClient.setQueryData(qk, items),
        () => {
          // Only this collection's own entry and data: a newer one may hold the key already.
          if (this.#collections.get(key) !== fresh) return;
          this.#collections.delete(key);
          this.queryClient.removeQueries({ queryKey: qk });
        },
      );
      this.#collections.set(key, (c = fresh));
    }
    return c;
  }

  /** Stops idle collections, oldest first, until a new stream fits under MAX_STREAMS (shown ones are kept). */
  #makeRoom(): void {
    const idle = [...this.#collections.values()]
      .filter((c) => c.idleSince !== undefined)
      .sort((a, b) => (a.idleSince ?? 0) - (b.idleSince ?? 0));
    while (this.#collections.size >= MAX_STREAMS && idle.length > 0) idle.shift()!.stop();
  }

  first(kind: KindKey, selector: string): Promise<KubeObject[]> {
    return this.#get(kind, selector).first;
  }

  retain(kind: KindKey, selector: string): () => void {
    return this.#get(kind, selector).retain();
  }
}

export const WatchHubContext = createContext<WatchHub | undefined>(undefined);

/** The live list of one kind (sorted by name); undefined until the first list arrived. */
export function useResources<T extends KubeObject>(kind: KindKey, selector = ''): T[] | undefined {
  const hub = useContext(WatchHubContext);
  if (!hub) throw new Error('useResources needs a WatchHubContext provider');
  useEffect(() => hub.retain(kind, selector), [hub, kind, selector]);
  const q = useQuery({
    queryKey: WatchHub.queryKey(kind, selector),
    queryFn: () => hub.first(kind, selector),
    staleTime: Infinity,
    gcTime: Infinity,
    refetchOnWindowFocus: false,
  });
  return q.data as T[] | undefined;
}

/** Events about one object, newest first. */
export function useEvents(kind: string, name: string): CoreEvent[] | undefined {
  const items = useResources<CoreEvent>('events', `involvedObject.kind=${kind},involvedObject.name=${name}`);
  return items
    ?.slice()
    .sort((a, b) => (b.lastTimestamp ?? b.metadata.creationTimestamp ?? '').localeCompare(a.lastTimestamp ?? a.metadata.creationTimestamp ?? ''));
}
