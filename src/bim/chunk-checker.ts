// The receiver's per-chunk check when the image's chunk manifest is anchored (sync.ts): each chunk, once written, is
// read back from the page cache and hashed (SHA-256) on a worker thread (hash-worker.ts), in whatever order chunks
// land, so the check takes a second core while the main thread moves bytes. What is checked is what the file holds.

import { Worker } from 'node:worker_threads';
import { BimError } from './errors.js';
import type { HashWorkerReply, HashWorkerRequest } from './hash-worker.js';

export class ChunkChecker {
  readonly #worker: Worker;
  readonly #path: string;
  readonly #waiting = new Map<number, { length: number; resolve: (sha256: string) => void; reject: (e: unknown) => void }>();
  #nextId = 0;
  #failure: unknown;

  constructor(path: string, opts: { onRead?: (bytes: number) => void } = {}) {
    this.#path = path;
    this.#worker = new Worker(new URL('./hash-worker.js', import.meta.url), { workerData: { path } });
    this.#worker.on('message', (r: HashWorkerReply) => {
      if (r.type === 'chunk') {
        const w = this.#waiting.get(r.id);
        this.#waiting.delete(r.id);
        if (w) opts.onRead?.(w.length);
        w?.resolve(r.sha256);
      } else if (r.type === 'error' && r.id !== undefined) {
        const w = this.#waiting.get(r.id);
        this.#waiting.delete(r.id);
        w?.reject(new BimError('Internal', `reading back ${path} failed: ${r.message}`));
      }
    });
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) => this.#fail(new BimError('Internal', `the chunk-checking thread of ${path} exited (${code})`)));
  }

  /** The SHA-256 of bytes [offset, offset + length) as the file holds them now. */
  sha256(offset: number, length: number): Promise<string> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise<string>((resolve, reject) => {
      this.#waiting.set(id, { length, resolve, reject });
      this.#worker.postMessage({ type: 'chunk', id, offset, length } satisfies HashWorkerRequest);
    });
  }

  /** Stops the thread; checks still waiting fail. */
  async close(): Promise<void> {
    this.#fail(new BimError('Internal', `the chunk checks of ${this.#path} were stopped`));
    await this.#worker.terminate();
  }

  #fail(err: unknown): void {
    this.#failure ??= err;
    for (const w of this.#waiting.values()) w.reject(err);
    this.#waiting.clear();
  }
}
