// A replica hosted in the instance manager: its LayeredReplica (a LayeredReplica head over its snapshots; the directory locked while open, the backing file's
// reader shared with the node's other replicas on it), served on the node's replica listener under its name.
//
// Storage failures make the replica `error`: any read or write the disk refuses (EIO, EROFS, a failed fdatasync)
// means its content can no longer be trusted or extended, so it stops serving at once and its engines mark it ERR
// and rebuild elsewhere. A full disk (ENOSPC) is not a fault of the replica, nor is a backing image whose bytes
// cannot be decoded (every replica over it meets the same); the engine handles both.

import { isImageDataError, isReplicaError, LayeredReplica, type ControlAnswer, type ControlRequest, type ExtentData, type ReplicaDevice, type ReplicaInfo, type WrittenExtents } from '../replica/index.js';
import { HostedInstance, messageOf } from './instance.js';
import type { ReplicaSpec } from './spec.js';

type Signal = { signal?: AbortSignal | undefined };

/** Errors that say the request was wrong or the replica is closing, not that the disk failed. */
function isStorageFault(err: unknown): boolean {
  if (err instanceof Error && err.name === 'AbortError') return false;
  if (isReplicaError(err, 'OutOfRange') || isReplicaError(err, 'InvalidArgument') || isReplicaError(err, 'Closed')) return false;
  // A snapshot request naming a snapshot that is not there, or already is.
  if (isReplicaError(err, 'NotFound') || isReplicaError(err, 'AlreadyExists')) return false;
  // The backing image's bytes cannot be decoded: the same for every replica over it, not this disk failing.
  if (isImageDataError(err)) return false;
  const code = (err as { code?: unknown } | null)?.code;
  return code !== 'ENOSPC' && code !== 'EDQUOT' && code !== 'EFBIG' && code !== 'ABORT_ERR';
}

/** The store as served: every failure is checked for a storage fault on its way out. */
class GuardedDevice implements ReplicaDevice {
  readonly #store: LayeredReplica;
  readonly #onFault: (err: unknown) => void;
  readonly #check = (err: unknown): never => {
    if (isStorageFault(err)) this.#onFault(err);
    throw err;
  };

  constructor(store: LayeredReplica, onFault: (err: unknown) => void) {
    this.#store = store;
    this.#onFault = onFault;
  }

  get size(): number {
    return this.#store.size;
  }

  info(): ReplicaInfo {
    return this.#store.info();
  }

  read(offset: number, length: number, opts?: Signal): Promise<Uint8Array> {
    return this.#store.read(offset, length, opts).catch(this.#check);
  }

  write(offset: number, data: Uint8Array, opts: { fua: boolean } & Signal): Promise<void> {
    return this.#store.write(offset, data, opts).catch(this.#check);
  }

  flush(opts?: Signal): Promise<void> {
    return this.#store.flush(opts).catch(this.#check);
  }

  trim(offset: number, length: number, opts: { fua: boolean } & Signal): Promise<void> {
    return this.#store.trim(offset, length, opts).catch(this.#check);
  }

  writeZeroes(offset: number, length: number, opts: { fua: boolean } & Signal): Promise<void> {
    return this.#store.writeZeroes(offset, length, opts).catch(this.#check);
  }

  writtenExtents(opts?: { offset?: number; maxExtents?: number }): WrittenExtents {
    return this.#store.writtenExtents(opts);
  }

  readExtent(offset: number, length: number, opts?: Signal): Promise<ExtentData> {
    return this.#store.readExtent(offset, length, opts).catch(this.#check);
  }

  setRevision(revision: number): void {
    this.#store.setRevision(revision);
  }

  control(req: ControlRequest, data: Uint8Array, opts?: Signal): Promise<ControlAnswer> {
    return this.#store.control(req, data, opts).catch(this.#check);
  }
}

export class ReplicaInstance extends HostedInstance {
  #store: LayeredReplica | undefined;
  #served = false;

  get #replica(): ReplicaSpec {
    if (this.spec.type !== 'replica') throw new Error('not a replica');
    return this.spec.replica;
  }

  protected async open(signal: AbortSignal): Promise<void> {
    const r = this.#replica;
    const common = { holder: `${this.ctx.holder}, replica ${this.name}`, backingReaders: this.ctx.backingReaders, signal };
    let store: LayeredReplica;
    try {
      // A replica smaller than the spec's size grows to it (an offline volume expansion, replica/grow.ts).
      store = await LayeredReplica.open(r.dir, { ...common, size: r.size });
    } catch (err) {
      if (!isReplicaError(err, 'NotFound')) throw err;
      store = await LayeredReplica.create(r.dir, { ...common, name: this.name, size: r.size, ...(r.blockSize === undefined ? {} : { blockSize: r.blockSize }), ...(r.backing ? { backing: r.backing } : {}) });
      this.say(`created in ${r.dir}`);
    }
    this.#store = store;
    if (store.grownFrom !== undefined) this.say(`grew from ${store.grownFrom} B to ${store.size} B (volume expansion)`);
    if (store.reserveProblem) this.say(`${store.reserveProblem}: with its disk full it may not open again until space is freed`);
    if (signal.aborted) return;
    this.ctx.hub.add(this.name, new GuardedDevice(store, (err) => this.fail(`replica ${this.name}: storage failed in ${r.dir}: ${messageOf(err)}`)));
    this.#served = true;
    const i = store.info();
    const backing = i.backing ? `backing ${i.backing.name} (${i.backing.format}, ${i.backing.virtualSize} B)` : 'no backing image';
    this.say(`serving ${r.dir} as "${this.name}" on ${this.ctx.hub.address}: ${i.size} B in ${i.blockSize} B blocks, ${backing}, revision ${i.revision}`);
  }

  protected async close(reason: Error): Promise<void> {
    if (this.#served) await this.ctx.hub.remove(this.name, reason);
    this.#served = false;
    // A store that failed may fail to flush: what it held up to the failure is what it has.
    await this.#store?.close().catch((err: unknown) => this.say(`closing the store: ${messageOf(err)}`));
  }

  protected endpoints() {
    return { address: this.ctx.hub.address };
  }

  /** Written bytes of the open store (status and tests). */
  stats(): ReturnType<LayeredReplica['stats']> | undefined {
    return this.#store?.stats();
  }
}
