// LocalReplica: the engine's end of a replica hosted in the same process (the instance manager runs the engine and
// the replicas of its node together). Calls go straight to the replica's device: no socket, no encoding, no copy.
// It behaves as a ReplicaClient does, so the engine cannot tell them apart: every request has a timeout (a hung
// disk must not stall the volume), a device failure is a `Remote` error with the wire status the server would send,
// and once the replica goes away (`detach`) or the engine drops it, every call fails and `closed` resolves.
//
// A mutation (write, trim, write zeroes, flush) that the engine also sent to remote replicas (`deferred`) runs in
// the event loop's check phase, not at once: the requests to the remote replicas leave in that same check phase,
// scheduled earlier (util/write-batch.ts), so the other nodes start on a batch while this one writes it, instead of
// after. Mutations run in call order: one that is not deferred waits behind those that are. Reads run at once: NBD
// orders a read only after the writes that were acknowledged, and those are done.

import { performance } from 'node:perf_hooks';
import { ReplicaError, statusOf, type ControlAnswer, type ControlRequest, type ExtentData, type ReplicaDevice, type ReplicaInfo, type RequestOptions, type WrittenExtents } from '../replica/index.js';
import { MAX_EXTENTS_PER_PAGE } from '../replica/protocol.js';
import type { MutationOptions, ReplicaBackend } from './types.js';

interface Pending {
  deadline: number;
  what: string;
  reject: (err: unknown) => void;
}

export class LocalReplica implements ReplicaBackend {
  readonly local = true;
  readonly address: string;
  readonly closed: Promise<void>;
  readonly #device: ReplicaDevice;
  readonly #timeoutMs: number;
  readonly #pending = new Set<Pending>();
  readonly #onClose: () => void;
  #resolveClosed!: () => void;
  #error: Error | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  /** Mutations waiting for the check phase, in call order (see the top). */
  #deferred: (() => void)[] = [];

