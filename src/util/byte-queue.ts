// A FIFO of received byte chunks for the incremental protocol parsers (NBD, the replica wire protocol). It counts
// consumed bytes so parsers can report absolute stream offsets in errors.
//
// Chunks come in two kinds:
//   owned      the queue may keep them as long as it likes; bytes inside one chunk are handed out as views, only
//              data that straddles chunk boundaries is copied (once).
//   transient  a socket's reusable read buffer (src/util/socket-reads.ts): valid only until the read callback
//              returns. What a parser takes from it is copied out, and before the callback returns the parser calls
//              `settle`, which copies whatever is still unconsumed. `settle(want)` with the length of the payload the
//              parser waits for opens a fill target: one pooled buffer of exactly that length that the following
//              chunks are copied into, so a 1 MiB write costs one copy and no allocation however it is split.
//              While the target is open, `fillSpace` offers its unfilled part as the socket's next read buffer
//              (socket-reads.ts): the kernel then reads the payload straight into it and `push` finds the bytes
//              already in place, so a large payload costs no copy in user space at all.
//
// Why transient chunks at all: a socket that allocates a fresh buffer per read makes hundreds of MiB per second of
// external memory, which V8 answers with a full mark-compact every few tens of milliseconds (profiles of a
// sequential write showed half the instance manager's CPU in the collector).

import { ioBuffers } from './buffer-pool.js';

interface Chunk {
  bytes: Uint8Array;
  transient: boolean;
}

/** Below this a fill target is not worth a pooled buffer: the tail is copied as is. */
const FILL_MIN = 4096;

/**
 * Below this many missing bytes a fill target is not offered as a read buffer: a read that may stop at the payload's
 * end costs a system call, copying a short tail does not.
 */
const DIRECT_READ_MIN = 64 * 1024;

export class ByteQueue {
  #chunks: Chunk[] = [];
  /** Read position inside #chunks[0]. */
  #head = 0;
  #length = 0;
  #consumed: number;
  /** While set, pushed bytes go into `target` until it holds `target.byteLength` bytes. */
  #fill: { target: Uint8Array; filled: number } | undefined;

  constructor(startOffset = 0) {
    this.#consumed = startOffset;
  }

  /** Bytes buffered and not yet consumed. */
  get length(): number {
    return this.#length;
  }

  /** Absolute stream offset of the next unconsumed byte. */
  get offset(): number {
    return this.#consumed;
  }

  /** Appends a chunk. A transient one must not be referenced after `settle` (see the top comment). */
  push(chunk: Uint8Array, transient = false): void {
    if (chunk.byteLength === 0) return;
    const fill = this.#fill;
    if (fill) {
      const n = Math.min(chunk.byteLength, fill.target.byteLength - fill.filled);
      // A read into fillSpace() put the bytes in place already.
      const inPlace = chunk.buffer === fill.target.buffer && chunk.byteOffset === fill.target.byteOffset + fill.filled;
      if (!inPlace) fill.target.set(chunk.subarray(0, n), fill.filled);
      fill.filled += n;
      this.#length += n;
      if (fill.filled === fill.target.byteLength) {
        this.#chunks.push({ bytes: fill.target, transient: false });
        this.#fill = undefined;
      }
      if (n === chunk.byteLength) return;
      chunk = chunk.subarray(n);
    }
    this.#chunks.push({ bytes: chunk, transient });
    this.#length += chunk.byteLength;
  }

