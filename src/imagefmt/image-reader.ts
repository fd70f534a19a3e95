// The ImageReader contract shared by the raw and qcow2 readers (the replica data path reads every unwritten block
// of a volume through it), plus the small pieces both readers need: argument checks and close() bookkeeping.

import { ImageFormatError } from './errors.js';
import type { SignalOptions } from './source.js';

export type ImageFormat = 'raw' | 'qcow2';

/** A byte range of the guest-visible image. */
export interface ImageExtent {
  offset: number;
  length: number;
}

export interface ZeroExtentsOptions extends SignalOptions {
  /** Start of the range to describe (default 0). */
  offset?: number;
  /** Length of the range (default: to the virtual size). Ask in windows to keep the answer small. */
  length?: number;
}

export interface ImageReader {
  readonly format: ImageFormat;
  /** Guest-visible size in bytes, a multiple of 512. */
  readonly virtualSize: number;
  /**
   * Fill `buf` with guest bytes at `offset`; bytes past virtualSize read as zeros. Safe to call concurrently.
   * Rejects with ImageFormatError (`Corrupt`, `Closed`), a file-system error, or an AbortError.
   */
  read(buf: Uint8Array, offset: number, options?: SignalOptions): Promise<void>;
  /**
   * Extents known to read as zeros without reading data (unallocated and zero clusters for qcow2; [] for raw),
   * sorted and merged, within the requested range. Optional help for sparse copying: other ranges may be zeros too.
   */
  zeroExtents(options?: ZeroExtentsOptions): Promise<ImageExtent[]>;
  /** Waits for reads in flight, then closes the file. Idempotent. */
  close(): Promise<void>;
}

/** Programming errors (not image errors), so RangeError like Node's own ERR_OUT_OF_RANGE. */
export function checkReadArgs(buf: Uint8Array, offset: number): void {
  if (!(buf instanceof Uint8Array)) throw new TypeError('read: buf must be a Uint8Array');
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(offset + buf.length)) {
    throw new RangeError(`read: offset ${offset} must be a non-negative integer with offset + length below 2^53`);
  }
}

/** The range [start, end) that `options` asks about, clipped to the image. */
export function extentRange(options: ZeroExtentsOptions, virtualSize: number): { start: number; end: number } {
  const start = options.offset ?? 0;
  const length = options.length ?? Math.max(0, virtualSize - start);
  if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`zeroExtents: offset ${start} and length ${length} must be non-negative integers`);
  }
  return { start: Math.min(start, virtualSize), end: Math.min(start + length, virtualSize) };
}

/** Append [offset, offset + length) to sorted `out`, merging with the last extent when they touch. */
export function pushExtent(out: ImageExtent[], offset: number, length: number): void {
  if (length <= 0) return;
  const last = out[out.length - 1];
  if (last !== undefined && last.offset + last.length === offset) last.length += length;
  else out.push({ offset, length });
}

/**
 * Tracks operations in flight so that close() can wait for them before closing the file: a FileHandle closed under
 * a pending read would fail it with EBADF instead of the clear `Closed` error.
 */
export class ReaderLifecycle {
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();

  get closed(): boolean {
    return this.#closed;
  }

  /** Throw `Closed` if close() was called; long operations call this between steps to stop early. */
  check(what: string): void {
    if (this.#closed) throw new ImageFormatError('Closed', `cannot ${what}: the image reader is closed`);
  }

  run<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      this.check(what);
    } catch (err) {
      return Promise.reject(err);
    }
    const p = op();
    this.#inFlight.add(p);
    const done = (): void => {
      this.#inFlight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  close(closeResources: () => Promise<void>): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#closing = Promise.allSettled([...this.#inFlight]).then(closeResources);
    }
    return this.#closing;
  }
}
