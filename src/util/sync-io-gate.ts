// Decides per call whether small file I/O runs synchronously on the event-loop thread. A pread or pwrite that the
// page cache serves costs a few µs, or a memcpy of data still hot in this core's cache, while the same call through
// the libuv thread pool costs a thread hand-off each way (futex wake, context switch, completion wake-up) and copies
// data another core touched last. A sync call that turns out slow (the page was not cached, dirty-page throttling)
// switches the gate off for a while, so that a slow or cold disk never stalls the event loop for long and still
// gets queue depth from the thread pool. Used by replica directories (replica/storage.ts) and by the chunks a
// backing-image sync writes (bim/chunksink.ts).

import { performance } from 'node:perf_hooks';

export interface SyncIoOptions {
  /** Largest read or write done synchronously (default 64 KiB; 0 disables sync I/O). */
  maxBytes?: number;
  /** A sync call slower than this means the disk, not the page cache, answered (default 1 ms). */
  slowMs?: number;
  /** How long async I/O is used after a slow sync call (default 1000 ms). */
  backoffMs?: number;
  /** Clock in ms (tests); default performance.now. */
  now?: () => number;
}

const SLOW_IN_A_ROW = 3;
/**
 * A single call this many times slower than `slowMs` closes the gate at once: preemption of a thread on a busy
 * machine does not last that long, a disk that throttles writes does, and every such call stalls the event loop.
 */
const STALL_FACTOR = 20;

/** Decides per call whether small file I/O runs synchronously; shared by the files of one disk. */
export class SyncIoGate {
  readonly #maxBytes: number;
  readonly #slowMs: number;
  readonly #backoffMs: number;
  readonly #now: () => number;
  #offUntil = 0;
  #slowInARow = 0;

  constructor(opts: SyncIoOptions = {}) {
    this.#maxBytes = opts.maxBytes ?? 64 * 1024;
    this.#slowMs = opts.slowMs ?? 1;
    this.#backoffMs = opts.backoffMs ?? 1000;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Runs `op` synchronously when `bytes` is small and sync I/O has been fast; undefined when the caller must go async. */
  run<T>(bytes: number, op: () => T): T | undefined {
    if (bytes > this.#maxBytes) return undefined;
    const start = this.#now();
    if (this.#offUntil !== 0) {
      if (start < this.#offUntil) return undefined;
      this.#offUntil = 0;
    }
    const result = op();
    const end = this.#now();
    // Several slow calls in a row, not one: on a busy machine a single call is slow whenever the thread happens to
    // be preempted, which says nothing about the disk. A stall, though, is never preemption.
    const took = end - start;
    if (took <= this.#slowMs) this.#slowInARow = 0;
    else if (++this.#slowInARow >= SLOW_IN_A_ROW || took > STALL_FACTOR * this.#slowMs) {
      this.#slowInARow = 0;
      this.#offUntil = end + this.#backoffMs;
    }
    return result;
  }
}
