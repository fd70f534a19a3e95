// One client connection of the NBD server: the fixed-newstyle handshake, then pipelined transmission against the
// chosen export's BlockDevice. Requests run concurrently and are answered out of order (matched by handle); a
// bound on requests and bytes in flight pauses the socket, so a fast client cannot make the server buffer without
// limit. The server (server.ts) owns listeners and the export table; this file owns one socket.

import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import type { BlockDevice } from './device.js';
import { nbdErrnoFromError } from './device.js';
import {
  NBD_OPTION_HEADER_SIZE,
  NbdClientFlag,
  NbdCmd,
  NbdErrno,
  NbdInfo,
  NbdOpt,
  NbdRep,
} from './constants.js';
import { NbdError, isNbdError } from './errors.js';
import {
  type NbdBlockSize,
  NbdHandshakeParser,
  decodeExportName,
  decodeInfoRequest,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeOptionReply,
  encodeServerEntry,
} from './handshake.js';
import { type NbdRequest, NbdRequestParser, encodeSimpleReply } from './transmission.js';
import { encodeErrorChunk, encodeReadChunks } from './structured.js';
import { type NbdExportStats, costOf, countRequest, dispatchRequest, validateRequest } from './requests.js';
import { encodeUtf8 } from './wire.js';
import { ioBuffers } from '../../util/buffer-pool.js';
import { WriteBatch } from '../../util/write-batch.js';
import { adoptWithReadBuffer } from '../../util/socket-reads.js';

export interface ExportEntry {
  readonly name: string;
  readonly device: BlockDevice;
  readonly description: string;
  readonly flags: number;
  readonly connections: Set<NbdConnection>;
  readonly stats: NbdExportStats;
}

export interface ConnectionLimits {
  readonly maxInFlightRequests: number;
  readonly maxInFlightBytes: number;
  readonly maxPayload: number;
  readonly handshakeTimeoutMs: number;
  readonly closeGraceMs: number;
  readonly blockSize: NbdBlockSize;
}

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly limits: ConnectionLimits;
  isClosing(): boolean;
  findExport(name: string): ExportEntry | undefined;
  listExports(): Iterable<ExportEntry>;
  reportError(err: NbdError): void;
}

type State = 'handshake' | 'transmission' | 'draining' | 'closed';
type OptionOutcome = 'continue' | 'transmission' | 'stop';

export class NbdConnection {
  readonly #socket: Socket;
  /** Reads land in one reusable buffer: a chunk is valid only during #onData (src/util/socket-reads.ts). */
  readonly #transientReads: boolean;
  readonly #batch: WriteBatch;
  readonly #host: ConnectionHost;
  readonly #abort = new AbortController();
  readonly #handshake = new NbdHandshakeParser();
  readonly #settled: Promise<void>;
  #resolveSettled!: () => void;
  #state: State = 'handshake';
  #requests: NbdRequestParser | undefined;
  #export: ExportEntry | undefined;
  #noZeroes = false;
  /** The client negotiated structured replies: READs are answered in chunks, zero runs as holes (structured.ts). */
  #structured = false;
  #pending: NbdRequest[] = [];
  /** Requests taken from #pending whose reply has not been flushed yet. */
  #inFlight = 0;
  #inFlightBytes = 0;
  /** Device calls not yet settled (they may outlive the socket). */
  #running = 0;
  #paused = false;
  #peerDone = false;
  #ending = false;
  #socketClosed = false;
  /** Given to a device that refused a write for now (`admit`): it calls this once it has room. */
  readonly #wake = (): void => this.#pump();
  #timer: NodeJS.Timeout | undefined;

