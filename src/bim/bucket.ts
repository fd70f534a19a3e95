// The sender's bandwidth cap: one token bucket per process (tokens are bytes, refilled at `rate` per second up to
// `burst`), and a Transform that takes tokens for every piece before passing it on. Time is injected so the refill
// arithmetic is tested without sleeping.

import { Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from './states.js';

export interface BucketTime extends Clock {
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

const realTime: BucketTime = {
  now: () => performance.now(),
  sleep: (ms, signal) => sleep(ms, undefined, signal ? { signal } : {}),
};

export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  readonly #time: BucketTime;
  #tokens: number;
  #last: number;
  // Waiters are served in order so one large sender cannot starve the others.
  #queue: Promise<void> = Promise.resolve();

  /** `rate` bytes per second; `burst` defaults to a tenth of a second's worth, at least 64 KiB. */
  constructor(rate: number, opts: { burst?: number; time?: BucketTime } = {}) {
    this.rate = rate;
    this.burst = opts.burst ?? Math.max(64 * 1024, Math.ceil(rate / 10));
    this.#time = opts.time ?? realTime;
    this.#tokens = this.burst;
    this.#last = this.#time.now();
  }

  #refill(): void {
    const now = this.#time.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
  }

  /** Milliseconds until `n` tokens (n ≤ burst) are there; 0 when they are now. Pure apart from the refill. */
  delayFor(n: number): number {
    this.#refill();
    return this.#tokens >= n ? 0 : Math.ceil(((n - this.#tokens) / this.rate) * 1000);
  }

  /** Waits until `n` bytes may be sent, then spends them. Pieces larger than the burst are taken in parts. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    const run = async () => {
      let left = n;
      while (left > 0) {
        const part = Math.min(left, this.burst);
        for (;;) {
          signal?.throwIfAborted();
          const wait = this.delayFor(part);
          if (wait === 0) break;
          await this.#time.sleep(wait, signal);
        }
        this.#tokens -= part;
        left -= part;
      }
    };
    const p = this.#queue.then(run);
    this.#queue = p.catch(() => undefined);
    return p;
  }
}

/**
 * Passes bytes through, counting them (`onBytes`) and, when a bucket is given, pacing them. Destroying the stream
 * (the client went away) ends any wait.
 */
export function meteredStream(opts: { bucket: TokenBucket | undefined; onBytes: (n: number) => void }): Transform {
  const ac = new AbortController();
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (!opts.bucket) {
        opts.onBytes(chunk.length);
        cb(null, chunk);
        return;
      }
      opts.bucket.take(chunk.length, ac.signal).then(
        () => {
          opts.onBytes(chunk.length);
          cb(null, chunk);
        },
        (err: unknown) => cb(err as Error),
      );
    },
    destroy(err, cb) {
      ac.abort();
      cb(err);
    },
  });
  return t;
}
