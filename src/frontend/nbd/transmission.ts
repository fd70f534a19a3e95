// Pure encoders and decoders for the NBD transmission phase: requests (client -> server) and simple replies
// (server -> client; structured replies are never negotiated here). `NbdRequestParser` turns a byte stream cut at
// arbitrary points into requests, handing WRITE payloads out as views of the received chunks whenever a payload
// arrived in one piece; `NbdSimpleReplyParser` is its mirror for clients.

import { ByteQueue } from '../../util/byte-queue.js';
import {
  NBD_DEFAULT_MAX_PAYLOAD,
  NBD_REQUEST_HEADER_SIZE,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_SIMPLE_REPLY_SIZE,
  NbdCmd,
} from './constants.js';
import { protocolError } from './errors.js';
import { dataView, getU64, setU64 } from './wire.js';

// ---------------------------------------------------------------------------------------------------------------
// Request
//
//  0       4       6       8                               16                              24      28
//  +-------+-------+-------+-------------------------------+-------------------------------+-------+
//  | magic | flags | type  | handle                        | offset                        | length|
//  | u32   | u16   | u16   | u64, opaque to the server     | u64                           | u32   |
//  +-------+-------+-------+-------------------------------+-------------------------------+-------+
//  magic = 0x25609513; NBD_CMD_WRITE is followed by `length` bytes of payload, no other command carries any.

export interface NbdRequestHeader {
  readonly flags: number;
  readonly type: number;
  readonly handle: bigint;
  readonly offset: number;
  readonly length: number;
}

export interface NbdRequest extends NbdRequestHeader {
  /** Stream offset of the request's first byte. */
  readonly streamOffset: number;
  /** NBD_CMD_WRITE payload, absent when the write was `oversized`. */
  readonly data?: Uint8Array;
  /** A write longer than the parser's payload limit: its payload was skipped, never buffered. Answer EINVAL. */
  readonly oversized?: true;
}

export function encodeRequestHeader(req: NbdRequestHeader): Uint8Array {
  const out = new Uint8Array(NBD_REQUEST_HEADER_SIZE);
  const v = dataView(out);
  v.setUint32(0, NBD_REQUEST_MAGIC);
  v.setUint16(4, req.flags);
  v.setUint16(6, req.type);
  v.setBigUint64(8, req.handle);
  setU64(v, 16, req.offset);
  v.setUint32(24, req.length);
  return out;
}

/** Decodes one 28-byte request header; `offset` is its stream offset, for the error. */
export function decodeRequestHeader(bytes: Uint8Array, offset = 0): NbdRequestHeader {
  const v = dataView(bytes);
  const magic = v.getUint32(0);
  if (magic !== NBD_REQUEST_MAGIC) {
    throw protocolError(offset, `request magic is 0x${magic.toString(16).padStart(8, '0')}, expected 0x25609513`);
  }
  return {
    flags: v.getUint16(4),
    type: v.getUint16(6),
    handle: v.getBigUint64(8),
    offset: getU64(v, 16),
    length: v.getUint32(24),
  };
}

export interface NbdRequestParserOptions {
  /** WRITE payloads longer than this are skipped and the request is flagged `oversized`. */
  maxPayload?: number;
  /** Stream offset of the first byte pushed (the handshake's length), so errors point into the whole stream. */
  startOffset?: number;
}

/**
 * Incremental request parser. Memory held is at most one header plus one payload of up to `maxPayload` bytes;
 * a payload that arrives in one owned chunk is returned as a view of that chunk, any other is copied once (into a
 * buffer of the I/O pool).
 * After a protocol error the parser stays failed: the stream cannot be resynchronised.
 */
export class NbdRequestParser {
  readonly #queue: ByteQueue;
  readonly #maxPayload: number;
  #header: (NbdRequestHeader & { streamOffset: number }) | undefined;
  #skipLeft = 0;
  #failed: Error | undefined;

  constructor(options: NbdRequestParserOptions = {}) {
    this.#maxPayload = options.maxPayload ?? NBD_DEFAULT_MAX_PAYLOAD;
    this.#queue = new ByteQueue(options.startOffset ?? 0);
  }

  /** Bytes received but not yet returned as part of a request. */
  get buffered(): number {
    return this.#queue.length;
  }

  /** Stream offset of the next byte to parse. */
  get offset(): number {
    return this.#queue.offset;
  }

  /** Where the socket may read the rest of a large write's payload directly (ByteQueue.fillSpace), or undefined. */
  readTarget(): Uint8Array | undefined {
    return this.#failed ? undefined : this.#queue.fillSpace();
  }

