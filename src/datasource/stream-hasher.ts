// The SHA-512 and chunk manifest of a data source's bytes, computed on a worker thread (hash-thread.ts) so that
// hashing takes a second core while the main thread receives and writes. Bytes are copied into one of a few shared
// slots and handed over without further copies; `update` waits only when every slot is still being hashed, which
// bounds memory and makes a slow hash slow the transfer down instead of queueing it. Everything is applied in the
// order it was called: a digest, manifest or mark covers exactly the bytes given before it.

import { Worker } from 'node:worker_threads';
import type { ChunkManifest } from '../bim/manifest.js';
import { DataSourceError } from './errors.js';
import type { HashThreadData, HashThreadReply, HashThreadRequest } from './hash-thread.js';

const SLOTS = 3;
const SLOT_BYTES = 4 * 1024 * 1024;

type Pending = { resolve: (r: Extract<HashThreadReply, { type: 'done' }>) => void; reject: (err: unknown) => void };

export class StreamHasher {
  readonly #worker: Worker;
  readonly #slots: SharedArrayBuffer[] = [];
  readonly #free: number[] = [];
  /** Callers of `update` waiting for a free slot. */
  readonly #waiting: Array<() => void> = [];
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #failure: Error | undefined;
  /** Slots being hashed plus calls waiting for an answer. */
  #inflight = 0;

  constructor(chunkSize: number) {
    for (let i = 0; i < SLOTS; i++) {
      this.#slots.push(new SharedArrayBuffer(SLOT_BYTES));
      this.#free.push(i);
    }
    const data: HashThreadData = { slots: this.#slots, chunkSize };
    this.#worker = new Worker(new URL('./hash-thread.js', import.meta.url), { workerData: data });
    this.#worker.on('message', (r: HashThreadReply) => this.#onReply(r));
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) => this.#fail(new Error(`the hashing thread exited (${code})`)));
    // The thread keeps the process alive only while it has work (#busy); an idle one must not hold a process that
    // is done with its file. After the listeners: adding one refs the thread again.
    this.#worker.unref();
  }

  /** Hands `bytes` to the hash; the caller may reuse them once this resolves (they were copied). */
  async update(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length; ) {
      const slot = await this.#takeSlot();
      const n = Math.min(SLOT_BYTES, bytes.length - at);
      new Uint8Array(this.#slots[slot]!, 0, n).set(bytes.subarray(at, at + n));
      this.#post({ type: 'update', slot, length: n });
      at += n;
    }
  }

  /** The SHA-512 (hex) of every byte given so far. */
  async digest(): Promise<string> {
    const r = await this.#call({ type: 'digest' });
    return r.sha512 ?? '';
  }

  /** The chunk manifest of every byte given so far, which must be `size` bytes. */
  async manifest(ids: { name: string; uuid: string; sha512: string }, size: number): Promise<ChunkManifest> {
    const r = await this.#call({ type: 'manifest', ids, size });
    if (!r.manifest) throw new DataSourceError('Internal', 'the hashing thread answered without a manifest');
    return r.manifest;
  }

  /** Remembers the current state (one mark at a time) for `rollback`. */
  async mark(): Promise<void> {
    await this.#call({ type: 'mark' });
  }

  /** Returns to the state of the last `mark`. */
  async rollback(): Promise<void> {
    await this.#call({ type: 'rollback' });
  }

  /** Starts over from bytes [0, end) of the file at `path`, read by the hashing thread. Aborting stops the thread. */
  async rehash(path: string, end: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const call = this.#call({ type: 'rehash', path, end });
    if (!signal) return void (await call);
    const onAbort = () => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await call;
    } catch (err) {
      signal.throwIfAborted();
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Stops the thread; every call waiting on it fails. */
  async close(): Promise<void> {
    this.#fail(new Error('the hashing thread was stopped'));
    await this.#worker.terminate().catch(() => undefined);
  }

  async #takeSlot(): Promise<number> {
    for (;;) {
      if (this.#failure) throw this.#error();
      const slot = this.#free.pop();
      if (slot !== undefined) return slot;
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  #call(m: DistributiveOmit<Exclude<HashThreadRequest, { type: 'update' }>, 'id'>): Promise<Extract<HashThreadReply, { type: 'done' }>> {
    if (this.#failure) return Promise.reject(this.#error());
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#post({ ...m, id } as HashThreadRequest);
    });
  }

  #post(m: HashThreadRequest): void {
    if (this.#inflight++ === 0) this.#worker.ref();
    this.#worker.postMessage(m);
  }

  #answered(): void {
    if (--this.#inflight === 0) this.#worker.unref();
  }

  #onReply(r: HashThreadReply): void {
    if (r.type !== 'error' || r.id !== undefined) this.#answered();
    if (r.type === 'free') {
      this.#free.push(r.slot);
      this.#waiting.shift()?.();
      return;
    }
    if (r.type === 'error' && r.id === undefined) {
      this.#fail(new Error(r.message));
      return;
    }
    const p = this.#pending.get(r.id ?? 0);
    this.#pending.delete(r.id ?? 0);
    if (r.type === 'done') p?.resolve(r);
    else p?.reject(new DataSourceError('Internal', `hashing failed: ${r.message}`));
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    for (const p of this.#pending.values()) p.reject(this.#error());
    this.#pending.clear();
    for (const wake of this.#waiting.splice(0)) wake();
    void this.#worker.terminate().catch(() => undefined);
  }

  #error(): DataSourceError {
    return new DataSourceError('Internal', `hashing the data failed: ${this.#failure?.message ?? 'unknown'}`, { cause: this.#failure });
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
