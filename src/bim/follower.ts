// The receiver's whole-file SHA-512, computed while the chunks arrive instead of in a second full read after the last
// one. Chunks are fed in file order as soon as every chunk before them is in: zero chunks as zeros (never read), the
// others read back from the page cache they were just written to. The hashing runs on a worker thread
// (hash-worker.ts), so it takes a second core while the main thread moves bytes; chunks themselves are hashed once.

import { Worker } from 'node:worker_threads';
import { BimError } from './errors.js';
import type { HashWorkerReply, HashWorkerRequest } from './hash-worker.js';
import type { ChunkManifest } from './manifest.js';

export class WholeFileHasher {
  readonly #worker: Worker;
  readonly #manifest: ChunkManifest;
  /** Received chunks not yet fed because a chunk before them is still missing. */
  readonly #waiting = new Set<number>();
  #next = 0;
  #digest: Promise<string>;
  #settle: { resolve: (d: string) => void; reject: (e: unknown) => void } | undefined;
  #failure: unknown;
  /** Bytes hashed so far (the statistic counts the ones read from disk through `onRead`). */
  hashed = 0;

  constructor(path: string, manifest: ChunkManifest, opts: { onRead?: (bytes: number) => void } = {}) {
    this.#manifest = manifest;
    this.#worker = new Worker(new URL('./hash-worker.js', import.meta.url), { workerData: { path } });
    this.#digest = new Promise<string>((resolve, reject) => (this.#settle = { resolve, reject }));
    // A failure before anyone awaits the digest must not be an unhandled rejection.
    this.#digest.catch(() => undefined);
    this.#worker.on('message', (r: HashWorkerReply) => {
      if (r.type === 'hashed') {
        this.hashed += r.bytes;
        if (r.read > 0) opts.onRead?.(r.read);
      } else if (r.type === 'digest') this.#settle?.resolve(r.sha512);
      else if (r.type === 'error') this.#fail(new BimError('Internal', `hashing ${path} failed: ${r.message}`));
    });
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) => this.#fail(new BimError('Internal', `the hashing thread exited (${code}) before the digest`)));
    this.#advance();
  }

  /** Chunk `i` is completely in the file. */
  received(i: number): void {
    if (i < this.#next) return;
    this.#waiting.add(i);
    this.#advance();
  }

  /** The SHA-512 of the whole file, once every chunk was received. */
  async digest(signal: AbortSignal): Promise<string> {
    if (this.#next < this.#manifest.chunks.length) {
      throw new BimError('Internal', `the whole-file hash was asked for with chunk ${this.#next} of ${this.#manifest.chunks.length} still missing`);
    }
    this.#post({ type: 'end' });
    const aborted = new Promise<never>((_, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      void this.#digest.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => undefined);
    });
    return Promise.race([this.#digest, aborted]);
  }

  /** Stops the thread (done, failed or aborted). */
  async close(): Promise<void> {
    this.#settle = undefined;
    await this.#worker.terminate();
  }

  #advance(): void {
    const chunks = this.#manifest.chunks;
    for (let c = chunks[this.#next]; c && (c.zero || this.#waiting.delete(this.#next)); c = chunks[++this.#next]) {
      this.#post(c.zero ? { type: 'zero', length: c.length } : { type: 'data', offset: c.offset, length: c.length });
    }
  }

  #post(m: HashWorkerRequest): void {
    if (this.#failure === undefined) this.#worker.postMessage(m);
  }

  #fail(err: unknown): void {
    this.#failure ??= err;
    const s = this.#settle;
    this.#settle = undefined;
    s?.reject(err);
  }
}