  /** `accepted`: a socket its net.Server has just accepted, not yet read from (it is re-homed, see socket-reads.ts). */
  constructor(accepted: Socket, host: ConnectionHost) {
    const reads = adoptWithReadBuffer(accepted, (chunk) => this.#onData(chunk), { target: () => this.#readTarget() });
    const socket = reads.socket;
    this.#socket = socket;
    this.#transientReads = reads.transient;
    this.#batch = new WriteBatch(socket);
    this.#host = host;
    this.#settled = new Promise((resolve) => (this.#resolveSettled = resolve));
    socket.setNoDelay(true); // a no-op on Unix sockets
    // Every in-flight device call may listen on the one signal; that is expected, not a leak.
    setMaxListeners(host.limits.maxInFlightRequests + 16, this.#abort.signal);
    socket.on('end', () => this.#onPeerEnd());
    // 'close' always follows 'error'; the error itself is the client's business (reset, broken pipe).
    socket.on('error', () => {});
    socket.once('close', () => this.#onClose());
    this.#timer = setTimeout(() => {
      const ms = host.limits.handshakeTimeoutMs;
      host.reportError(new NbdError('NbdHandshakeTimeout', `NBD client did not finish the handshake in ${ms} ms`));
      this.destroy();
    }, host.limits.handshakeTimeoutMs);
    socket.write(encodeGreeting());
  }

  /** Resolves once the socket is closed and no device call of this connection is still running. */
  get closed(): Promise<void> {
    return this.#settled;
  }

  /** Graceful: answer what was received, refuse newer requests with ESHUTDOWN, then close. */
  drain(): void {
    if (this.#state === 'handshake') this.#end();
    else if (this.#state === 'transmission') {
      this.#state = 'draining';
      this.#pump();
    }
  }

  /** Abrupt: cancel device calls and drop the socket. */
  destroy(reason?: Error): void {
    this.#abort.abort(reason ?? new NbdError('NbdConnectionClosed', 'NBD connection destroyed'));
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    try {
      if (this.#ending) return;
      // The handshake is a few hundred bytes: its parser simply gets its own copy.
      if (this.#state === 'handshake') this.#onHandshakeData(this.#transientReads ? Buffer.from(chunk) : chunk);
      else if (this.#state !== 'closed') this.#onTransmissionData(chunk, this.#transientReads);
    } catch (err) {
      const error = isNbdError(err) ? err : new NbdError('NbdProtocol', 'NBD connection failed', { cause: err });
      this.#host.reportError(error);
      this.destroy(error);
    }
  }

  /** The rest of a large write's payload is read straight into its buffer, only while requests are parsed. */
  #readTarget(): Uint8Array | undefined {
    if (this.#ending || this.#peerDone || (this.#state !== 'transmission' && this.#state !== 'draining')) return undefined;
    return this.#requests?.readTarget();
  }

  #onHandshakeData(chunk: Uint8Array): void {
    this.#handshake.push(chunk);
    for (let msg = this.#handshake.next(); msg; msg = this.#handshake.next()) {
      if (msg.kind === 'clientFlags') {
        const known = NbdClientFlag.FIXED_NEWSTYLE | NbdClientFlag.NO_ZEROES;
        if ((msg.flags & ~known) !== 0) {
          throw new NbdError('NbdProtocol', `NBD client sent unknown client flags 0x${msg.flags.toString(16)}`, {
            offset: msg.offset,
          });
        }
        this.#noZeroes = (msg.flags & NbdClientFlag.NO_ZEROES) !== 0;
        continue;
      }
      if (msg.kind === 'oversizedOption') {
        this.#optionError(msg.option, NbdRep.ERR_TOO_BIG, `option data of ${msg.length} bytes is too long`);
        continue;
      }
      const outcome = this.#onOption(msg.option, msg.data, msg.offset + NBD_OPTION_HEADER_SIZE);
      if (outcome === 'stop') return;
      if (outcome === 'transmission') {
        const rest = this.#handshake.takeRemaining();
        this.#requests = new NbdRequestParser({ maxPayload: this.#host.limits.maxPayload, startOffset: rest.offset });
        for (const c of rest.chunks) this.#onTransmissionData(c);
        return;
      }
    }
  }

  #onOption(option: number, data: Uint8Array, dataOffset: number): OptionOutcome {
    const host = this.#host;
    if (host.isClosing() && option !== NbdOpt.ABORT && option !== NbdOpt.EXPORT_NAME) {
      this.#optionError(option, NbdRep.ERR_SHUTDOWN, 'server is shutting down');
      return 'continue';
    }
    switch (option) {
      case NbdOpt.EXPORT_NAME: {
        // This option cannot be answered with an error; the spec's only refusal is closing the connection.
        const name = decodeExportName(data, dataOffset);
        const entry = host.isClosing() ? undefined : host.findExport(name);
        if (!entry) {
          host.reportError(new NbdError('NbdExportUnknown', `NBD client asked for unknown export "${name}"`));
          this.#end();
          return 'stop';
        }
        this.#socket.write(encodeExportNameReply(entry.device.size, entry.flags, !this.#noZeroes));
        this.#enterTransmission(entry);
        return 'transmission';
      }
      case NbdOpt.ABORT:
        this.#socket.write(encodeOptionReply(option, NbdRep.ACK));
        this.#end();
        return 'stop';
      case NbdOpt.LIST:
        if (data.byteLength !== 0) {
          this.#optionError(option, NbdRep.ERR_INVALID, 'NBD_OPT_LIST takes no data');
          return 'continue';
        }
        for (const e of host.listExports()) {
          this.#socket.write(encodeOptionReply(option, NbdRep.SERVER, encodeServerEntry(e.name, e.description)));
        }
        this.#socket.write(encodeOptionReply(option, NbdRep.ACK));
        return 'continue';
      case NbdOpt.INFO:
      case NbdOpt.GO:
        return this.#onInfoOrGo(option, data, dataOffset);
      case NbdOpt.STRUCTURED_REPLY:
        if (data.byteLength !== 0) {
          this.#optionError(option, NbdRep.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          return 'continue';
        }
        this.#structured = true;
        this.#socket.write(encodeOptionReply(option, NbdRep.ACK));
        return 'continue';
      default:
        // Includes STARTTLS, the meta-context options and EXTENDED_HEADERS: every client we care about falls back
        // when told so.
        this.#optionError(option, NbdRep.ERR_UNSUP, `option ${option} is not supported by this server`);
        return 'continue';
    }
  }

  #onInfoOrGo(option: number, data: Uint8Array, dataOffset: number): OptionOutcome {
    let request;
    try {
      request = decodeInfoRequest(data, dataOffset);
    } catch (err) {
      this.#optionError(option, NbdRep.ERR_INVALID, (err as Error).message);
      return 'continue';
    }
    const entry = this.#host.findExport(request.name);
    if (!entry) {
      this.#optionError(option, NbdRep.ERR_UNKNOWN, `export "${request.name}" does not exist`);
      return 'continue';
    }
    const info = (payload: Uint8Array): void => {
      this.#socket.write(encodeOptionReply(option, NbdRep.INFO, payload));
    };
    info(encodeInfoExport(entry.device.size, entry.flags));
    for (const type of new Set(request.infos)) {
      if (type === NbdInfo.NAME) info(encodeInfoText(NbdInfo.NAME, entry.name));
      else if (type === NbdInfo.DESCRIPTION && entry.description) {
        info(encodeInfoText(NbdInfo.DESCRIPTION, entry.description));
      } else if (type === NbdInfo.BLOCK_SIZE) info(encodeInfoBlockSize(this.#host.limits.blockSize));
    }
    this.#socket.write(encodeOptionReply(option, NbdRep.ACK));
    if (option !== NbdOpt.GO) return 'continue';
    this.#enterTransmission(entry);
    return 'transmission';
  }

  #optionError(option: number, replyType: number, message: string): void {
    this.#socket.write(encodeOptionReply(option, replyType, encodeUtf8(message)));
  }

  #enterTransmission(entry: ExportEntry): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#state = 'transmission';
    this.#export = entry;
    entry.connections.add(this);
    entry.stats.connections++;
  }

  #onTransmissionData(chunk: Uint8Array, transient = false): void {
    if (this.#peerDone) return; // after NBD_CMD_DISC the client must not send anything; ignore it if it does
    for (const r of this.#requests!.push(chunk, transient)) {
      if (r.type === NbdCmd.DISC) {
        this.#peerDone = true;
        break;
      }
      // Received after a graceful close began: the spec's answer is ESHUTDOWN, without touching the device.
      if (this.#state === 'draining') this.#reply(r, NbdErrno.ESHUTDOWN, undefined, () => {});
      else this.#pending.push(r);
    }
    this.#pump();
  }

  #onPeerEnd(): void {
    this.#peerDone = true;
    if (this.#state === 'handshake') this.#end();
    else this.#pump();
  }

  /** Starts pending requests while the in-flight bounds allow, then pauses or resumes the socket to match. */
  #pump(): void {
    if (this.#state === 'closed') return;
    const limits = this.#host.limits;
    while (this.#pending.length > 0 && this.#inFlight < limits.maxInFlightRequests) {
      const cost = costOf(this.#pending[0]!);
      // A request larger than the whole byte budget still runs, alone, or it would never run at all.
      if (this.#inFlight > 0 && this.#inFlightBytes + cost > limits.maxInFlightBytes) break;
      // A device that holds writes in memory (a live engine swap) may be full: the request waits here unstarted,
      // and the socket is paused below until the device has room again.
      const next = this.#pending[0]!;
      if (next.type === NbdCmd.WRITE && this.#export?.device.admit && !this.#export.device.admit(next.data?.length ?? 0, this.#wake)) break;
      void this.#execute(this.#pending.shift()!, cost);
    }
    const full =
      this.#pending.length > 0 ||
      this.#inFlight >= limits.maxInFlightRequests ||
      this.#inFlightBytes >= limits.maxInFlightBytes;
    if (full !== this.#paused) {
      this.#paused = full;
      if (full) this.#socket.pause();
      else this.#socket.resume();
    }
    const finishing = this.#peerDone || this.#state === 'draining';
    if (finishing && this.#inFlight === 0 && this.#pending.length === 0) this.#end();
  }

  async #execute(r: NbdRequest, cost: number): Promise<void> {
    const stats = this.#export!.stats;
    this.#inFlight++;
    this.#inFlightBytes += cost;
    this.#running++;
    stats.inFlight++;
    stats.peakInFlight = Math.max(stats.peakInFlight, stats.inFlight);
    let errno: number = validateRequest(r, this.#export!.device, this.#host.limits.maxPayload);
    let data: Uint8Array | undefined;
    if (errno === NbdErrno.OK) {
      try {
        data = await dispatchRequest(r, this.#export!.device, this.#abort.signal);
        // The device is done with a write's payload (pooled when it straddled socket chunks).
        if (r.type === NbdCmd.WRITE) ioBuffers.give(r.data);
      } catch (err) {
        errno = nbdErrnoFromError(err);
      }
    }
    this.#running--;
    stats.inFlight--;
    countRequest(stats, r, errno);
    // The reply's buffer stays counted until the socket has taken it: that is what bounds memory on slow readers.
    this.#reply(r, errno, data, () => {
      // The socket has taken the read's data: a pooled buffer can go back (the device handed it over to us).
      ioBuffers.give(data);
      this.#inFlight--;
      this.#inFlightBytes -= cost;
      this.#pump();
    });
    this.#checkSettled();
  }

  #reply(r: NbdRequest, errno: number, data: Uint8Array | undefined, done: () => void): void {
    const socket = this.#socket;
    if (this.#socketClosed || socket.destroyed || socket.writableEnded) {
      done();
      return;
    }
    this.#batch.hold();
    if (this.#structured && r.type === NbdCmd.READ) {
      const parts = errno === NbdErrno.OK ? encodeReadChunks(r.handle, r.offset, data ?? new Uint8Array(0)) : [encodeErrorChunk(r.handle, errno)];
      const last = parts.length - 1;
      parts.forEach((p, i) => (i === last ? socket.write(p, () => done()) : socket.write(p)));
      return;
    }
    const header = encodeSimpleReply(errno, r.handle);
    if (errno === NbdErrno.OK && data && data.byteLength > 0) {
      socket.write(header);
      socket.write(data, () => done());
    } else {
      socket.write(header, () => done());
    }
  }

  #end(): void {
    if (this.#ending) return;
    this.#ending = true;
    clearTimeout(this.#timer);
    this.#socket.end();
    // Read on (#onData discards) until the peer's end arrives: a socket reading into its own buffer
    // (socket-reads.ts) stops reading the moment it is paused, and would never see the end that lets it close.
    this.#socket.resume();
    // A peer that never closes its side must not hold close() forever.
    this.#timer = setTimeout(() => this.#socket.destroy(), this.#host.limits.closeGraceMs);
  }

  #onClose(): void {
    this.#socketClosed = true;
    this.#state = 'closed';
    clearTimeout(this.#timer);
    this.#abort.abort(new NbdError('NbdConnectionClosed', 'NBD connection closed'));
    this.#pending = [];
    const entry = this.#export;
    if (entry && entry.connections.delete(this)) entry.stats.connections--;
    this.#checkSettled();
  }

  #checkSettled(): void {
    if (this.#socketClosed && this.#running === 0) this.#resolveSettled();
  }
}
