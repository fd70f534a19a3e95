// Reusable buffers for the data path's large I/O (NBD and replica-protocol payloads, reads from a replica).
//
// Why: a volume streaming 1 MiB requests allocates hundreds of MiB per second of fresh ArrayBuffers, memory that V8
// counts as external and answers with full garbage collections. Profiles of a sequential read showed about half of
// the instance manager's CPU in the collector (main thread and its helper threads). Reusing the buffers removes that.
//
// Ownership is explicit: `take` hands out a buffer, and `give` returns it once its holder is sure that nothing reads
// or writes it any more (a socket write has completed, a device call has settled). A buffer that is never given
// back is collected as usual, so forgetting `give` costs speed, never correctness; `give` of a buffer this pool did
// not hand out (or gave back already) does nothing. What the pool keeps is bounded (`keepBytes`).

const KiB = 1024;
const MiB = 1024 * KiB;

export interface BufferPoolOptions {
  /**
   * Smaller requests get a plain allocation (default 4 KiB: Node's own slab serves only requests under 4 KiB, so
   * every 4 KiB block read would otherwise be a fresh backing store).
   */
  minBytes?: number;
  /** Larger requests get a plain allocation (default 32 MiB, the largest NBD request we accept). */
  maxBytes?: number;
  /** Most bytes kept in free buffers (default 64 MiB). */
  keepBytes?: number;
}

export class BufferPool {
  readonly #minBytes: number;
  readonly #maxBytes: number;
  readonly #keepBytes: number;
  /** Free buffers by size class (a power of two). */
  readonly #free = new Map<number, Buffer[]>();
  /** Backing stores handed out and not given back. Weak: a buffer its holder drops is simply collected. */
  readonly #out = new WeakSet<ArrayBufferLike>();
  #keptBytes = 0;

  constructor(opts: BufferPoolOptions = {}) {
    this.#minBytes = opts.minBytes ?? 4 * KiB;
    this.#maxBytes = opts.maxBytes ?? 32 * MiB;
    this.#keepBytes = opts.keepBytes ?? 64 * MiB;
  }

  /** Bytes held in free buffers now. */
  get keptBytes(): number {
    return this.#keptBytes;
  }

  /** A buffer of exactly `length` bytes, uninitialised: the caller writes every byte it hands on. */
  take(length: number): Buffer {
    if (length < this.#minBytes || length > this.#maxBytes) return Buffer.allocUnsafe(length);
    const size = classOf(length);
    const buf = this.#free.get(size)?.pop();
    let whole: Buffer;
    if (buf) {
      this.#keptBytes -= size;
      whole = buf;
    } else {
      // allocUnsafeSlow: a backing store of its own, never a slice of Node's shared slab.
      whole = Buffer.allocUnsafeSlow(size);
    }
    this.#out.add(whole.buffer);
    return whole.subarray(0, length);
  }

  /** Returns a buffer from `take` (any view of it). Anything else, or a second give, is ignored. */
  give(buf: Uint8Array | undefined): void {
    if (!buf) return;
    const store = buf.buffer;
    if (!this.#out.delete(store)) return;
    const size = store.byteLength;
    if (this.#keptBytes + size > this.#keepBytes) return;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, (list = []));
    list.push(Buffer.from(store, 0, size));
    this.#keptBytes += size;
  }
}

function classOf(length: number): number {
  return 2 ** Math.ceil(Math.log2(length));
}

/** The process's pool for data-path payloads. */
export const ioBuffers = new BufferPool();
