// One change stream (ndjson or SSE lines) to one HTTP reader, with memory bounded however slow the reader is: while
// the socket is full, events are held by key (the latest of a key wins) and sent on 'drain'; heartbeats are dropped
// while it is full (the stream is evidently alive). Used by every watch endpoint of the data-plane services.

import type { ServerResponse } from 'node:http';

export class CoalescingStream<E> {
  readonly #res: ServerResponse;
  readonly #keyOf: (ev: E) => string;
  readonly #format: (ev: E | { type: 'HEARTBEAT' }) => string;
  readonly #held = new Map<string, E>();
  #blocked = false;

  constructor(res: ServerResponse, keyOf: (ev: E) => string, format: (ev: E | { type: 'HEARTBEAT' }) => string = (ev) => `${JSON.stringify(ev)}\n`) {
    this.#res = res;
    this.#keyOf = keyOf;
    this.#format = format;
    res.on('drain', () => {
      this.#blocked = false;
      const evs = [...this.#held.values()];
      this.#held.clear();
      for (const ev of evs) this.send(ev);
    });
  }

  send(ev: E): void {
    if (this.#blocked) {
      this.#held.set(this.#keyOf(ev), ev);
      return;
    }
    if (!this.#res.write(this.#format(ev))) this.#blocked = true;
  }

  heartbeat(): void {
    if (!this.#blocked) this.#res.write(this.#format({ type: 'HEARTBEAT' }));
  }
}
