// ReplicaClient: the engine's end of the replica protocol. One connection, requests pipelined with ids, answers
// matched in any order. Every request has a timeout (a replica that stops answering must not stall the volume);
// a request that times out or is aborted is forgotten, and its late answer, if any, is dropped. The connection is
// never re-established here: a replica that failed is marked ERR by the engine and rebuilt, not silently resumed.

import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { clientProof, newNonce, verifyServerProof } from '../auth/cluster-credential.js';
import { protocolError, ReplicaError } from './errors.js';
import { decodeControlAnswer, encodeControlRequest, type ControlAnswer, type ControlRequest } from './control.js';
import {
  encodeOpenCredential,
  GREETING_ID,
  OPEN_NONCE_BYTES,
  OPEN_PURPOSE,
  decodeExtentData,
  decodeExtents,
  decodeInfo,
  encodeRequestHeader,
  MAX_EXTENTS_PER_PAGE,
  MAX_IO,
  Op,
  OP_NAMES,
  RequestFlag,
  ResponseParser,
  WireStatus,
  type ReplicaResponse,
} from './protocol.js';
import type { ExtentData, ReplicaInfo, WrittenExtents } from './types.js';
import { WriteBatch } from '../util/write-batch.js';
import { connectWithReadBuffer } from '../util/socket-reads.js';

export type ReplicaEndpoint = { host?: string; port: number } | { path: string };

export interface ReplicaClientOptions {
  /** Default per-request timeout in ms (default 8000, Longhorn's engine-replica-timeout). */
  timeoutMs?: number;
  /** Time allowed to establish the connection (default 5000 ms). */
  connectTimeoutMs?: number;
  /**
   * The replica to OPEN on connect: required on a node's shared replica listener (the instance manager), optional
   * on a single-replica server (which then checks the name). The connection is returned only once OPEN succeeded.
   */
  name?: string;
  /**
   * The cluster secret: wait for the listener's greeting, OPEN `name` with the credential derived from it, and check
   * the server's proof (protocol.ts, "OPEN with a credential"). Needed by an instance manager's listener.
   */
  clusterSecret?: string | undefined;
  signal?: AbortSignal;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** Overrides the client's default timeout for this request. */
  timeoutMs?: number | undefined;
}

interface Pending {
  readonly id: number;
  readonly op: number;
  /** performance.now() after which the request has timed out. */
  readonly deadline: number;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (r: ReplicaResponse) => void;
  readonly reject: (err: unknown) => void;
}

/** The requests in flight under one caller's signal, and the one abort listener they share. */
interface SignalGroup {
  readonly pending: Set<Pending>;
  readonly onAbort: () => void;
}

const STATUS_NAMES: Record<number, string> = Object.fromEntries(Object.entries(WireStatus).map(([k, v]) => [v, k]));

/** Why a request cannot be encoded (fields out of range), or undefined. */
function checkRequest(op: Op, offset: number, length: number): string | undefined {
  if (!Number.isSafeInteger(offset) || offset < 0) return `offset ${offset} is not a non-negative integer below 2^53`;
  if (!Number.isInteger(length) || length < 0 || length > 0xffff_ffff) return `length ${length} does not fit 32 bits`;
  if ((op === Op.READ || op === Op.READ_EXTENT || op === Op.WRITE) && length > MAX_IO) return `length ${length} exceeds the ${MAX_IO}-byte limit`;
  return undefined;
}

function isTimeout(err: unknown): boolean {
  return err instanceof ReplicaError && err.code === 'Timeout';
}

/** "host:port" or the socket path, for messages and status. */
export function formatEndpoint(e: ReplicaEndpoint): string {
  return 'path' in e ? e.path : `${e.host ?? '127.0.0.1'}:${e.port}`;
}

