// A FIFO of received byte chunks for the incremental protocol parsers (NBD, the replica wire protocol). Bytes are
// handed out as views of the received chunks whenever they lie inside one chunk; only data that straddles chunk
// boundaries is copied (once). It counts consumed bytes so parsers can report absolute stream offsets in errors.

import { ioBuffers } from './buffer-pool.js';

export class ByteQueue {
  #chunks: Uint8Array[] = [];
  /** Read position inside #chunks[0]. */
  #head = 0;
  #length = 0;
  #consumed: number;

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

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.byteLength;
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
      const first = this.#chunks[0]!;
      const avail = first.byteLength - this.#head;
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

  /** Consumes everything buffered and returns it as views (used when a connection switches parsers). */
  takeAll(): Uint8Array[] {
    const out = this.#chunks.map((c, i) => (i === 0 ? c.subarray(this.#head) : c));
    this.#consumed += this.#length;
    this.#chunks = [];
    this.#head = 0;
    this.#length = 0;
    return out.filter((c) => c.byteLength > 0);
  }

  #read(n: number, consume: boolean): Uint8Array {
    if (n > this.#length) throw new RangeError(`ByteQueue: ${n} bytes requested, ${this.#length} buffered`);
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0]!;
    if (first.byteLength - this.#head >= n) {
      const view = first.subarray(this.#head, this.#head + n);
      if (consume) this.skip(n);
      return view;
    }
    // Straddles chunks: one copy into a buffer of the I/O pool, which the caller may give back (large payloads).
    // Not zero-filled: the loop below writes all n bytes.
    const out = ioBuffers.take(n);
    let filled = 0;
    let head = this.#head;
    for (const chunk of this.#chunks) {
      const part = chunk.subarray(head, head + (n - filled));
      out.set(part, filled);
      filled += part.byteLength;
      head = 0;
      if (filled === n) break;
    }
    if (consume) this.skip(n);
    return out;
  }
}
