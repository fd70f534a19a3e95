// The engine ↔ replica wire protocol (docs/replica-protocol.md), as pure functions apart from sockets: frame
// headers, incremental parsers that accept a stream cut at arbitrary points, and (protocol-payloads.ts) the payloads
// of the operations that carry structured data. Requests are pipelined and answered out of order; the request id
// pairs them up. All integers are little-endian; 64-bit fields must stay below 2^53 (JavaScript numbers), and a
// peer that sends more is answered with a protocol error naming the byte offset of the field.

import { ByteQueue } from '../util/byte-queue.js';
import { isImageFormatError } from '../imagefmt/index.js';
import { isReplicaError, protocolError } from './errors.js';
import { getU64, setU64, view } from './wire.js';
import { MAX_CONTROL_JSON } from './control.js';

export * from './protocol-payloads.js';

export const Op = {
  PING: 1,
  INFO: 2,
  READ: 3,
  WRITE: 4,
  FLUSH: 5,
  TRIM: 6,
  WRITE_ZEROES: 7,
  LIST_EXTENTS: 8,
  READ_EXTENT: 9,
  SET_REVISION: 10,
  /** The first request on a connection to a node's shared replica listener: which replica (payload: its name). */
  OPEN: 11,
  /** Snapshot operations and layer copies: a JSON request and answer, each with optional binary data (control.ts). */
  CONTROL: 12,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

export const OP_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));

export const RequestFlag = {
  /** WRITE, TRIM, WRITE_ZEROES: durable before the answer (as a flush right after the operation). */
  FUA: 1,
  /** OPEN only: the payload carries the cluster credential after the name (see "OPEN with a credential"). */
  CRED: 2,
} as const;

/** Answer status: 0 is success; the others say how the operation failed (the payload is a UTF-8 message). */
export const WireStatus = {
  OK: 0,
  /** The replica's storage failed (or something unexpected did). */
  EIO: 1,
  /** The request is valid protocol but not a valid operation here (outside the volume, misaligned extent). */
  EINVAL: 2,
  /** The disk is full. */
  ENOSPC: 3,
  /** The replica is closing. */
  ESHUTDOWN: 4,
  /** OPEN named a replica this listener does not serve, or a request came before OPEN on a shared listener. */
  ENOENT: 5,
  /**
   * The backing image's bytes cannot be decoded as its format says (a corrupt or truncated qcow2): every replica over
   * the same image answers the same, so it says nothing about this replica's disk.
   */
  EBADIMAGE: 6,
} as const;
export type WireStatus = (typeof WireStatus)[keyof typeof WireStatus];

/**
 * The backing image's bytes could not be decoded (a corrupt or truncated qcow2): met locally as an ImageFormatError,
 * from a remote replica as wire status EBADIMAGE. Every replica over the same image meets the same error, so it is
 * no fault of the replica that reported it.
 */
export function isImageDataError(err: unknown): boolean {
  if (isImageFormatError(err, 'Corrupt') || isImageFormatError(err, 'Truncated')) return true;
  return isReplicaError(err, 'Remote') && err.status === WireStatus.EBADIMAGE;
}

export const REQUEST_HEADER_SIZE = 32;
export const RESPONSE_HEADER_SIZE = 24;
/** "SRQ1" and "SRS1" in stream order. */
export const REQUEST_MAGIC = 0x3151_5253;
export const RESPONSE_MAGIC = 0x3153_5253;
/** Largest WRITE payload and READ / READ_EXTENT length. */
export const MAX_IO = 32 * 1024 * 1024;
/** Longest replica name in an OPEN payload (a DNS-1123 name). */
export const MAX_OPEN_NAME = 253;
/** Largest page of LIST_EXTENTS. */
export const MAX_EXTENTS_PER_PAGE = 65_536;
/** Largest answer payload: MAX_IO of data plus a READ_EXTENT run table at the smallest block size. */
export const MAX_RESPONSE_PAYLOAD = MAX_IO + 2 * 1024 * 1024;

const WITH_FUA = new Set<number>([Op.WRITE, Op.TRIM, Op.WRITE_ZEROES]);

// ---------------------------------------------------------------------------------------------------------------
// OPEN with a credential (a listener that has the cluster secret; docs/replica-protocol.md, docs/security.md).
//
// On accept the server sends a greeting before anything else: a response header {op OPEN, status OK, id 0,
// paylen 32} and a fresh 32-byte server nonce. The client's first request must be OPEN with flag CRED:
//   length = byte length of the name, paylen = length + 64, payload = name | client nonce (32) | client proof (32)
//   client proof = clientProof(secret, {purpose "replica", name, serverNonce, clientNonce})
// and the answer's payload is the 32-byte server proof, which the client checks (it reached the cluster, not an
// impostor). Any other first request, or a wrong proof, and the server closes the connection.

