// A FIFO of received byte chunks for the protocol parsers. Bytes are handed out as views of the received chunks when
// they lie inside one chunk (a WRITE payload that arrived in one piece is never copied); only data straddling chunks
// is copied, once. It counts consumed bytes so parse errors can name absolute stream offsets.

export class ChunkQueue {
  #chunks: Uint8Array[] = [];
  /** Read position inside #chunks[0]. */
  #head = 0;
  #length = 0;
  #consumed = 0;

  /** Bytes buffered and not yet consumed. */
  get length(): number {
    return this.#length;
  }

  /** Stream offset of the next unconsumed byte. */
  get offset(): number {
    return this.#consumed;
  }

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.byteLength;
  }

  /** Consumes and returns the next `n` bytes; the caller checks `length >= n` first. */
  take(n: number): Uint8Array {
    if (n > this.#length) throw new RangeError(`ChunkQueue: ${n} bytes requested, ${this.#length} buffered`);
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0]!;
    let out: Uint8Array;
    if (first.byteLength - this.#head >= n) {
      out = first.subarray(this.#head, this.#head + n);
    } else {
      out = new Uint8Array(n);
      let filled = 0;
      let head = this.#head;
      for (const chunk of this.#chunks) {
        const part = chunk.subarray(head, head + (n - filled));
        out.set(part, filled);
        filled += part.byteLength;
        head = 0;
        if (filled === n) break;
      }
    }
    this.#drop(n);
    return out;
  }

  #drop(n: number): void {
    let left = n;
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
    this.#length -= n;
    this.#consumed += n;
  }
}
