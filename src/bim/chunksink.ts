// Writes one received chunk into the partial file, keeping holes, and hashes it (SHA-256) when asked to. Bytes are
// staged in two 1 MiB buffers (reused, so memory is fixed per worker): while one is written the other fills, so the
// socket keeps flowing and is paused only when both are busy. 64 KiB blocks that are all zero are not written. A hole
// already reads as zeros, but a block of a "dirty" chunk (one a previous, unverified attempt may have written) can
// hold old bytes: for those, the zero block is read back and overwritten with zeros only when it is not zero.

import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { BimError } from './errors.js';
import { READ_BUFFER } from './httpclient.js';
import { isAllZero, zeros } from './manifest.js';

const STAGE = 1024 * 1024;
const BLOCK = 64 * 1024;
// Room for one more piece (at most one read buffer) after the stage reports full.
const CAPACITY = STAGE + READ_BUFFER;

export class ChunkSink {
  readonly #fh: FileHandle;
  #stage = Buffer.allocUnsafe(CAPACITY);
  /** The other stage: being written (`#writing`) or free. */
  #spare = Buffer.allocUnsafe(CAPACITY);
  #writing: Promise<void> | undefined;
  readonly #scratch = Buffer.allocUnsafe(BLOCK);
  #fill = 0;
  /** File offset of `#stage[0]`. */
  #pos = 0;
  #dirty = false;
  #hash: Hash | undefined;
  /** Bytes written to the file (not counting skipped zero blocks), for tests and statistics. */
  written = 0;

  constructor(fh: FileHandle) {
    this.#fh = fh;
  }

  /** Starts a chunk at `offset` (a multiple of 64 KiB); `verify`: compute its SHA-256 for `end()` to return. */
  begin(offset: number, dirty: boolean, verify = true): void {
    if (this.#writing) throw new BimError('Internal', 'a chunk was begun while the previous one was still being written; call abandon() first');
    this.#pos = offset;
    this.#fill = 0;
    this.#dirty = dirty;
    this.#hash = verify ? createHash('sha256') : undefined;
  }

  /**
   * Copies a piece (at most READ_BUFFER bytes, as the HTTP client delivers them) into the stage. Returns false when the
   * stage is full enough that `drain()` must run before the next piece.
   */
  accept(piece: Uint8Array): boolean {
    if (this.#fill + piece.length > this.#stage.length) {
      throw new BimError('Internal', `chunk writer stage overflow: ${this.#fill} + ${piece.length} bytes`);
    }
    this.#hash?.update(piece);
    this.#stage.set(piece, this.#fill);
    this.#fill += piece.length;
    return this.#fill < STAGE;
  }

  /**
   * Hands the whole 64 KiB blocks staged to a background write and continues in the other stage; waits only for the
   * previous write. A partial block stays staged, so zero detection stays block-aligned.
   */
  async drain(): Promise<void> {
    const whole = this.#fill - (this.#fill % BLOCK);
    if (whole === 0) return;
    await this.#settle();
    const full = this.#stage;
    const pos = this.#pos;
    this.#stage = this.#spare;
    this.#spare = full;
    this.#stage.set(full.subarray(whole, this.#fill), 0);
    this.#fill -= whole;
    this.#pos += whole;
    // Rejections are kept for the next drain or end; never unhandled.
    const w = this.#flush(full, whole, pos);
    w.catch(() => undefined);
    this.#writing = w;
  }

  /** Accepts any amount, draining as needed (tests, and callers without a fixed piece size). */
  async push(piece: Uint8Array): Promise<void> {
    for (let at = 0; at < piece.length; ) {
      const n = Math.min(BLOCK, piece.length - at);
      if (!this.accept(piece.subarray(at, at + n))) await this.drain();
      at += n;
    }
  }

  /** Writes everything staged and returns the chunk's SHA-256 (hex; empty when not verifying). */
  async end(): Promise<string> {
    await this.#settle();
    await this.#flush(this.#stage, this.#fill, this.#pos);
    this.#pos += this.#fill;
    this.#fill = 0;
    const digest = this.#hash?.digest('hex') ?? '';
    this.#hash = undefined;
    return digest;
  }

  /** Lets go of a chunk given up midway (a failed request): waits for its background write, ignoring its outcome. */
  async abandon(): Promise<void> {
    await this.#settle().catch(() => undefined);
    this.#fill = 0;
  }

  async #settle(): Promise<void> {
    const w = this.#writing;
    this.#writing = undefined;
    await w;
  }

  async #flush(stage: Buffer, upto: number, pos: number): Promise<void> {
    // Consecutive non-zero blocks go out in one write; zero blocks end the run.
    let runStart = -1;
    for (let b = 0; b < upto; b += BLOCK) {
      const block = stage.subarray(b, Math.min(b + BLOCK, upto));
      if (!isAllZero(block)) {
        if (runStart < 0) runStart = b;
        continue;
      }
      if (runStart >= 0) await this.#write(stage.subarray(runStart, b), pos + runStart);
      runStart = -1;
      if (this.#dirty) await this.#clearBlock(pos + b, block.length);
    }
    if (runStart >= 0) await this.#write(stage.subarray(runStart, upto), pos + runStart);
  }

  async #clearBlock(position: number, length: number): Promise<void> {
    const { bytesRead } = await this.#fh.read(this.#scratch, 0, length, position);
    if (!isAllZero(this.#scratch.subarray(0, bytesRead))) await this.#write(zeros(length), position);
  }

  async #write(buf: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.#fh.write(buf, done, buf.length - done, position + done);
      done += bytesWritten;
    }
    this.written += buf.length;
  }
}