  /** `transient`: the chunk is a socket's reusable read buffer, overwritten after this call (byte-queue.ts). */
  push(chunk: Uint8Array, transient = false): NbdRequest[] {
    if (this.#failed) throw this.#failed;
    const q = this.#queue;
    q.push(chunk, transient);
    const out: NbdRequest[] = [];
    try {
      for (;;) {
        if (this.#skipLeft > 0) {
          this.#skipLeft -= q.skip(this.#skipLeft);
          if (this.#skipLeft > 0) break;
        }
        if (this.#header) {
          const h = this.#header;
          if (q.length < h.length) break;
          out.push({ flags: h.flags, type: h.type, handle: h.handle, offset: h.offset, length: h.length, streamOffset: h.streamOffset, data: q.take(h.length) });
          this.#header = undefined;
          continue;
        }
        if (q.length < NBD_REQUEST_HEADER_SIZE) break;
        const streamOffset = q.offset;
        const header = decodeRequestHeader(q.take(NBD_REQUEST_HEADER_SIZE), streamOffset);
        if (header.type !== NbdCmd.WRITE) {
          // Spelled out rather than spread: once per request, and object spread is the slow path.
          out.push({ flags: header.flags, type: header.type, handle: header.handle, offset: header.offset, length: header.length, streamOffset });
        } else if (header.length > this.#maxPayload) {
          // Skipping keeps the stream in step without holding the payload; the spec allows a hard disconnect for
          // huge writes but does not require one, and an EINVAL tells the client more.
          out.push({ ...header, streamOffset, oversized: true });
          this.#skipLeft = header.length;
        } else {
          this.#header = { flags: header.flags, type: header.type, handle: header.handle, offset: header.offset, length: header.length, streamOffset };
        }
      }
      // Nothing may point into a transient chunk after this call; a payload still arriving is gathered in one buffer.
      q.settle(this.#header?.length ?? 0);
    } catch (err) {
      this.#failed = err as Error;
      throw err;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Simple reply
//
//  0       4       8                               16
//  +-------+-------+-------------------------------+-----------------------------------+
//  | magic | error | handle                        | data: READ with error 0 only,     |
//  | u32   | u32   | u64, copied from the request  | exactly the requested length      |
//  +-------+-------+-------------------------------+-----------------------------------+
//  magic = 0x67446698; error is an NbdErrno value

export function encodeSimpleReply(error: number, handle: bigint): Uint8Array {
  const out = new Uint8Array(NBD_SIMPLE_REPLY_SIZE);
  const v = dataView(out);
  v.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  v.setUint32(4, error);
  v.setBigUint64(8, handle);
  return out;
}

export interface NbdSimpleReplyHeader {
  readonly error: number;
  readonly handle: bigint;
}

export function decodeSimpleReplyHeader(bytes: Uint8Array, offset = 0): NbdSimpleReplyHeader {
  const v = dataView(bytes);
  const magic = v.getUint32(0);
  if (magic !== NBD_SIMPLE_REPLY_MAGIC) {
    throw protocolError(offset, `reply magic is 0x${magic.toString(16).padStart(8, '0')}, expected 0x67446698`);
  }
  return { error: v.getUint32(4), handle: v.getBigUint64(8) };
}

export interface NbdSimpleReply extends NbdSimpleReplyHeader {
  /** Payload of a successful READ. */
  readonly data?: Uint8Array;
}

/**
 * Incremental simple-reply parser for clients. Simple replies are not self-describing: whether data follows
 * depends on the request, so the caller says how many data bytes a successful reply to `handle` carries
 * (the read length, 0 for other commands, undefined for a handle it never sent).
 */
export class NbdSimpleReplyParser {
  readonly #queue = new ByteQueue();
  readonly #dataLength: (handle: bigint) => number | undefined;
  #header: NbdSimpleReplyHeader | undefined;
  #headerLength = 0;
  #failed: Error | undefined;

  constructor(dataLength: (handle: bigint) => number | undefined) {
    this.#dataLength = dataLength;
  }

  push(chunk: Uint8Array): NbdSimpleReply[] {
    if (this.#failed) throw this.#failed;
    const q = this.#queue;
    q.push(chunk);
    const out: NbdSimpleReply[] = [];
    try {
      for (;;) {
        if (this.#header) {
          if (q.length < this.#headerLength) break;
          out.push({ ...this.#header, data: q.take(this.#headerLength) });
          this.#header = undefined;
          continue;
        }
        if (q.length < NBD_SIMPLE_REPLY_SIZE) break;
        const at = q.offset;
        const header = decodeSimpleReplyHeader(q.take(NBD_SIMPLE_REPLY_SIZE), at);
        const length = this.#dataLength(header.handle);
        if (length === undefined) throw protocolError(at + 8, `reply for unknown handle ${header.handle}`);
        if (header.error !== 0 || length === 0) {
          out.push(header);
        } else {
          this.#header = header;
          this.#headerLength = length;
        }
      }
    } catch (err) {
      this.#failed = err as Error;
      throw err;
    }
    return out;
  }
}