/** Bytes of each nonce and each proof in the OPEN credential. */
export const OPEN_NONCE_BYTES = 32;
export const OPEN_PROOF_BYTES = 32;
/** The handshake purpose: a proof for the replica protocol opens nothing else. */
export const OPEN_PURPOSE = 'replica';
/** The request id of the greeting (client ids start at 1). */
export const GREETING_ID = 0;

export interface OpenCredential {
  name: string;
  clientNonce: Uint8Array;
  proof: Uint8Array;
}

export function encodeOpenCredential(c: OpenCredential): { length: number; payload: Uint8Array } {
  const name = Buffer.from(c.name, 'utf8');
  return { length: name.byteLength, payload: Buffer.concat([name, c.clientNonce, c.proof]) };
}

/** The parts of an OPEN payload sent with CRED (the header was validated: paylen = length + 64). */
export function decodeOpenCredential(payload: Uint8Array, nameLength: number): OpenCredential {
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return {
    name: b.subarray(0, nameLength).toString('utf8'),
    clientNonce: b.subarray(nameLength, nameLength + OPEN_NONCE_BYTES),
    proof: b.subarray(nameLength + OPEN_NONCE_BYTES, nameLength + OPEN_NONCE_BYTES + OPEN_PROOF_BYTES),
  };
}
// ---------------------------------------------------------------------------------------------------------------
// Request: header, then `payloadLength` bytes (WRITE only).
//
//  0        4        6        8                16               24       28       32
//  +--------+--------+--------+----------------+----------------+--------+--------+
//  | magic  | op     | flags  | id             | offset         | length | paylen |
//  | "SRQ1" | u16    | u16    | u64            | u64            | u32    | u32    |
//  +--------+--------+--------+----------------+----------------+--------+--------+
//  READ, READ_EXTENT: offset/length of the range.  WRITE: offset, length = paylen = data bytes.
//  TRIM, WRITE_ZEROES: offset/length.  LIST_EXTENTS: offset = cursor, length = most extents to return.
//  SET_REVISION: offset = the new revision.  PING, INFO, FLUSH: all zero.  flags: FUA on WRITE/TRIM/WRITE_ZEROES.
//  OPEN: paylen = length of the UTF-8 replica name that follows; offset and length zero. With flag CRED: see
//  "OPEN with a credential" above.  CONTROL: length = bytes of the JSON request, paylen = length + binary data.

export interface RequestHeader {
  op: Op;
  flags: number;
  id: number;
  offset: number;
  length: number;
  payloadLength: number;
}

export interface ReplicaRequest extends RequestHeader {
  /** Stream offset of the request's first byte. */
  streamOffset: number;
  /** WRITE data (a view of the received bytes when they arrived in one piece). */
  payload: Uint8Array;
}

export function encodeRequestHeader(h: RequestHeader): Uint8Array {
  const out = new Uint8Array(REQUEST_HEADER_SIZE);
  const v = view(out);
  v.setUint32(0, REQUEST_MAGIC, true);
  v.setUint16(4, h.op, true);
  v.setUint16(6, h.flags, true);
  setU64(v, 8, h.id);
  setU64(v, 16, h.offset);
  v.setUint32(24, h.length, true);
  v.setUint32(28, h.payloadLength, true);
  return out;
}

