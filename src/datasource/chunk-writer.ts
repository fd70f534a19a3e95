// Turns a stream's small chunks (a socket gives ~16–64 KiB) into 4 MiB writes, with two buffers so the network
// fills one while the other is written and hashed. Memory per transfer is bounded at two buffers. There is no
// signal here: a 4 MiB file write cannot be cancelled, the stream feeding it can (and is, by its owner).

import { IO_CHUNK, type WorkFile } from './workfile.js';

export class ChunkWriter {
  readonly #file: WorkFile;
  readonly #bufs: [Buffer, Buffer];
  #cur = 0;
  #fill = 0;
  #pending: Promise<void> | undefined;
  #pendingBytes = 0;
  #error: unknown;

  constructor(file: WorkFile, chunkSize = IO_CHUNK) {
    this.#file = file;
    this.#bufs = [Buffer.allocUnsafe(chunkSize), Buffer.allocUnsafe(chunkSize)];
  }

  /** Every byte accepted so far: in the file, being written, or buffered. */
  get position(): number {
    return this.#file.offset + this.#pendingBytes + this.#fill;
  }

  /** Buffers `chunk`, writing full buffers; waits only when both buffers are busy (backpressure). */
  async push(chunk: Uint8Array): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      const buf = this.#bufs[this.#cur] as Buffer;
      const n = Math.min(buf.length - this.#fill, chunk.length - at);
      buf.set(chunk.subarray(at, at + n), this.#fill);
      this.#fill += n;
      at += n;
      if (this.#fill === buf.length) await this.#startWrite();
    }
  }

  /** Writes everything buffered and waits for it. */
  async flush(): Promise<void> {
    if (this.#fill > 0) await this.#startWrite();
    await this.#wait();
  }

  async #startWrite(): Promise<void> {
    await this.#wait();
    const data = (this.#bufs[this.#cur] as Buffer).subarray(0, this.#fill);
    this.#pendingBytes = data.length;
    // The rejection is kept and rethrown by the next #wait, so it is never unhandled.
    this.#pending = this.#file.write(data).then(
      () => {
        this.#pendingBytes = 0;
      },
      (err: unknown) => {
        this.#pendingBytes = 0;
        this.#error = err;
      },
    );
    this.#cur ^= 1;
    this.#fill = 0;
  }

  async #wait(): Promise<void> {
    if (this.#pending) await this.#pending;
    this.#pending = undefined;
    if (this.#error !== undefined) {
      const err = this.#error;
      this.#error = undefined;
      this.#fill = 0;
      throw err;
    }
  }
}
