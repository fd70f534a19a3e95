// Writes one received chunk into the partial file, keeping holes, and hashes it (SHA-256) when asked to. 64 KiB blocks
// that are all zero are not written. A hole already reads as zeros, but a block of a "dirty" chunk (one a previous,
// unverified attempt may have written) can hold old bytes: for those, the zero block is read back and overwritten
// with zeros only when it is not zero.
//
// Two ways to the file:
// - Write-through (clean chunks, while the disk answers fast): the whole blocks of each piece are written straight
//   from the socket's read buffer, synchronously, while the bytes are still in this core's cache; only a partial
//   block is carried to the next piece. Through the thread pool, the same bytes were copied into a stage, then copied
//   into the page cache by another core, with the pool's threads contending for the file's lock: that cost five
//   times the CPU of the plain `read`/`write` loop of curl (perf, 2 GiB sync).
// - Staged (dirty chunks, or when the gate is off because a write was slow): bytes go to two 1 MiB buffers (reused,
//   so memory is fixed per worker); while one is written on the thread pool the other fills, so the socket keeps
//   flowing and is paused only when both are busy.

import { createHash, type Hash } from 'node:crypto';
import { writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { BimError } from './errors.js';
import { READ_BUFFER } from './httpclient.js';
import { isAllZero, zeros } from './manifest.js';
import type { SyncIoGate } from '../util/sync-io-gate.js';

const STAGE = 1024 * 1024;
const BLOCK = 64 * 1024;
// Room for one more piece (at most one read buffer) after the stage reports full.
const CAPACITY = STAGE + READ_BUFFER;

export class ChunkSink {
  readonly #fh: FileHandle;
  /** Allows write-through; without one every byte is staged. */
  readonly #gate: SyncIoGate | undefined;
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

  constructor(fh: FileHandle, gate?: SyncIoGate) {
    this.#fh = fh;
    this.#gate = gate;
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
   * Takes a piece (at most READ_BUFFER bytes, as the HTTP client delivers them), valid only during the call: written
   * through, or copied into the stage. Returns false when the stage is full enough that `drain()` must run before the
   * next piece.
   */
  accept(piece: Uint8Array): boolean {
    this.#hash?.update(piece);
    // Write-through only with nothing staged but a partial block and no staged write in flight: bytes land in order.
    const rest = this.#gate && !this.#dirty && !this.#writing && this.#fill < BLOCK ? this.#writeThrough(piece) : piece;
    if (rest.length === 0) return true;
    if (this.#fill + rest.length > this.#stage.length) {
      throw new BimError('Internal', `chunk writer stage overflow: ${this.#fill} + ${rest.length} bytes`);
    }
    this.#stage.set(rest, this.#fill);
    this.#fill += rest.length;
    return this.#fill < STAGE;
  }

  /**
   * Completes the carried partial block from `piece` and writes it, then the piece's whole blocks, synchronously;
   * carries what is left of a block. Returns the part of `piece` still to be staged: empty, unless the gate said no.
   */
  #writeThrough(piece: Uint8Array): Uint8Array {
    let at = 0;
    if (this.#fill > 0) {
      at = Math.min(BLOCK - this.#fill, piece.length);
      this.#stage.set(piece.subarray(0, at), this.#fill);
      this.#fill += at;
      if (this.#fill < BLOCK) return piece.subarray(at);
      // Refused: the full block stays staged, ahead of the rest.
      if (!this.#writeSync(this.#stage.subarray(0, BLOCK), this.#pos)) return piece.subarray(at);
      this.#pos += BLOCK;
      this.#fill = 0;
    }
    const whole = piece.length - at - ((piece.length - at) % BLOCK);
    if (whole > 0) {
      if (!this.#writeSync(piece.subarray(at, at + whole), this.#pos)) return piece.subarray(at);
      this.#pos += whole;
      at += whole;
    }
    this.#stage.set(piece.subarray(at), 0);
    this.#fill = piece.length - at;
    return piece.subarray(piece.length);
  }

  /** Writes the non-zero blocks of `buf` at `position` on this thread, if the gate allows; false when it did not. */
  #writeSync(buf: Uint8Array, position: number): boolean {
    const done = this.#gate!.run(buf.length, () => {
      for (const r of dataRuns(buf, buf.length)) {
        if (r.zero) continue;
        for (let n = r.start; n < r.end; ) n += writeSync(this.#fh.fd, buf, n, r.end - n, position + n);
        this.written += r.end - r.start;
      }
      return true;
    });
    return done === true;
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
    for (const r of dataRuns(stage, upto)) {
      if (!r.zero) await this.#write(stage.subarray(r.start, r.end), pos + r.start);
      else if (this.#dirty) await this.#clearBlock(pos + r.start, r.end - r.start);
    }
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

/** `buf[0, upto)` in order as runs of consecutive non-zero 64 KiB blocks (written in one call) and single zero blocks. */
function* dataRuns(buf: Uint8Array, upto: number): Generator<{ start: number; end: number; zero: boolean }> {
  let runStart = -1;
  for (let b = 0; b < upto; b += BLOCK) {
    const end = Math.min(b + BLOCK, upto);
    if (!isAllZero(buf.subarray(b, end))) {
      if (runStart < 0) runStart = b;
      continue;
    }
    if (runStart >= 0) yield { start: runStart, end: b, zero: false };
    runStart = -1;
    yield { start: b, end, zero: true };
  }
  if (runStart >= 0) yield { start: runStart, end: upto, zero: false };
}
