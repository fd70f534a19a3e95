// ReplicaServer: serves replicas (ReplicaDevices, normally ReplicaStores) to engines over TCP and/or a Unix socket
// with the pipelined protocol of protocol.ts: either one replica (`stratum replica`), or every replica of a node
// on one shared listener (the instance manager), where a connection names its replica with OPEN first. Every request is handed to the device as soon as it is parsed
// and answered when it completes, in any order. A connection stops reading its socket while it has too many
// requests or bytes in flight, so a fast engine cannot make the replica buffer without bound.

import { decodeControlRequest, encodeControlAnswer } from './control.js';
import * as net from 'node:net';
import { newNonce, serverProof, verifyClientProof } from '../auth/cluster-credential.js';
import { isReplicaError, ReplicaError } from './errors.js';
import {
  decodeOpenCredential,
  encodeErrorMessage,
  encodeExtentData,
  encodeExtents,
  encodeInfo,
  encodeResponseHeader,
  Op,
  OP_NAMES,
  RequestFlag,
  RequestParser,
  GREETING_ID,
  isImageDataError,
  OPEN_PURPOSE,
  WireStatus,
  type ReplicaRequest,
} from './protocol.js';
import type { ReplicaDevice } from './types.js';
import { ioBuffers } from '../util/buffer-pool.js';
import { WriteBatch } from '../util/write-batch.js';
import { adoptWithReadBuffer } from '../util/socket-reads.js';

export interface ReplicaServerOptions {
  /** Requests one connection may have in flight before the server stops reading it (default 256). */
  maxInFlightRequests?: number;
  /** Payload and answer bytes one connection may pin before the server stops reading it (default 128 MiB). */
  maxInFlightBytes?: number;
  /** Connection-level failures: protocol errors (with their stream offset), socket errors, refused credentials. */
  onError?: (err: Error) => void;
  /**
   * The cluster secret: every connection must then begin with OPEN carrying the credential derived from it (see
   * protocol.ts, "OPEN with a credential"); anything else closes the connection. Without it: no credential.
   */
  clusterSecret?: string | undefined;
  /** Time a connection has to present its credential (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Connections one remote address may hold open before presenting a credential (default 32; more are closed). */
  maxUnauthenticatedPerAddress?: number;
}

type Limits = Required<Pick<ReplicaServerOptions, 'maxInFlightRequests' | 'maxInFlightBytes'>>;

/** What an unauthenticated connection must prove: the secret and the nonce of its greeting. */
interface Challenge {
  secret: string;
  nonce: Buffer;
  timer: NodeJS.Timeout;
  /** Called once the connection is authenticated or gone (the per-address count). */
  settled: () => void;
}

/**
 * Which replica a connection talks to. A server of one replica has it as `initial` (OPEN optional); a node's
 * shared listener has none, so every connection must OPEN a replica by name before anything else.
 */
export interface ReplicaDirectory {
  readonly initial: ReplicaDevice | undefined;
  open(name: string): ReplicaDevice | undefined;
}

/** The directory of a server that serves exactly `device`. */
export function singleReplica(device: ReplicaDevice): ReplicaDirectory {
  return { initial: device, open: (name) => (name === device.info().name ? device : undefined) };
}

export type ReplicaListenOptions = { host?: string; port: number } | { path: string };
export type ReplicaAddress = { host: string; port: number } | { path: string };

/** The wire status for a device failure. */
export function statusOf(err: unknown): WireStatus {
  // NotFound and AlreadyExists: a snapshot request naming a snapshot that is not there, or already is.
  if (isReplicaError(err, 'OutOfRange') || isReplicaError(err, 'InvalidArgument') || isReplicaError(err, 'NotFound') || isReplicaError(err, 'AlreadyExists')) return WireStatus.EINVAL;
  if (isReplicaError(err, 'Closed')) return WireStatus.ESHUTDOWN;
  if (isReplicaError(err, 'NoReplica')) return WireStatus.ENOENT;
  if (isImageDataError(err)) return WireStatus.EBADIMAGE;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return WireStatus.ENOSPC;
  return WireStatus.EIO;
}

class Connection {
  readonly #socket: net.Socket;
  /** Reads land in one reusable buffer: a chunk is valid only during #onData (src/util/socket-reads.ts). */
  readonly #transientReads: boolean;
  readonly #batch: WriteBatch;
  readonly #directory: ReplicaDirectory;
  #device: ReplicaDevice | undefined;
  /** The name OPEN gave (undefined on a single-replica server's connection that never sent OPEN). */
  replicaName: string | undefined;
  readonly #limits: Limits;
  readonly #onError: (err: Error) => void;
  #challenge: Challenge | undefined;
  /** The server proof answering the authenticated OPEN (by request id). */
  #openProof: { id: number; proof: Buffer } | undefined;
  readonly #parser = new RequestParser();
  readonly #abort = new AbortController();
  readonly closed: Promise<void>;
  #inFlight = 0;
  #inFlightBytes = 0;
  #draining = false;
  #paused = false;
  #ended = false;

