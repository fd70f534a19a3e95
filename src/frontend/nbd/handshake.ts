// Pure encoders and decoders for the NBD fixed-newstyle handshake: the server greeting, client flags, option
// haggling (options, option replies, NBD_REP_INFO payloads, NBD_REP_SERVER entries) and the old-style
// NBD_OPT_EXPORT_NAME answer. `NbdHandshakeParser` splits the client's side of the handshake into messages from a
// byte stream cut at arbitrary points. No sockets here; the server and the client drive these.

import { ByteQueue } from '../../util/byte-queue.js';
import {
  NBD_EXPORT_NAME_ZEROES,
  NBD_GREETING_SIZE,
  NBD_IHAVEOPT,
  NBD_MAGIC,
  NBD_OPTION_HEADER_SIZE,
  NBD_OPTION_REPLY_HEADER_SIZE,
  NBD_REP_MAGIC,
  NbdHandshakeFlag,
  NbdInfo,
} from './constants.js';
import { protocolError } from './errors.js';
import { concatBytes, dataView, decodeNbdString, encodeUtf8, getU64, setU64 } from './wire.js';

// ---------------------------------------------------------------------------------------------------------------
// Server greeting
//
//  0                               8                               16      18
//  +-------------------------------+-------------------------------+-------+
//  | NBDMAGIC 0x4e42444d41474943   | IHAVEOPT 0x49484156454f5054   | hflags|
//  +-------------------------------+-------------------------------+-------+
//  hflags: u16, FIXED_NEWSTYLE | NO_ZEROES

export function encodeGreeting(
  handshakeFlags: number = NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES,
): Uint8Array {
  const out = new Uint8Array(NBD_GREETING_SIZE);
  const v = dataView(out);
  v.setBigUint64(0, NBD_MAGIC);
  v.setBigUint64(8, NBD_IHAVEOPT);
  v.setUint16(16, handshakeFlags);
  return out;
}

export function decodeGreeting(bytes: Uint8Array, offset = 0): { handshakeFlags: number } {
  const v = dataView(bytes);
  if (v.getBigUint64(0) !== NBD_MAGIC) throw protocolError(offset, 'greeting does not start with NBDMAGIC');
  if (v.getBigUint64(8) !== NBD_IHAVEOPT) {
    throw protocolError(offset + 8, 'greeting is not newstyle (no IHAVEOPT after NBDMAGIC)');
  }
  return { handshakeFlags: v.getUint16(16) };
}

// ---------------------------------------------------------------------------------------------------------------
// Client flags and options (client -> server)
//
//  client flags, once, right after the greeting:
//  0       4
//  +-------+
//  | cflags|  u32: FIXED_NEWSTYLE | NO_ZEROES; any other bit is a protocol error
//  +-------+
//
//  each option:
//  0                               8       12      16
//  +-------------------------------+-------+-------+---------------------------+
//  | IHAVEOPT 0x49484156454f5054   | option| length| data (length bytes)       |
//  +-------------------------------+-------+-------+---------------------------+

export function encodeClientFlags(flags: number): Uint8Array {
  const out = new Uint8Array(4);
  dataView(out).setUint32(0, flags);
  return out;
}

export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(NBD_OPTION_HEADER_SIZE + data.byteLength);
  const v = dataView(out);
  v.setBigUint64(0, NBD_IHAVEOPT);
  v.setUint32(8, option);
  v.setUint32(12, data.byteLength);
  out.set(data, NBD_OPTION_HEADER_SIZE);
  return out;
}

export type NbdClientMessage =
  | { readonly kind: 'clientFlags'; readonly flags: number; readonly offset: number }
  /** `offset` is where the option header starts; `data` starts at `offset + 16`. */
  | { readonly kind: 'option'; readonly option: number; readonly data: Uint8Array; readonly offset: number }
  /** An option whose data exceeded the parser's limit; its data was skipped without being buffered. */
  | { readonly kind: 'oversizedOption'; readonly option: number; readonly length: number; readonly offset: number };

