// A lock over ranges [start, end) with shared and exclusive holders, granted in request order among overlapping
// requests. The replica serialises overlapping mutations with it (a read-modify-write must not interleave with
// another write of the same block); the engine uses it to keep rebuild copies and frontend writes of the same
// blocks apart, and takes the whole range exclusively as an I/O barrier.
//
// Sharp edge: `acquire` registers the request synchronously, before its first await. Callers that issue requests
// in a given order (a connection dispatching requests as they arrive) therefore get overlapping ranges granted in
// that same order, which is what keeps every replica applying overlapping writes in the engine's order.

export type LockMode = 'shared' | 'exclusive';

interface Holder {
  readonly start: number;
  readonly end: number;
  readonly mode: LockMode;
}

interface Waiter extends Holder {
  readonly grant: () => void;
}

function conflicts(a: Holder, b: Holder): boolean {
  return a.start < b.end && b.start < a.end && (a.mode === 'exclusive' || b.mode === 'exclusive');
}

export class RangeLock {
  readonly #held = new Set<Holder>();
  #waiting: Waiter[] = [];

  /** Resolves with the release function once [start, end) is granted in `mode`. */
  acquire(start: number, end: number, mode: LockMode, opts: { signal?: AbortSignal | undefined } = {}): Promise<() => void> {
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const req: Holder = { start, end, mode };
    if (!this.#blocked(req, this.#waiting.length)) return Promise.resolve(this.#grant(req));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiting = this.#waiting.filter((w) => w !== waiter);
        reject(signal?.reason);
        this.#wake(); // a removed waiter may have been holding back later ones
      };
      const waiter: Waiter = {
        ...req,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#grant(req));
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  /** Ranges held and waiting (for tests and status). */
  get stats(): { held: number; waiting: number } {
    return { held: this.#held.size, waiting: this.#waiting.length };
  }

  #grant(h: Holder): () => void {
    this.#held.add(h);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#held.delete(h);
      this.#wake();
    };
  }

  /** Blocked by a holder, or by an earlier waiter (first `before` of the queue) that it overlaps. */
  #blocked(req: Holder, before: number): boolean {
    for (const h of this.#held) if (conflicts(h, req)) return true;
    for (let i = 0; i < before; i++) if (conflicts(this.#waiting[i]!, req)) return true;
    return false;
  }

  #wake(): void {
    const still: Waiter[] = [];
    const granted: Waiter[] = [];
    for (const w of this.#waiting) {
      // Granted waiters of this pass are already in #held; still-queued ones ahead of it keep their turn.
      let blocked = false;
      for (const h of this.#held) if (conflicts(h, w)) blocked = true;
      for (const s of still) if (conflicts(s, w)) blocked = true;
      if (blocked) still.push(w);
      else {
        granted.push(w);
        this.#held.add(w); // reserve now so later waiters in this pass see it
      }
    }
    this.#waiting = still;
    for (const w of granted) {
      this.#held.delete(w);
      w.grant();
    }
  }
}