  /**
   * Makes every buffered byte owned (copies what is left of transient chunks). With `want` larger than what is
   * buffered, the next `want` bytes are gathered into one pooled buffer that `take(want)` then returns whole.
   */
  settle(want = 0): void {
    if (this.#fill) return; // everything buffered is in the target already
    if (want > this.#length && want >= FILL_MIN) {
      const target = ioBuffers.take(want);
      let filled = 0;
      let head = this.#head;
      for (const c of this.#chunks) {
        const part = c.bytes.subarray(head);
        target.set(part, filled);
        filled += part.byteLength;
        head = 0;
      }
      this.#chunks = [];
      this.#head = 0;
      this.#fill = { target, filled };
      return;
    }
    for (let i = 0; i < this.#chunks.length; i++) {
      const c = this.#chunks[i]!;
      if (!c.transient) continue;
      const start = i === 0 ? this.#head : 0;
      this.#chunks[i] = { bytes: Buffer.from(c.bytes.subarray(start)), transient: false };
      if (i === 0) this.#head = 0;
    }
  }

  /**
   * The unfilled part of the open fill target when at least `min` bytes are missing, else undefined. A socket may
   * read into it directly; the chunk it then pushes must be a view from the start of this space.
   */
  fillSpace(min = DIRECT_READ_MIN): Uint8Array | undefined {
    const fill = this.#fill;
    if (!fill || fill.target.byteLength - fill.filled < min) return undefined;
    return fill.target.subarray(fill.filled);
  }

  /** The next `n` bytes without consuming them. Caller must check `length >= n` first. */
  peek(n: number): Uint8Array {
    return this.#read(n, false);
  }

  /** Consumes and returns the next `n` bytes. Caller must check `length >= n` first. */
  take(n: number): Uint8Array {
    return this.#read(n, true);
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let left = Math.min(n, this.#length);
    const dropped = left;
    while (left > 0) {
      const first = this.#chunks[0];
      if (!first) {
        // The rest is in the fill target: drop it from there (a skipped payload is never taken).
        const fill = this.#fill!;
        fill.filled -= left;
        fill.target.copyWithin(0, left, left + fill.filled);
        left = 0;
        break;
      }
      const avail = first.bytes.byteLength - this.#head;
      if (left < avail) {
        this.#head += left;
        left = 0;
      } else {
        left -= avail;
        this.#chunks.shift();
        this.#head = 0;
      }
    }
    this.#length -= dropped;
    this.#consumed += dropped;
    return dropped;
  }

  /** Consumes everything buffered and returns it as owned chunks (used when a connection switches parsers). */
  takeAll(): Uint8Array[] {
    this.settle();
    const out = this.#chunks.map((c, i) => (i === 0 ? c.bytes.subarray(this.#head) : c.bytes));
    const fill = this.#fill;
    if (fill) out.push(fill.target.subarray(0, fill.filled));
    this.#consumed += this.#length;
    this.#chunks = [];
    this.#head = 0;
    this.#length = 0;
    this.#fill = undefined;
    return out.filter((c) => c.byteLength > 0);
  }

  #read(n: number, consume: boolean): Uint8Array {
    if (n > this.#length) throw new RangeError(`ByteQueue: ${n} bytes requested, ${this.#length} buffered`);
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    if (!first) {
      // Fewer bytes than a fill target gathers: they are all in the target so far.
      const out = copyOf(this.#fill!.target.subarray(0, n));
      if (consume) this.skip(n);
      return out;
    }
    if (first.bytes.byteLength - this.#head >= n) {
      const view = first.bytes.subarray(this.#head, this.#head + n);
      // A transient view would be overwritten by the next read: hand out a copy (pooled when large).
      const out = first.transient ? copyOf(view) : view;
      if (consume) this.skip(n);
      return out;
    }
    // Straddles chunks: one copy into a buffer of the I/O pool, which the caller may give back (large payloads).
    // Not zero-filled: the loop below writes all n bytes.
    const out = ioBuffers.take(n);
    let filled = 0;
    let head = this.#head;
    for (const chunk of this.#chunks) {
      const part = chunk.bytes.subarray(head, head + (n - filled));
      out.set(part, filled);
      filled += part.byteLength;
      head = 0;
      if (filled === n) break;
    }
    if (consume) this.skip(n);
    return out;
  }
}

function copyOf(view: Uint8Array): Uint8Array {
  const out = ioBuffers.take(view.byteLength);
  out.set(view);
  return out;
}