/** Decode and validate a 32-byte request header found at stream offset `at`. */
export function decodeRequestHeader(bytes: Uint8Array, at = 0): RequestHeader {
  const v = view(bytes);
  const magic = v.getUint32(0, true);
  if (magic !== REQUEST_MAGIC) throw protocolError(at, `request magic is 0x${magic.toString(16).padStart(8, '0')}, expected 0x${REQUEST_MAGIC.toString(16)}`);
  const op = v.getUint16(4, true);
  if (OP_NAMES[op] === undefined) throw protocolError(at + 4, `unknown op ${op}`);
  const flags = v.getUint16(6, true);
  const allowed = WITH_FUA.has(op) ? RequestFlag.FUA : op === Op.OPEN ? RequestFlag.CRED : 0;
  if ((flags & ~allowed) !== 0) throw protocolError(at + 6, `flags 0x${flags.toString(16)} are not valid for ${OP_NAMES[op]}`);
  const id = getU64(v, 8, at, 'request id');
  const offset = getU64(v, 16, at, 'offset');
  const length = v.getUint32(24, true);
  const payloadLength = v.getUint32(28, true);
  const name = OP_NAMES[op]!;
  switch (op) {
    case Op.WRITE:
      if (length > MAX_IO) throw protocolError(at + 24, `WRITE of ${length} bytes exceeds the ${MAX_IO}-byte limit`);
      if (payloadLength !== length) throw protocolError(at + 28, `WRITE payload length ${payloadLength} differs from its length ${length}`);
      break;
    case Op.READ:
    case Op.READ_EXTENT:
      if (length > MAX_IO) throw protocolError(at + 24, `${name} of ${length} bytes exceeds the ${MAX_IO}-byte limit`);
      break;
    case Op.LIST_EXTENTS:
      if (length === 0 || length > MAX_EXTENTS_PER_PAGE) throw protocolError(at + 24, `LIST_EXTENTS page of ${length} extents is not in 1..${MAX_EXTENTS_PER_PAGE}`);
      break;
    case Op.OPEN:
      if (offset !== 0) throw protocolError(at + 16, 'OPEN must have offset 0');
      if ((flags & RequestFlag.CRED) !== 0) {
        if (length === 0 || length > MAX_OPEN_NAME) throw protocolError(at + 24, `OPEN name of ${length} bytes is not in 1..${MAX_OPEN_NAME}`);
        const want = length + OPEN_NONCE_BYTES + OPEN_PROOF_BYTES;
        if (payloadLength !== want) throw protocolError(at + 28, `OPEN with a credential carries ${want} bytes (name, nonce, proof), got ${payloadLength}`);
        break;
      }
      if (length !== 0) throw protocolError(at + 24, 'OPEN must have length 0');
      if (payloadLength === 0 || payloadLength > MAX_OPEN_NAME) throw protocolError(at + 28, `OPEN name of ${payloadLength} bytes is not in 1..${MAX_OPEN_NAME}`);
      break;
    case Op.CONTROL:
      if (offset !== 0) throw protocolError(at + 16, 'CONTROL must have offset 0');
      if (length === 0 || length > MAX_CONTROL_JSON) throw protocolError(at + 24, `CONTROL request of ${length} JSON bytes is not in 1..${MAX_CONTROL_JSON}`);
      if (payloadLength < length || payloadLength > length + MAX_IO + MAX_CONTROL_JSON) throw protocolError(at + 28, `CONTROL payload of ${payloadLength} bytes does not fit its ${length} JSON bytes and at most ${MAX_IO} bytes of data`);
      break;
    case Op.PING:
    case Op.INFO:
    case Op.FLUSH:
    case Op.SET_REVISION:
      if (op !== Op.SET_REVISION && offset !== 0) throw protocolError(at + 16, `${name} must have offset 0`);
      if (length !== 0) throw protocolError(at + 24, `${name} must have length 0`);
      break;
  }
  if (op !== Op.WRITE && op !== Op.OPEN && op !== Op.CONTROL && payloadLength !== 0) throw protocolError(at + 28, `${name} carries no payload, got ${payloadLength} bytes`);
  return { op: op as Op, flags, id, offset, length, payloadLength };
}

// ---------------------------------------------------------------------------------------------------------------
// Response: header, then `payloadLength` bytes (READ data, a structured payload, or an error message).
//
//  0        4        6        8                16       20       24
//  +--------+--------+--------+----------------+--------+--------+
//  | magic  | op     | status | id             | paylen | zero   |
//  | "SRS1" | u16    | u16    | u64            | u32    | u32    |
//  +--------+--------+--------+----------------+--------+--------+
//  op echoes the request's op; status is a WireStatus (non-zero: the payload is a UTF-8 message of ≤ 4 KiB).

export interface ResponseHeader {
  op: Op;
  status: WireStatus;
  id: number;
  payloadLength: number;
}

export interface ReplicaResponse extends ResponseHeader {
  streamOffset: number;
  payload: Uint8Array;
}

export const MAX_ERROR_MESSAGE = 4096;

export function encodeResponseHeader(h: ResponseHeader): Uint8Array {
  const out = new Uint8Array(RESPONSE_HEADER_SIZE);
  const v = view(out);
  v.setUint32(0, RESPONSE_MAGIC, true);
  v.setUint16(4, h.op, true);
  v.setUint16(6, h.status, true);
  setU64(v, 8, h.id);
  v.setUint32(16, h.payloadLength, true);
  return out;
}

