// A small NBD client (fixed newstyle, simple replies, pipelined requests) over TCP or a Unix socket. It exists so
// tests and tooling can drive an NBD server request by request, including malformed ones (`request` returns the
// raw error value, `sendRaw` writes arbitrary bytes); real consumers use qemu, libnbd tools or the kernel.

import * as net from 'node:net';
import { ByteQueue } from '../../util/byte-queue.js';
import {
  NBD_EXPORT_NAME_ZEROES,
  NBD_GREETING_SIZE,
  NBD_OPTION_REPLY_HEADER_SIZE,
  NbdClientFlag,
  NbdCmd,
  NbdCmdFlag,
  NbdErrno,
  NbdHandshakeFlag,
  NbdInfo,
  NbdOpt,
  NbdRep,
  isErrorReply,
  nbdErrnoName,
} from './constants.js';
import { NbdError } from './errors.js';
import {
  type NbdBlockSize,
  decodeExportNameReply,
  decodeGreeting,
  decodeInfoReply,
  decodeOptionReplyHeader,
  decodeServerEntry,
  encodeClientFlags,
  encodeInfoRequest,
  encodeOption,
} from './handshake.js';
import { NbdSimpleReplyParser, encodeRequestHeader } from './transmission.js';
import { encodeUtf8 } from './wire.js';

export type NbdEndpoint = { host?: string; port: number } | { path: string };

export interface NbdConnectOptions {
  exportName?: string;
  /** Enter transmission with the old NBD_OPT_EXPORT_NAME instead of NBD_OPT_GO. */
  useExportName?: boolean;
  signal?: AbortSignal;
}

export interface NbdRawRequest {
  type: number;
  flags?: number;
  offset?: number;
  length?: number;
  /** WRITE payload; `length` defaults to its size. */
  data?: Uint8Array;
}

export interface NbdRawReply {
  readonly error: number;
  readonly data?: Uint8Array;
}

interface ExportInfo {
  size: number;
  flags: number;
  blockSize?: NbdBlockSize;
  description?: string;
}

interface Pending {
  readonly readLength: number;
  readonly resolve: (reply: NbdRawReply) => void;
  readonly reject: (err: Error) => void;
}

/** Reads exact byte counts off a socket during the handshake. */
class HandshakeReader {
  readonly #queue = new ByteQueue();
  readonly #socket: net.Socket;
  #waiter: { n: number; resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | undefined;
  #error: Error | undefined;
  readonly #onData = (chunk: Buffer): void => {
    this.#queue.push(chunk);
    this.#wake();
  };
  readonly #onClose = (): void => {
    this.#error ??= new NbdError('NbdConnectionClosed', 'NBD server closed the connection during the handshake');
    this.#wake();
  };

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', this.#onData);
    socket.on('close', this.#onClose);
  }

  read(n: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.#waiter = { n, resolve, reject };
      this.#wake();
    });
  }

  /** Stops reading and returns what was received beyond the handshake. */
  detach(): Uint8Array[] {
    this.#socket.off('data', this.#onData);
    this.#socket.off('close', this.#onClose);
    return this.#queue.takeAll();
  }

  #wake(): void {
    const w = this.#waiter;
    if (!w) return;
    if (this.#queue.length >= w.n) {
      this.#waiter = undefined;
      w.resolve(this.#queue.take(w.n));
    } else if (this.#error) {
      this.#waiter = undefined;
      w.reject(this.#error);
    }
  }
}

async function dial(endpoint: NbdEndpoint, signal: AbortSignal | undefined): Promise<net.Socket> {
  signal?.throwIfAborted();
  const socket =
    'path' in endpoint
      ? net.connect({ path: endpoint.path })
      : net.connect({ host: endpoint.host ?? '127.0.0.1', port: endpoint.port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      socket.destroy();
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    socket.once('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new NbdError('NbdConnectionClosed', `Cannot connect to NBD server: ${err.message}`, { cause: err }));
    });
  });
  return socket;
}

/** Reads one option reply (header and data). */
async function readOptionReply(reader: HandshakeReader): Promise<{ replyType: number; data: Uint8Array }> {
  const header = decodeOptionReplyHeader(await reader.read(NBD_OPTION_REPLY_HEADER_SIZE));
  const data = await reader.read(header.length);
  return { replyType: header.replyType, data };
}

function optionFailure(what: string, replyType: number, data: Uint8Array): NbdError {
  const message = new TextDecoder().decode(data);
  const code = replyType === NbdRep.ERR_UNKNOWN ? 'NbdExportUnknown' : 'NbdOptionFailed';
  const text = `NBD server refused ${what} (reply 0x${replyType.toString(16)}): ${message}`;
  return new NbdError(code, text, { replyType });
}