export interface NbdHandshakeParserOptions {
  /** Largest option data kept in memory; longer data is discarded and reported as `oversizedOption`. */
  maxOptionLength?: number;
}

/** Longest legitimate option: NBD_OPT_GO with a 4096-byte name and a generous list of info requests. */
export const DEFAULT_MAX_OPTION_LENGTH = 64 * 1024;

/**
 * Incremental parser for the client's handshake stream. `push` appends bytes; `next` returns one complete message
 * or undefined. One at a time on purpose: after a successful NBD_OPT_GO the rest of the stream belongs to the
 * transmission phase, and `takeRemaining` hands it over unparsed.
 */
export class NbdHandshakeParser {
  readonly #queue = new ByteQueue();
  readonly #maxOptionLength: number;
  #gotFlags = false;
  #discarding: { option: number; length: number; offset: number; left: number } | undefined;

  constructor(options: NbdHandshakeParserOptions = {}) {
    this.#maxOptionLength = options.maxOptionLength ?? DEFAULT_MAX_OPTION_LENGTH;
  }

  push(chunk: Uint8Array): void {
    this.#queue.push(chunk);
  }

  next(): NbdClientMessage | undefined {
    const q = this.#queue;
    if (!this.#gotFlags) {
      if (q.length < 4) return undefined;
      const offset = q.offset;
      const flags = dataView(q.take(4)).getUint32(0);
      this.#gotFlags = true;
      return { kind: 'clientFlags', flags, offset };
    }
    if (this.#discarding) {
      const d = this.#discarding;
      d.left -= q.skip(d.left);
      if (d.left > 0) return undefined;
      this.#discarding = undefined;
      return { kind: 'oversizedOption', option: d.option, length: d.length, offset: d.offset };
    }
    if (q.length < NBD_OPTION_HEADER_SIZE) return undefined;
    const offset = q.offset;
    const v = dataView(q.peek(NBD_OPTION_HEADER_SIZE));
    if (v.getBigUint64(0) !== NBD_IHAVEOPT) throw protocolError(offset, 'option does not start with IHAVEOPT');
    const option = v.getUint32(8);
    const length = v.getUint32(12);
    if (length > this.#maxOptionLength) {
      q.skip(NBD_OPTION_HEADER_SIZE);
      this.#discarding = { option, length, offset, left: length };
      return this.next();
    }
    if (q.length < NBD_OPTION_HEADER_SIZE + length) return undefined;
    q.skip(NBD_OPTION_HEADER_SIZE);
    return { kind: 'option', option, data: q.take(length), offset };
  }

