// Structured replies (NBD_OPT_STRUCTURED_REPLY), for READ only: the reply is a series of chunks, and runs of zeros
// go as OFFSET_HOLE chunks that carry no bytes. A volume over a sparse backing image is mostly zeros where nothing
// was written: a client that negotiated structured replies (libnbd, so nbdcopy, nbdfuse and fio; qemu) receives
// their length, not their bytes, and neither side copies them. Other commands keep simple replies, which the
// protocol allows once structured replies are negotiated; NBD_FLAG_SEND_DF is not offered, so no client asks for an
// unfragmented read.
//
//  chunk header (20 bytes): magic u32 = 0x668e33ef | flags u16 (bit 0: DONE, the reply's last chunk) | type u16 |
//                           handle u64 | length u32 of the payload that follows
//  OFFSET_DATA (1): offset u64, then the bytes      OFFSET_HOLE (2): offset u64, size u32
//  ERROR (2^15 + 1): error u32, message length u16, message      NONE (0): nothing (a reply with no content)

import { dataView, setU64 } from './wire.js';

export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const NBD_CHUNK_HEADER_SIZE = 20;
export const NBD_REPLY_FLAG_DONE = 1;

export const NbdReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  ERROR: (1 << 15) + 1,
} as const;

/** Zero runs shorter than this are sent as data: a chunk header costs 32 bytes, and finding them costs a scan. */
export const HOLE_GRAIN = 4096;
const ZEROS = Buffer.alloc(HOLE_GRAIN);

function chunk(flags: number, type: number, handle: bigint, length: number, extra: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(NBD_CHUNK_HEADER_SIZE + extra);
  const view = dataView(bytes);
  view.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC);
  view.setUint16(4, flags);
  view.setUint16(6, type);
  view.setBigUint64(8, handle);
  view.setUint32(16, length);
  return { bytes, view };
}

/** The one chunk of a failed READ. */
export function encodeErrorChunk(handle: bigint, errno: number, message = ''): Uint8Array {
  const text = Buffer.from(message.slice(0, 4096), 'utf8');
  const { bytes, view } = chunk(NBD_REPLY_FLAG_DONE, NbdReplyType.ERROR, handle, 6 + text.byteLength, 6 + text.byteLength);
  view.setUint32(20, errno);
  view.setUint16(24, text.byteLength);
  bytes.set(text, 26);
  return bytes;
}

/** Runs of `data` that are all zeros (at least HOLE_GRAIN long, on HOLE_GRAIN steps from its start), else data. */
export function zeroRuns(data: Uint8Array): { zero: boolean; start: number; end: number }[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const runs: { zero: boolean; start: number; end: number }[] = [];
  for (let at = 0; at < buf.length; at += HOLE_GRAIN) {
    const end = Math.min(at + HOLE_GRAIN, buf.length);
    const zero = end - at === HOLE_GRAIN && buf.compare(ZEROS, 0, HOLE_GRAIN, at, end) === 0;
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.end = end;
    else runs.push({ zero, start: at, end });
  }
  return runs;
}

/**
 * The byte strings of a successful READ's reply, in order: a chunk header (with the offset, and the hole's size)
 * per run, each data run followed by its bytes as a view of `data` (not copied). The last chunk carries DONE.
 */
export function encodeReadChunks(handle: bigint, offset: number, data: Uint8Array): Uint8Array[] {
  if (data.byteLength === 0) return [chunk(NBD_REPLY_FLAG_DONE, NbdReplyType.NONE, handle, 0, 0).bytes];
  const runs = zeroRuns(data);
  const out: Uint8Array[] = [];
  runs.forEach((r, i) => {
    const flags = i === runs.length - 1 ? NBD_REPLY_FLAG_DONE : 0;
    const n = r.end - r.start;
    if (r.zero) {
      const { bytes, view } = chunk(flags, NbdReplyType.OFFSET_HOLE, handle, 12, 12);
      setU64(view, 20, offset + r.start);
      view.setUint32(28, n);
      out.push(bytes);
    } else {
      const { bytes, view } = chunk(flags, NbdReplyType.OFFSET_DATA, handle, 8 + n, 8);
      setU64(view, 20, offset + r.start);
      out.push(bytes, data.subarray(r.start, r.end));
    }
  });
  return out;
}