/** Greeting and client flags; returns whether the server offered NO_ZEROES. */
async function greet(socket: net.Socket, reader: HandshakeReader): Promise<boolean> {
  const { handshakeFlags } = decodeGreeting(await reader.read(NBD_GREETING_SIZE));
  if ((handshakeFlags & NbdHandshakeFlag.FIXED_NEWSTYLE) === 0) {
    throw new NbdError('NbdProtocol', 'NBD server does not speak fixed newstyle');
  }
  const noZeroes = (handshakeFlags & NbdHandshakeFlag.NO_ZEROES) !== 0;
  socket.write(encodeClientFlags(NbdClientFlag.FIXED_NEWSTYLE | (noZeroes ? NbdClientFlag.NO_ZEROES : 0)));
  return noZeroes;
}

export class NbdClient {
  readonly size: number;
  readonly flags: number;
  readonly blockSize: NbdBlockSize | undefined;
  readonly description: string | undefined;
  readonly #socket: net.Socket;
  readonly #pending = new Map<bigint, Pending>();
  readonly #closed: Promise<void>;
  #nextHandle = 1n;
  #error: Error | undefined;

  private constructor(
    socket: net.Socket,
    leftover: Uint8Array[],
    info: ExportInfo,
  ) {
    this.#socket = socket;
    this.size = info.size;
    this.flags = info.flags;
    this.blockSize = info.blockSize;
    this.description = info.description;
    const parser = new NbdSimpleReplyParser((handle) => this.#pending.get(handle)?.readLength);
    const onData = (chunk: Uint8Array): void => {
      let replies;
      try {
        replies = parser.push(chunk);
      } catch (err) {
        this.#error = err as Error;
        socket.destroy();
        return;
      }
      for (const r of replies) {
        const p = this.#pending.get(r.handle);
        this.#pending.delete(r.handle);
        p?.resolve(r);
      }
    };
    this.#closed = new Promise((resolve) =>
      socket.once('close', () => {
        const err = this.#closedError();
        for (const p of this.#pending.values()) p.reject(err);
        this.#pending.clear();
        resolve();
      }),
    );
    socket.on('error', (err) => (this.#error ??= err));
    for (const c of leftover) onData(c);
    socket.on('data', onData);
  }

  /** Connects and negotiates an export (NBD_OPT_GO asking for block size, name and description). */
  static async connect(endpoint: NbdEndpoint, opts: NbdConnectOptions = {}): Promise<NbdClient> {
    const socket = await dial(endpoint, opts.signal);
    const reader = new HandshakeReader(socket);
    const onAbort = (): void => void socket.destroy();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const noZeroes = await greet(socket, reader);
      const name = opts.exportName ?? '';
      if (opts.useExportName) {
        socket.write(encodeOption(NbdOpt.EXPORT_NAME, encodeUtf8(name)));
        const reply = decodeExportNameReply(await reader.read(10 + (noZeroes ? 0 : NBD_EXPORT_NAME_ZEROES)));
        return new NbdClient(socket, reader.detach(), reply);
      }
      const infos = [NbdInfo.BLOCK_SIZE, NbdInfo.NAME, NbdInfo.DESCRIPTION];
      socket.write(encodeOption(NbdOpt.GO, encodeInfoRequest(name, infos)));
      const info: ExportInfo = { size: -1, flags: 0 };
      for (;;) {
        const { replyType, data } = await readOptionReply(reader);
        if (replyType === NbdRep.ACK) break;
        if (isErrorReply(replyType)) throw optionFailure(`export "${name}"`, replyType, data);
        if (replyType !== NbdRep.INFO) continue;
        const item = decodeInfoReply(data);
        if ('size' in item) {
          info.size = item.size;
          info.flags = item.flags;
        } else if ('minimum' in item) {
          info.blockSize = { minimum: item.minimum, preferred: item.preferred, maximum: item.maximum };
        } else if ('description' in item) info.description = item.description;
      }
      if (info.size < 0) {
        throw new NbdError('NbdProtocol', 'NBD server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT');
      }
      return new NbdClient(socket, reader.detach(), info);
    } catch (err) {
      socket.destroy();
      throw opts.signal?.aborted ? opts.signal.reason : err;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The server's export list (NBD_OPT_LIST), then a soft disconnect (NBD_OPT_ABORT). */
  static async list(
    endpoint: NbdEndpoint,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ name: string; description: string }[]> {
    const socket = await dial(endpoint, opts.signal);
    const reader = new HandshakeReader(socket);
    const onAbort = (): void => void socket.destroy();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await greet(socket, reader);
      socket.write(encodeOption(NbdOpt.LIST));
      const out: { name: string; description: string }[] = [];
      for (;;) {
        const { replyType, data } = await readOptionReply(reader);
        if (replyType === NbdRep.ACK) break;
        if (isErrorReply(replyType)) throw optionFailure('NBD_OPT_LIST', replyType, data);
        if (replyType === NbdRep.SERVER) out.push(decodeServerEntry(data));
      }
      socket.write(encodeOption(NbdOpt.ABORT));
      await readOptionReply(reader).catch(() => undefined); // servers may close without acknowledging
      return out;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
    }
  }

  /** Resolves when the socket has closed. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /**
   * Sends one request and resolves with the server's raw answer (error value, READ data). `signal` is checked
   * before sending only: NBD has no way to cancel a request once it is on the wire.
   */
  request(req: NbdRawRequest, opts: { signal?: AbortSignal } = {}): Promise<NbdRawReply> {
    if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
    if (this.#socket.destroyed) return Promise.reject(this.#closedError());
    const handle = this.#nextHandle++;
    const length = req.length ?? req.data?.byteLength ?? 0;
    const offset = req.offset ?? 0;
    const promise = new Promise<NbdRawReply>((resolve, reject) => {
      this.#pending.set(handle, { readLength: req.type === NbdCmd.READ ? length : 0, resolve, reject });
    });
    this.#socket.write(encodeRequestHeader({ flags: req.flags ?? 0, type: req.type, handle, offset, length }));
    if (req.type === NbdCmd.WRITE && req.data) this.#socket.write(req.data);
    return promise;
  }

  async read(offset: number, length: number, opts: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    const reply = await this.#checked('read', { type: NbdCmd.READ, offset, length }, opts);
    return reply.data ?? new Uint8Array(0);
  }

  async write(offset: number, data: Uint8Array, opts: { fua?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    await this.#checked('write', { type: NbdCmd.WRITE, offset, data, flags: opts.fua ? NbdCmdFlag.FUA : 0 }, opts);
  }

  async flush(opts: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#checked('flush', { type: NbdCmd.FLUSH }, opts);
  }

  async trim(offset: number, length: number, opts: { fua?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    await this.#checked('trim', { type: NbdCmd.TRIM, offset, length, flags: opts.fua ? NbdCmdFlag.FUA : 0 }, opts);
  }

  async writeZeroes(
    offset: number,
    length: number,
    opts: { fua?: boolean; noHole?: boolean; signal?: AbortSignal } = {},
  ): Promise<void> {
    const flags = (opts.fua ? NbdCmdFlag.FUA : 0) | (opts.noHole ? NbdCmdFlag.NO_HOLE : 0);
    await this.#checked('write zeroes', { type: NbdCmd.WRITE_ZEROES, offset, length, flags }, opts);
  }

  /** Bytes queued in this process because the server is not reading them yet (its backpressure, seen from here). */
  get bufferedBytes(): number {
    return this.#socket.writableLength;
  }

  /** Writes bytes as they are, for protocol-violation tests. */
  sendRaw(bytes: Uint8Array): void {
    this.#socket.write(bytes);
  }

  /** Soft disconnect: NBD_CMD_DISC, then wait for the server to close; if `signal` aborts first, destroy. */
  async disconnect(opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.#socket.destroyed && !this.#socket.writableEnded) {
      this.#socket.write(encodeRequestHeader({ flags: 0, type: NbdCmd.DISC, handle: 0n, offset: 0, length: 0 }));
      this.#socket.end();
    }
    const onAbort = (): void => this.destroy();
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.#closed;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Protocol errors from the server keep their code; socket errors become the cause of a closed-connection error. */
  #closedError(): Error {
    if (this.#error instanceof NbdError) return this.#error;
    return new NbdError('NbdConnectionClosed', 'NBD connection closed', { cause: this.#error });
  }

  async #checked(what: string, req: NbdRawRequest, opts: { signal?: AbortSignal }): Promise<NbdRawReply> {
    const reply = await this.request(req, opts);
    if (reply.error !== NbdErrno.OK) {
      const message = `NBD ${what} at ${req.offset ?? 0} failed: ${nbdErrnoName(reply.error)}`;
      throw new NbdError('NbdRequestFailed', message, { nbdErrno: reply.error });
    }
    return reply;
  }
}