  /** `onClose` runs once, when this end is closed or destroyed (the host forgets it). */
  constructor(device: ReplicaDevice, opts: { address: string; timeoutMs?: number; onClose?: () => void }) {
    this.#device = device;
    this.address = opts.address;
    this.#timeoutMs = opts.timeoutMs ?? 8000;
    this.#onClose = opts.onClose ?? (() => {});
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  info(opts?: RequestOptions): Promise<ReplicaInfo> {
    return this.#call('INFO', opts, () => this.#device.info());
  }

  ping(opts?: RequestOptions): Promise<void> {
    return this.#call('PING', opts, () => undefined);
  }

  read(offset: number, length: number, opts?: RequestOptions): Promise<Uint8Array> {
    return this.#call('READ', opts, (signal) => this.#device.read(offset, length, { signal }));
  }

  write(offset: number, data: Uint8Array, opts: MutationOptions = {}): Promise<void> {
    return this.#call('WRITE', opts, (signal) => this.#device.write(offset, data, { fua: opts.fua ?? false, signal }), opts?.deferred === true ? 'deferred' : 'mutation');
  }

  flush(opts?: MutationOptions): Promise<void> {
    return this.#call('FLUSH', opts, (signal) => this.#device.flush({ signal }), opts?.deferred === true ? 'deferred' : 'mutation');
  }

  trim(offset: number, length: number, opts: MutationOptions = {}): Promise<void> {
    return this.#call('TRIM', opts, (signal) => this.#device.trim(offset, length, { fua: opts.fua ?? false, signal }), opts?.deferred === true ? 'deferred' : 'mutation');
  }

  writeZeroes(offset: number, length: number, opts: MutationOptions = {}): Promise<void> {
    return this.#call('WRITE_ZEROES', opts, (signal) => this.#device.writeZeroes(offset, length, { fua: opts.fua ?? false, signal }), opts?.deferred === true ? 'deferred' : 'mutation');
  }

  listExtents(offset: number, maxExtents = 1024, opts?: RequestOptions): Promise<WrittenExtents> {
    const max = Math.min(Math.max(1, maxExtents), MAX_EXTENTS_PER_PAGE);
    return this.#call('LIST_EXTENTS', opts, () => this.#device.writtenExtents({ offset, maxExtents: max }));
  }

  readExtent(offset: number, length: number, opts?: RequestOptions): Promise<ExtentData> {
    return this.#call('READ_EXTENT', opts, (signal) => this.#device.readExtent(offset, length, { signal }));
  }

  setRevision(revision: number, opts?: RequestOptions): Promise<void> {
    return this.#call('SET_REVISION', opts, () => this.#device.setRevision(revision));
  }

  control(req: ControlRequest, data?: Uint8Array, opts?: RequestOptions): Promise<ControlAnswer> {
    const d = this.#device;
    return this.#call('CONTROL', opts, (signal) => {
      if (!d.control) throw new ReplicaError('InvalidArgument', 'this replica has no snapshots (CONTROL is not supported)');
      // As over the wire: the replica gets its own copy of the binary part.
      return d.control(req, data ?? new Uint8Array(0), { signal });
    });
  }

  /** Graceful: waits for the calls in flight, then closes this end (the replica itself stays open). */
  async close(): Promise<void> {
    while (this.#pending.size > 0 && this.#error === undefined) await new Promise((r) => setTimeout(r, 10));
    this.destroy(new ReplicaError('Closed', `connection to replica at ${this.address} closed`));
  }

  /** Abrupt: every call in flight and later fails with `err`. */
  destroy(err?: Error): void {
    if (this.#error) return;
    this.#error = err ?? new ReplicaError('ConnectionClosed', `connection to replica at ${this.address} closed`);
    clearInterval(this.#sweeper);
    for (const p of this.#pending) p.reject(this.#error);
    this.#pending.clear();
    this.#onClose();
    this.#resolveClosed();
  }

  /** The replica this end uses stopped or failed (its host says why). */
  detach(reason: Error): void {
    this.destroy(new ReplicaError('ConnectionClosed', `replica at ${this.address} went away: ${reason.message}`, { cause: reason }));
  }

  /** `kind`: a mutation runs after those called before it; a deferred one in the check phase (see the top). */
  #call<T>(what: string, opts: RequestOptions | undefined, op: (signal: AbortSignal | undefined) => T | Promise<T>, kind: 'read' | 'mutation' | 'deferred' = 'read'): Promise<T> {
    if (this.#error) return Promise.reject(new ReplicaError('ConnectionClosed', `Cannot send ${what} to replica at ${this.address}: the connection is closed`, { cause: this.#error }));
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const timeoutMs = opts?.timeoutMs ?? this.#timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { deadline: performance.now() + timeoutMs, what, reject };
      this.#pending.add(p);
      this.#armSweeper();
      const settle = (): boolean => this.#pending.delete(p);
      const run = (): void => {
        // Timed out or destroyed while it waited: it was rejected then, and must not reach the replica now.
        if (!this.#pending.has(p)) return;
        let result: T | Promise<T>;
        try {
          result = op(signal);
        } catch (err) {
          if (settle()) reject(this.#remote(what, err));
          return;
        }
        Promise.resolve(result).then(
          (v) => settle() && resolve(v),
          (err: unknown) => settle() && reject(this.#remote(what, err)),
        );
      };
      if (kind === 'read' || (kind === 'mutation' && this.#deferred.length === 0)) run();
      else if (this.#deferred.push(run) === 1) setImmediate(() => this.#runDeferred());
    });
  }

  #runDeferred(): void {
    const batch = this.#deferred;
    this.#deferred = [];
    for (const run of batch) run();
  }

  /** A device failure as the replica server would report it over the wire. */
  #remote(what: string, err: unknown): ReplicaError {
    if (err instanceof ReplicaError && err.code === 'ConnectionClosed') return err;
    const message = err instanceof Error ? err.message : String(err);
    return new ReplicaError('Remote', `${what} failed on replica at ${this.address}: ${message}`, { status: statusOf(err), cause: err });
  }

  /** One coarse timer per replica end while calls are in flight, not one per call (tens of thousands per second). */
  #armSweeper(): void {
    if (this.#sweeper) return;
    const every = Math.max(50, Math.min(1000, this.#timeoutMs / 4));
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const p of this.#pending) {
        if (p.deadline > now) continue;
        this.#pending.delete(p);
        p.reject(new ReplicaError('Timeout', `${p.what} to replica at ${this.address} got no answer within ${this.#timeoutMs} ms`));
      }
      if (this.#pending.size === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
      }
    }, every);
    this.#sweeper.unref();
  }
}