  /** Everything after the last message returned, and the stream offset where it starts. */
  takeRemaining(): { chunks: Uint8Array[]; offset: number } {
    const offset = this.#queue.offset;
    return { chunks: this.#queue.takeAll(), offset };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Option data
//
//  NBD_OPT_EXPORT_NAME: the whole data is the export name (UTF-8, may be empty = default export).
//
//  NBD_OPT_INFO / NBD_OPT_GO:
//  0       4                   4+n     6+n                         6+n+2k
//  +-------+-------------------+-------+---------------------------+
//  | n u32 | name (n bytes)    | k u16 | k info types (u16 each)   |
//  +-------+-------------------+-------+---------------------------+

export function decodeExportName(data: Uint8Array, dataOffset: number): string {
  return decodeNbdString(data, dataOffset, 'export name');
}

export interface NbdInfoRequest {
  readonly name: string;
  readonly infos: readonly number[];
}

export function decodeInfoRequest(data: Uint8Array, dataOffset: number): NbdInfoRequest {
  if (data.byteLength < 6) throw protocolError(dataOffset, `INFO/GO data is ${data.byteLength} bytes, less than 6`);
  const v = dataView(data);
  const nameLength = v.getUint32(0);
  if (nameLength > data.byteLength - 6) {
    throw protocolError(dataOffset, `name length ${nameLength} does not fit in ${data.byteLength} bytes of data`);
  }
  const name = decodeNbdString(data.subarray(4, 4 + nameLength), dataOffset + 4, 'export name');
  const countAt = 4 + nameLength;
  const count = v.getUint16(countAt);
  if (data.byteLength !== countAt + 2 + 2 * count) {
    throw protocolError(
      dataOffset + countAt,
      `${count} info requests need ${countAt + 2 + 2 * count} bytes of data, got ${data.byteLength}`,
    );
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(v.getUint16(countAt + 2 + 2 * i));
  return { name, infos };
}

export function encodeInfoRequest(name: string, infos: readonly number[]): Uint8Array {
  const nameBytes = encodeUtf8(name);
  const out = new Uint8Array(4 + nameBytes.byteLength + 2 + 2 * infos.length);
  const v = dataView(out);
  v.setUint32(0, nameBytes.byteLength);
  out.set(nameBytes, 4);
  v.setUint16(4 + nameBytes.byteLength, infos.length);
  infos.forEach((info, i) => v.setUint16(4 + nameBytes.byteLength + 2 + 2 * i, info));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Option replies (server -> client)
//
//  0                               8       12      16      20
//  +-------------------------------+-------+-------+-------+---------------------------+
//  | REP magic 0x0003e889045565a9  | option| type  | length| data (length bytes)       |
//  +-------------------------------+-------+-------+-------+---------------------------+
//  type: NbdRep.*; error types have bit 31 set and may carry a human-readable message as data

export function encodeOptionReply(option: number, replyType: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(NBD_OPTION_REPLY_HEADER_SIZE + data.byteLength);
  const v = dataView(out);
  v.setBigUint64(0, NBD_REP_MAGIC);
  v.setUint32(8, option);
  v.setUint32(12, replyType);
  v.setUint32(16, data.byteLength);
  out.set(data, NBD_OPTION_REPLY_HEADER_SIZE);
  return out;
}

export interface NbdOptionReplyHeader {
  readonly option: number;
  readonly replyType: number;
  readonly length: number;
}

export function decodeOptionReplyHeader(bytes: Uint8Array, offset = 0): NbdOptionReplyHeader {
  const v = dataView(bytes);
  if (v.getBigUint64(0) !== NBD_REP_MAGIC) throw protocolError(offset, 'option reply does not start with REP magic');
  return { option: v.getUint32(8), replyType: v.getUint32(12), length: v.getUint32(16) };
}

//  NBD_REP_SERVER data (one per export in answer to NBD_OPT_LIST):
//  0       4                   4+n
//  +-------+-------------------+---------------------------+
//  | n u32 | name (n bytes)    | description (rest)        |
//  +-------+-------------------+---------------------------+

export function encodeServerEntry(name: string, description = ''): Uint8Array {
  const nameBytes = encodeUtf8(name);
  const head = new Uint8Array(4);
  dataView(head).setUint32(0, nameBytes.byteLength);
  return concatBytes([head, nameBytes, encodeUtf8(description)]);
}

export function decodeServerEntry(data: Uint8Array, dataOffset = 0): { name: string; description: string } {
  if (data.byteLength < 4) throw protocolError(dataOffset, 'NBD_REP_SERVER data shorter than 4 bytes');
  const n = dataView(data).getUint32(0);
  if (n > data.byteLength - 4) throw protocolError(dataOffset, `NBD_REP_SERVER name length ${n} exceeds the data`);
  return {
    name: decodeNbdString(data.subarray(4, 4 + n), dataOffset + 4, 'export name'),
    description: decodeNbdString(data.subarray(4 + n), dataOffset + 4 + n, 'export description'),
  };
}

//  NBD_REP_INFO data:
//  0       2
//  +-------+-----------------------------------------------------------+
//  | type  | payload                                                   |
//  +-------+-----------------------------------------------------------+
//  EXPORT (0):      u64 size, u16 transmission flags          (12 bytes in all)
//  NAME (1):        name (rest)
//  DESCRIPTION (2): description (rest)
//  BLOCK_SIZE (3):  u32 minimum, u32 preferred, u32 maximum   (14 bytes in all)

export interface NbdBlockSize {
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
}

export type NbdInfoReply =
  | { readonly type: typeof NbdInfo.EXPORT; readonly size: number; readonly flags: number }
  | { readonly type: typeof NbdInfo.NAME; readonly name: string }
  | { readonly type: typeof NbdInfo.DESCRIPTION; readonly description: string }
  | ({ readonly type: typeof NbdInfo.BLOCK_SIZE } & NbdBlockSize)
  | { readonly type: number; readonly unknown: Uint8Array };

export function encodeInfoExport(size: number, flags: number): Uint8Array {
  const out = new Uint8Array(12);
  const v = dataView(out);
  v.setUint16(0, NbdInfo.EXPORT);
  setU64(v, 2, size);
  v.setUint16(10, flags);
  return out;
}

export function encodeInfoText(type: typeof NbdInfo.NAME | typeof NbdInfo.DESCRIPTION, text: string): Uint8Array {
  const head = new Uint8Array(2);
  dataView(head).setUint16(0, type);
  return concatBytes([head, encodeUtf8(text)]);
}

export function encodeInfoBlockSize(sizes: NbdBlockSize): Uint8Array {
  const out = new Uint8Array(14);
  const v = dataView(out);
  v.setUint16(0, NbdInfo.BLOCK_SIZE);
  v.setUint32(2, sizes.minimum);
  v.setUint32(6, sizes.preferred);
  v.setUint32(10, sizes.maximum);
  return out;
}

export function decodeInfoReply(data: Uint8Array, dataOffset = 0): NbdInfoReply {
  if (data.byteLength < 2) throw protocolError(dataOffset, 'NBD_REP_INFO data shorter than 2 bytes');
  const v = dataView(data);
  const type = v.getUint16(0);
  const expect = (n: number): void => {
    if (data.byteLength !== n) {
      throw protocolError(dataOffset, `NBD_REP_INFO type ${type} must be ${n} bytes, got ${data.byteLength}`);
    }
  };
  switch (type) {
    case NbdInfo.EXPORT:
      expect(12);
      return { type, size: getU64(v, 2), flags: v.getUint16(10) };
    case NbdInfo.NAME:
      return { type, name: decodeNbdString(data.subarray(2), dataOffset + 2, 'export name') };
    case NbdInfo.DESCRIPTION:
      return { type, description: decodeNbdString(data.subarray(2), dataOffset + 2, 'export description') };
    case NbdInfo.BLOCK_SIZE:
      expect(14);
      return { type, minimum: v.getUint32(2), preferred: v.getUint32(6), maximum: v.getUint32(10) };
    default:
      return { type, unknown: data.subarray(2) };
  }
}

//  Answer to NBD_OPT_EXPORT_NAME (no reply header: this option cannot fail, only disconnect):
//  0                               8       10                      134
//  +-------------------------------+-------+-----------------------+
//  | size u64                      | tflags| 124 zero bytes        |  zeroes omitted when NO_ZEROES was agreed
//  +-------------------------------+-------+-----------------------+

export function encodeExportNameReply(size: number, flags: number, zeroes: boolean): Uint8Array {
  const out = new Uint8Array(10 + (zeroes ? NBD_EXPORT_NAME_ZEROES : 0));
  const v = dataView(out);
  setU64(v, 0, size);
  v.setUint16(8, flags);
  return out;
}

export function decodeExportNameReply(bytes: Uint8Array): { size: number; flags: number } {
  const v = dataView(bytes);
  return { size: getU64(v, 0), flags: v.getUint16(8) };
}