  /** `accepted`: a socket its net.Server has just accepted, not yet read from (it is re-homed, see socket-reads.ts). */
  constructor(accepted: net.Socket, directory: ReplicaDirectory, limits: Limits, onError: (err: Error) => void, challenge?: Omit<Challenge, 'nonce' | 'timer'> & { timeoutMs: number }) {
    const reads = adoptWithReadBuffer(accepted, (chunk) => this.#onData(chunk), { target: () => this.#parser.readTarget() });
    const socket = reads.socket;
    this.#socket = socket;
    this.#transientReads = reads.transient;
    this.#batch = new WriteBatch(socket);
    this.#directory = directory;
    this.#device = directory.initial;
    this.#limits = limits;
    this.#onError = onError;
    socket.setNoDelay(true);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', (err) => onError(err));
    socket.on('end', () => this.drain());
    if (challenge) {
      const nonce = newNonce();
      const timer = setTimeout(() => this.#refuse(`no credential within ${challenge.timeoutMs} ms`), challenge.timeoutMs);
      timer.unref();
      this.#challenge = { secret: challenge.secret, nonce, timer, settled: challenge.settled };
      void this.closed.then(() => this.#settleChallenge());
      // The greeting: the nonce the client's proof must cover (protocol.ts, "OPEN with a credential").
      socket.write(encodeResponseHeader({ op: Op.OPEN, status: WireStatus.OK, id: GREETING_ID, payloadLength: nonce.byteLength }));
      socket.write(nonce);
    }
  }

  #settleChallenge(): void {
    const c = this.#challenge;
    if (!c) return;
    this.#challenge = undefined;
    clearTimeout(c.timer);
    c.settled();
  }

  /** Closes a connection that did not authenticate; the reason goes to onError (the server's log). */
  #refuse(why: string): void {
    const peer = `${this.#socket.remoteAddress ?? 'a local peer'}${this.#socket.remotePort ? `:${this.#socket.remotePort}` : ''}`;
    const err = new ReplicaError('Unauthenticated', `Closed the replica connection from ${peer}: ${why}`);
    this.#onError(err);
    this.destroy(err);
  }

  /** Checks the first request of a connection that must authenticate; false when it was refused. */
  #authenticate(r: ReplicaRequest): boolean {
    const c = this.#challenge!;
    if (r.op !== Op.OPEN || (r.flags & RequestFlag.CRED) === 0) {
      this.#refuse(`the first request was ${OP_NAMES[r.op] ?? r.op}${r.op === Op.OPEN ? ' without a credential' : ''}, not OPEN with the cluster credential`);
      return false;
    }
    const cred = decodeOpenCredential(r.payload, r.length);
    const h = { purpose: OPEN_PURPOSE, name: cred.name, serverNonce: c.nonce, clientNonce: Buffer.from(cred.clientNonce) };
    try {
      verifyClientProof(c.secret, h, Buffer.from(cred.proof));
    } catch {
      this.#refuse(`OPEN "${cred.name}" carried a wrong credential (the peer does not hold the cluster secret)`);
      return false;
    }
    this.#openProof = { id: r.id, proof: serverProof(c.secret, h) };
    this.#settleChallenge();
    return true;
  }

  /** Graceful: stop reading, answer everything received, then close. */
  drain(): void {
    this.#draining = true;
    this.#socket.pause();
    this.#maybeEnd();
  }

  destroy(reason: Error): void {
    this.#abort.abort(reason);
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#ended) return; // answered everything it will answer (#maybeEnd)
    let requests: ReplicaRequest[];
    try {
      requests = this.#parser.push(chunk, this.#transientReads);
    } catch (err) {
      this.#onError(err as Error);
      this.destroy(err as Error);
      return;
    }
    if (this.#challenge && requests.length > 0 && !this.#authenticate(requests[0]!)) return;
    // Dispatch in arrival order, synchronously: the device registers each range lock before yielding (range-lock.ts).
    for (const r of requests) void this.#execute(r);
    this.#pump();
  }

  async #execute(r: ReplicaRequest): Promise<void> {
    const cost = r.payloadLength + (r.op === Op.READ || r.op === Op.READ_EXTENT ? r.length : 0);
    this.#inFlight++;
    this.#inFlightBytes += cost;
    let status: WireStatus = WireStatus.OK;
    let payload: Uint8Array[];
    try {
      payload = await this.#call(r);
    } catch (err) {
      status = statusOf(err);
      payload = [encodeErrorMessage(err instanceof Error ? err.message : String(err))];
    }
    const payloadLength = payload.reduce((n, p) => n + p.byteLength, 0);
    const socket = this.#socket;
    if (!socket.destroyed && !socket.writableEnded) {
      this.#batch.hold();
      socket.write(encodeResponseHeader({ op: r.op, status, id: r.id, payloadLength }));
      // A READ's data came from the device, which handed it over: once the socket has taken it, a pooled buffer
      // goes back (util/buffer-pool.ts).
      for (const p of payload) if (p.byteLength > 0) socket.write(p, () => ioBuffers.give(p));
    }
    this.#inFlight--;
    this.#inFlightBytes -= cost;
    this.#pump();
  }

  #call(r: ReplicaRequest): Promise<Uint8Array[]> | Uint8Array[] {
    if (r.op === Op.OPEN) return this.#open(r);
    const d = this.#device;
    if (!d) throw new ReplicaError('NoReplica', `${OP_NAMES[r.op] ?? r.op} before OPEN: this listener serves several replicas; name one with OPEN first`);
    const signal = this.#abort.signal;
    const fua = (r.flags & RequestFlag.FUA) !== 0;
    const none = (): Uint8Array[] => [];
    switch (r.op) {
      case Op.PING:
        return [];
      case Op.INFO:
        return [encodeInfo(d.info())];
      case Op.READ:
        return d.read(r.offset, r.length, { signal }).then((data) => [data]);
      case Op.WRITE:
        return d.write(r.offset, r.payload, { fua, signal }).then(() => {
          ioBuffers.give(r.payload);
          return [];
        });
      case Op.FLUSH:
        return d.flush({ signal }).then(none);
      case Op.TRIM:
        return d.trim(r.offset, r.length, { fua, signal }).then(none);
      case Op.WRITE_ZEROES:
        return d.writeZeroes(r.offset, r.length, { fua, signal }).then(none);
      case Op.LIST_EXTENTS:
        return [encodeExtents(d.writtenExtents({ offset: r.offset, maxExtents: r.length }))];
      case Op.READ_EXTENT:
        return d.readExtent(r.offset, r.length, { signal }).then(encodeExtentData);
      case Op.SET_REVISION:
        d.setRevision(r.offset);
        return [];
      case Op.CONTROL: {
        if (!d.control) throw new ReplicaError('InvalidArgument', 'this replica has no snapshots (CONTROL is not supported)');
        const { req, data } = decodeControlRequest(r.payload, r.length, r.streamOffset);
        return d.control(req, data, { signal }).then(encodeControlAnswer);
      }
    }
    throw new ReplicaError('InvalidArgument', `unexpected op ${r.op}`);
  }