export function decodeResponseHeader(bytes: Uint8Array, at = 0): ResponseHeader {
  const v = view(bytes);
  const magic = v.getUint32(0, true);
  if (magic !== RESPONSE_MAGIC) throw protocolError(at, `response magic is 0x${magic.toString(16).padStart(8, '0')}, expected 0x${RESPONSE_MAGIC.toString(16)}`);
  const op = v.getUint16(4, true);
  if (OP_NAMES[op] === undefined) throw protocolError(at + 4, `unknown op ${op}`);
  const status = v.getUint16(6, true);
  if (status > WireStatus.EBADIMAGE) throw protocolError(at + 6, `unknown status ${status}`);
  const id = getU64(v, 8, at, 'request id');
  const payloadLength = v.getUint32(16, true);
  const limit = status === WireStatus.OK ? MAX_RESPONSE_PAYLOAD : MAX_ERROR_MESSAGE;
  if (payloadLength > limit) throw protocolError(at + 16, `payload of ${payloadLength} bytes exceeds the ${limit}-byte limit`);
  const reserved = v.getUint32(20, true);
  if (reserved !== 0) throw protocolError(at + 20, `reserved field is ${reserved}, must be 0`);
  return { op: op as Op, status: status as WireStatus, id, payloadLength };
}

export function encodeErrorMessage(message: string): Uint8Array {
  const bytes = Buffer.from(message, 'utf8');
  return bytes.byteLength <= MAX_ERROR_MESSAGE ? bytes : bytes.subarray(0, MAX_ERROR_MESSAGE);
}

// ---------------------------------------------------------------------------------------------------------------
// Incremental parsers. Once one throws, the stream cannot be resynchronised: the connection must be dropped.

/** Server side: bytes in, requests out. */
export class RequestParser {
  readonly #queue = new ByteQueue();
  #header: RequestHeader | undefined;
  #headerAt = 0;

  /** Total bytes buffered and not yet parsed (for backpressure accounting). */
  get buffered(): number {
    return this.#queue.length;
  }

  /** Where the socket may read the rest of a large payload directly (ByteQueue.fillSpace), or undefined. */
  readTarget(): Uint8Array | undefined {
    return this.#queue.fillSpace();
  }

  /** `transient`: the chunk is a socket's reusable read buffer, overwritten after this call (byte-queue.ts). */
  push(chunk: Uint8Array, transient = false): ReplicaRequest[] {
    this.#queue.push(chunk, transient);
    const out: ReplicaRequest[] = [];
    this.#parse(out);
    // Nothing may point into a transient chunk after this call; a payload still arriving is gathered in one buffer.
    this.#queue.settle(this.#header?.payloadLength ?? 0);
    return out;
  }

  #parse(out: ReplicaRequest[]): void {
    for (;;) {
      if (!this.#header) {
        if (this.#queue.length < REQUEST_HEADER_SIZE) return;
        this.#headerAt = this.#queue.offset;
        this.#header = decodeRequestHeader(this.#queue.take(REQUEST_HEADER_SIZE), this.#headerAt);
      }
      const h = this.#header;
      if (this.#queue.length < h.payloadLength) return;
      // Spelled out rather than spread: this runs once per request and object spread is the slow path.
      out.push({ op: h.op, flags: h.flags, id: h.id, offset: h.offset, length: h.length, payloadLength: h.payloadLength, streamOffset: this.#headerAt, payload: this.#queue.take(h.payloadLength) });
      this.#header = undefined;
    }
  }
}

/** Client side: bytes in, responses out. */
export class ResponseParser {
  readonly #queue = new ByteQueue();
  #header: ResponseHeader | undefined;
  #headerAt = 0;

  /** As RequestParser#readTarget. */
  readTarget(): Uint8Array | undefined {
    return this.#queue.fillSpace();
  }

  /** `transient`: as for RequestParser#push. */
  push(chunk: Uint8Array, transient = false): ReplicaResponse[] {
    this.#queue.push(chunk, transient);
    const out: ReplicaResponse[] = [];
    this.#parse(out);
    this.#queue.settle(this.#header?.payloadLength ?? 0);
    return out;
  }

  #parse(out: ReplicaResponse[]): void {
    for (;;) {
      if (!this.#header) {
        if (this.#queue.length < RESPONSE_HEADER_SIZE) return;
        this.#headerAt = this.#queue.offset;
        this.#header = decodeResponseHeader(this.#queue.take(RESPONSE_HEADER_SIZE), this.#headerAt);
      }
      const h = this.#header;
      if (this.#queue.length < h.payloadLength) return;
      out.push({ op: h.op, status: h.status, id: h.id, payloadLength: h.payloadLength, streamOffset: this.#headerAt, payload: this.#queue.take(h.payloadLength) });
      this.#header = undefined;
    }
  }
}