export class ReplicaClient {
  readonly address: string;
  readonly #socket: net.Socket;
  readonly #batch: WriteBatch;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  /**
   * One abort listener per distinct signal, not one per request: callers pass the same long-lived signal (an NBD
   * connection's) with every request, and adding and removing an AbortSignal listener per request was a visible
   * cost. The listener goes when the last request under it settles.
   */
  readonly #bySignal = new Map<AbortSignal, SignalGroup>();
  readonly #parser = new ResponseParser();
  readonly closed: Promise<void>;
  #nextId = 1;
  #error: Error | undefined;
  #ending = false;
  /** The one timer of the connection, armed for the earliest deadline in flight (see #armTimer). */
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;

  /** `attach` routes the socket's reads (into its reusable read buffer, src/util/socket-reads.ts) to this client. */
  private constructor(socket: net.Socket, attach: (onChunk: (chunk: Buffer) => void, target: () => Uint8Array | undefined) => void, address: string, timeoutMs: number) {
    this.#socket = socket;
    this.#batch = new WriteBatch(socket);
    this.address = address;
    this.#timeoutMs = timeoutMs;
    socket.setNoDelay(true);
    attach(
      (chunk) => this.#onData(chunk),
      () => this.#parser.readTarget(),
    );
    socket.on('error', (err) => (this.#error ??= err));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        clearTimeout(this.#timer);
        const err = this.closeReason;
        for (const p of this.#pending.values()) this.#settle(p).reject(err);
        resolve();
      }),
    );
  }

  static async connect(endpoint: ReplicaEndpoint, opts: ReplicaClientOptions = {}): Promise<ReplicaClient> {
    const address = formatEndpoint(endpoint);
    opts.signal?.throwIfAborted();
    const { socket, attach } = connectWithReadBuffer('path' in endpoint ? { path: endpoint.path } : { host: endpoint.host ?? '127.0.0.1', port: endpoint.port });
    const timeout = AbortSignal.timeout(opts.connectTimeoutMs ?? 5000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        signal.removeEventListener('abort', onAbort);
        socket.off('error', onError);
      };
      const onAbort = (): void => {
        done();
        socket.destroy();
        reject(opts.signal?.aborted ? opts.signal.reason : new ReplicaError('Timeout', `Cannot connect to replica at ${address}: no answer within ${opts.connectTimeoutMs ?? 5000} ms`));
      };
      const onError = (err: Error): void => {
        done();
        reject(new ReplicaError('ConnectionClosed', `Cannot connect to replica at ${address}: ${err.message}`, { cause: err }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('error', onError);
      socket.once('connect', () => {
        done();
        resolve();
      });
    });
    const client = new ReplicaClient(socket, attach, address, opts.timeoutMs ?? 8000);
    // The caller's signal only: the connect timeout's own signal would end the greeting wait without saying why.
    const openOpts = { signal: opts.signal, timeoutMs: opts.connectTimeoutMs ?? 5000 };
    if (opts.clusterSecret !== undefined) {
      if (opts.name === undefined) throw new ReplicaError('InvalidArgument', 'a replica connection with the cluster credential needs the replica name');
      try {
        await client.#openWithCredential(opts.name, opts.clusterSecret, openOpts);
      } catch (err) {
        client.destroy();
        throw err;
      }
    } else if (opts.name !== undefined) {
      try {
        await client.#request(Op.OPEN, { payload: Buffer.from(opts.name, 'utf8') }, openOpts);
      } catch (err) {
        client.destroy();
        throw err;
      }
    }
    return client;
  }

  /** The greeting's nonce, then OPEN with the proof; the answer must carry the server's proof. */
  async #openWithCredential(name: string, secret: string, opts: RequestOptions): Promise<void> {
    const greeting = await this.#expect(GREETING_ID, Op.OPEN, opts, 'the greeting (its nonce) of the replica listener');
    if (greeting.payload.byteLength !== OPEN_NONCE_BYTES) this.#violation(greeting.streamOffset + 16, `greeting nonce of ${greeting.payload.byteLength} bytes, expected ${OPEN_NONCE_BYTES}`);
    const h = { purpose: OPEN_PURPOSE, name, serverNonce: Buffer.from(greeting.payload), clientNonce: newNonce() };
    const { length, payload } = encodeOpenCredential({ name, clientNonce: h.clientNonce, proof: clientProof(secret, h) });
    const answer = await this.#request(Op.OPEN, { length, payload, flags: RequestFlag.CRED }, opts);
    try {
      verifyServerProof(secret, h, Buffer.from(answer.payload));
    } catch {
      const err = new ReplicaError('Unauthenticated', `The replica listener at ${this.address} did not prove it holds the cluster secret (OPEN "${name}")`);
      this.destroy(err);
      throw err;
    }
  }

  /** Waits for an answer with a fixed id that was not requested (the greeting). */
  #expect(id: number, op: Op, opts: RequestOptions, what: string): Promise<ReplicaResponse> {
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const promise = new Promise<ReplicaResponse>((resolve, reject) => {
      const p: Pending = { id, op, deadline: performance.now() + timeoutMs, timeoutMs, signal: opts.signal, resolve, reject };
      this.#pending.set(id, p);
      if (opts.signal) this.#joinSignal(opts.signal, p);
      if (p.deadline < this.#timerAt) this.#armTimer(p.deadline);
    });
    return promise.catch((err: unknown) => {
      if (isTimeout(err)) throw new ReplicaError('Timeout', `No ${what} at ${this.address} within ${timeoutMs} ms (does it require the cluster credential?)`, { cause: err });
      throw err;
    });
  }

  /** Why the connection closed (or will report once it has). */
  get closeReason(): Error {
    if (this.#error instanceof ReplicaError) return this.#error;
    return new ReplicaError('ConnectionClosed', `connection to replica at ${this.address} closed`, { cause: this.#error });
  }

  get isOpen(): boolean {
    return !this.#socket.destroyed && !this.#ending;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  async ping(opts: RequestOptions = {}): Promise<void> {
    await this.#request(Op.PING, {}, opts);
  }

  async info(opts: RequestOptions = {}): Promise<ReplicaInfo> {
    const r = await this.#request(Op.INFO, {}, opts);
    return this.#decode(r, decodeInfo);
  }

  async read(offset: number, length: number, opts: RequestOptions = {}): Promise<Uint8Array> {
    const r = await this.#request(Op.READ, { offset, length }, opts);
    if (r.payload.byteLength !== length) this.#violation(r.streamOffset + 16, `READ of ${length} bytes answered with ${r.payload.byteLength}`);
    return r.payload;
  }

  async write(offset: number, data: Uint8Array, opts: RequestOptions & { fua?: boolean } = {}): Promise<void> {
    await this.#request(Op.WRITE, { offset, length: data.byteLength, payload: data, flags: opts.fua ? RequestFlag.FUA : 0 }, opts);
  }

  async flush(opts: RequestOptions = {}): Promise<void> {
    await this.#request(Op.FLUSH, {}, opts);
  }

  async trim(offset: number, length: number, opts: RequestOptions & { fua?: boolean } = {}): Promise<void> {
    await this.#request(Op.TRIM, { offset, length, flags: opts.fua ? RequestFlag.FUA : 0 }, opts);
  }

  async writeZeroes(offset: number, length: number, opts: RequestOptions & { fua?: boolean } = {}): Promise<void> {
    await this.#request(Op.WRITE_ZEROES, { offset, length, flags: opts.fua ? RequestFlag.FUA : 0 }, opts);
  }

  /** One page of written extents from `offset` on. */
  async listExtents(offset: number, maxExtents = 1024, opts: RequestOptions = {}): Promise<WrittenExtents> {
    const max = Math.min(Math.max(1, maxExtents), MAX_EXTENTS_PER_PAGE);
    const r = await this.#request(Op.LIST_EXTENTS, { offset, length: max }, opts);
    return this.#decode(r, decodeExtents);
  }

  async readExtent(offset: number, length: number, opts: RequestOptions = {}): Promise<ExtentData> {
    const r = await this.#request(Op.READ_EXTENT, { offset, length }, opts);
    const e = this.#decode(r, decodeExtentData);
    const covered = e.runs.reduce((n, run) => n + run.length, 0);
    if (covered !== length) this.#violation(r.streamOffset + 24, `READ_EXTENT of ${length} bytes answered with runs covering ${covered}`);
    return e;
  }

  async setRevision(revision: number, opts: RequestOptions = {}): Promise<void> {
    await this.#request(Op.SET_REVISION, { offset: revision }, opts);
  }

  /** A snapshot operation or layer copy (control.ts); `data` is the request's binary part. */
  async control(req: ControlRequest, data?: Uint8Array, opts: RequestOptions = {}): Promise<ControlAnswer> {
    const { length, payload } = encodeControlRequest(req, data);
    const r = await this.#request(Op.CONTROL, { length, payload }, opts);
    return this.#decode(r, decodeControlAnswer);
  }

  /** Graceful: wait for the answers in flight, then close. */
  async close(): Promise<void> {
    this.#ending = true;
    while (this.#pending.size > 0 && !this.#socket.destroyed) {
      await Promise.race([this.closed, new Promise((r) => setTimeout(r, 10))]);
    }
    this.#socket.end();
    const timer = setTimeout(() => this.#socket.destroy(), 2000).unref();
    await this.closed;
    clearTimeout(timer);
  }

  /** Abrupt: fail everything in flight with `err` and drop the connection. */
  destroy(err?: Error): void {
    if (err) this.#error ??= err;
    this.#socket.destroy();
  }

  #request(op: Op, h: { offset?: number; length?: number; flags?: number; payload?: Uint8Array }, opts: RequestOptions): Promise<ReplicaResponse> {
    const what = (): string => `${OP_NAMES[op]} to replica at ${this.address}`;
    if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
    const bad = checkRequest(op, h.offset ?? 0, h.length ?? 0);
    // Refused here, not sent: the replica would drop the connection on a header it cannot accept.
    if (bad) return Promise.reject(new ReplicaError('InvalidArgument', `Cannot send ${what()}: ${bad}`));
    if (this.#socket.destroyed || this.#ending) {
      return Promise.reject(new ReplicaError('ConnectionClosed', `Cannot send ${what()}: the connection is closed`, { cause: this.#error }));
    }
    const id = this.#nextId++;
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const deadline = performance.now() + timeoutMs;
    const signal = opts.signal;
    let pending: Pending;
    const promise = new Promise<ReplicaResponse>((resolve, reject) => {
      pending = { id, op, deadline, timeoutMs, signal, resolve, reject };
    });
    this.#pending.set(id, pending!);
    if (signal) this.#joinSignal(signal, pending!);
    if (deadline < this.#timerAt) this.#armTimer(deadline);
    const socket = this.#socket;
    this.#batch.hold();
    const payload = h.payload;
    socket.write(encodeRequestHeader({ op, flags: h.flags ?? 0, id, offset: h.offset ?? 0, length: h.length ?? 0, payloadLength: payload?.byteLength ?? 0 }));
    if (payload && payload.byteLength > 0) socket.write(payload);
    return promise;
  }

  #joinSignal(signal: AbortSignal, p: Pending): void {
    let group = this.#bySignal.get(signal);
    if (!group) {
      const pending = new Set<Pending>();
      const onAbort = (): void => {
        for (const q of pending) this.#settle(q).reject(signal.reason);
      };
      group = { pending, onAbort };
      this.#bySignal.set(signal, group);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    group.pending.add(p);
  }

  /** Forget a request (answered, failed, timed out or aborted); returns it for the caller to resolve or reject. */
  #settle(p: Pending): Pending {
    this.#pending.delete(p.id);
    const signal = p.signal;
    if (signal) {
      const group = this.#bySignal.get(signal);
      if (group && group.pending.delete(p) && group.pending.size === 0) {
        signal.removeEventListener('abort', group.onAbort);
        this.#bySignal.delete(signal);
      }
    }
    return p;
  }

  /**
   * One timer per connection instead of one per request: it is armed for the earliest deadline in flight and, when
   * it fires, fails every request past its deadline and re-arms for the next one. A request that completes leaves
   * the timer alone; the timer then finds nothing due and re-arms (at most once per timeout period).
   */
  #armTimer(at: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, at - performance.now()));
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const p of this.#pending.values()) {
      if (p.deadline <= now) this.#settle(p).reject(new ReplicaError('Timeout', `${OP_NAMES[p.op]} to replica at ${this.address} got no answer within ${p.timeoutMs} ms`));
      else if (p.deadline < next) next = p.deadline;
    }
    if (next !== Infinity && !this.#socket.destroyed) this.#armTimer(next);
  }

  #onData(chunk: Buffer): void {
    let responses: ReplicaResponse[];
    try {
      responses = this.#parser.push(chunk, true);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    for (const r of responses) {
      const p = this.#pending.get(r.id);
      if (!p) continue; // timed out or aborted: the answer has nobody waiting
      if (p.op !== r.op) {
        this.destroy(protocolError(r.streamOffset + 4, `answer to request ${r.id} is for ${OP_NAMES[r.op]}, the request was ${OP_NAMES[p.op]}`));
        return;
      }
      this.#settle(p);
      if (r.status === WireStatus.OK) p.resolve(r);
      else {
        const message = Buffer.from(r.payload).toString('utf8');
        p.reject(new ReplicaError('Remote', `${OP_NAMES[r.op]} failed on replica at ${this.address} (${STATUS_NAMES[r.status]}): ${message}`, { status: r.status }));
      }
    }
  }

  #decode<T>(r: ReplicaResponse, decode: (bytes: Uint8Array, at: number) => T): T {
    try {
      return decode(r.payload, r.streamOffset + 24);
    } catch (err) {
      this.destroy(err as Error);
      throw err;
    }
  }

  /** The replica broke the protocol: nothing more from this connection can be trusted. */
  #violation(at: number, message: string): never {
    const err = protocolError(at, message);
    this.destroy(err);
    throw err;
  }
}