  /** Synchronous, so requests pipelined behind OPEN already see the replica it chose. */
  #open(r: ReplicaRequest): Uint8Array[] {
    const withCred = (r.flags & RequestFlag.CRED) !== 0;
    const name = withCred ? decodeOpenCredential(r.payload, r.length).name : Buffer.from(r.payload).toString('utf8');
    // A listener without a secret ignores a credential; one with a secret checked it in #authenticate.
    const proof = this.#openProof?.id === r.id ? this.#openProof.proof : undefined;
    if (this.replicaName !== undefined && this.replicaName !== name) {
      throw new ReplicaError('InvalidArgument', `Cannot OPEN replica "${name}": this connection already uses replica "${this.replicaName}"`);
    }
    const device = this.#directory.open(name);
    if (!device) throw new ReplicaError('NoReplica', `No replica "${name}" is served here (it is not running on this node)`);
    this.#device = device;
    this.replicaName = name;
    return proof ? [proof] : [];
  }

  #pump(): void {
    const full = this.#inFlight >= this.#limits.maxInFlightRequests || this.#inFlightBytes >= this.#limits.maxInFlightBytes;
    if (!this.#draining && full !== this.#paused) {
      this.#paused = full;
      if (full) this.#socket.pause();
      else this.#socket.resume();
    }
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#draining && this.#inFlight === 0 && !this.#ended) {
      this.#ended = true;
      this.#socket.end();
      // Read on, discarding, until the peer's end arrives: a socket reading into its own buffer (socket-reads.ts)
      // stops reading the moment it is paused, and a paused socket would never see the end that lets it close.
      this.#socket.resume();
      // A peer that never closes its side must not hold close() forever.
      setTimeout(() => this.#socket.destroy(), 2000).unref();
    }
  }
}

export class ReplicaServer {
  readonly #directory: ReplicaDirectory;
  readonly #limits: Limits;
  readonly #onError: (err: Error) => void;
  readonly #secret: string | undefined;
  readonly #handshakeTimeoutMs: number;
  readonly #maxUnauthenticated: number;
  /** Connections not yet authenticated, per remote address. */
  readonly #unauthenticated = new Map<string, number>();
  readonly #connections = new Set<Connection>();
  readonly #listeners: net.Server[] = [];
  #closing = false;

  /** Serves one replica (a ReplicaDevice), or the replicas of a directory, chosen per connection with OPEN. */
  constructor(served: ReplicaDevice | ReplicaDirectory, opts: ReplicaServerOptions = {}) {
    this.#directory = 'open' in served ? served : singleReplica(served);
    this.#limits = { maxInFlightRequests: opts.maxInFlightRequests ?? 256, maxInFlightBytes: opts.maxInFlightBytes ?? 128 * 1024 * 1024 };
    this.#onError = opts.onError ?? (() => {});
    this.#secret = opts.clusterSecret;
    this.#handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.#maxUnauthenticated = opts.maxUnauthenticatedPerAddress ?? 32;
  }

  /** Listen on one more endpoint (TCP: host defaults to 127.0.0.1, port 0 picks one; or a Unix socket path). */
  async listen(endpoint: ReplicaListenOptions, { signal }: { signal?: AbortSignal } = {}): Promise<ReplicaAddress> {
    if (this.#closing) throw new ReplicaError('Closed', 'Cannot listen: the replica server is closed');
    signal?.throwIfAborted();
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
    const where = 'path' in endpoint ? endpoint.path : `${endpoint.host ?? '127.0.0.1'}:${endpoint.port}`;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        signal?.removeEventListener('abort', onAbort);
        reject(new ReplicaError('InvalidArgument', `Cannot listen on ${where}: ${err.message}`, { cause: err }));
      };
      const onAbort = (): void => {
        server.off('error', onError);
        server.close();
        reject(signal?.reason);
      };
      server.once('error', onError);
      signal?.addEventListener('abort', onAbort, { once: true });
      server.listen('path' in endpoint ? { path: endpoint.path } : { host: endpoint.host ?? '127.0.0.1', port: endpoint.port }, () => {
        server.off('error', onError);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
    server.on('error', (err) => this.#onError(err));
    this.#listeners.push(server);
    const a = server.address();
    return typeof a === 'string' || a === null ? { path: 'path' in endpoint ? endpoint.path : String(a) } : { host: a.address, port: a.port };
  }

  /** Graceful: stop accepting, answer every request already received, close connections. */
  async close({ signal }: { signal?: AbortSignal } = {}): Promise<void> {
    this.#closing = true;
    const conns = [...this.#connections];
    for (const c of conns) c.drain();
    const onAbort = (): void => void this.destroy(new ReplicaError('Closed', 'replica server close aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.all([...conns.map((c) => c.closed), this.#closeListeners()]);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Abrupt: drop every connection now (device calls in flight see their signal abort). */
  async destroy(err?: Error): Promise<void> {
    this.#closing = true;
    const reason = err ?? new ReplicaError('Closed', 'replica server destroyed');
    const conns = [...this.#connections];
    for (const c of conns) c.destroy(reason);
    await Promise.all([...conns.map((c) => c.closed), this.#closeListeners()]);
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Drops the connections that OPENed replica `name` (it stopped or failed); others keep going. */
  disconnect(name: string, reason: Error): Promise<void> {
    const conns = [...this.#connections].filter((c) => c.replicaName === name);
    for (const c of conns) c.destroy(reason);
    return Promise.all(conns.map((c) => c.closed)).then(() => {});
  }

  #accept(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    let challenge;
    if (this.#secret !== undefined) {
      const addr = socket.remoteAddress ?? 'unix';
      const n = this.#unauthenticated.get(addr) ?? 0;
      if (n >= this.#maxUnauthenticated) {
        this.#onError(new ReplicaError('Unauthenticated', `Closed a replica connection from ${addr}: it already has ${n} connections that did not present a credential`));
        socket.destroy();
        return;
      }
      this.#unauthenticated.set(addr, n + 1);
      const settled = (): void => {
        const left = (this.#unauthenticated.get(addr) ?? 1) - 1;
        if (left > 0) this.#unauthenticated.set(addr, left);
        else this.#unauthenticated.delete(addr);
      };
      challenge = { secret: this.#secret, settled, timeoutMs: this.#handshakeTimeoutMs };
    }
    const conn = new Connection(socket, this.#directory, this.#limits, this.#onError, challenge);
    this.#connections.add(conn);
    void conn.closed.then(() => this.#connections.delete(conn));
  }

  #closeListeners(): Promise<void> {
    return Promise.all(this.#listeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve())))).then(() => {});
  }
}
