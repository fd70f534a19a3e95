// On-disk format of the pending map log (`pending.0` / `pending.1`, see pending-log.ts for why it exists and why
// it is safe), as pure encode/decode functions. Little-endian; header and every record carry a CRC-32C; decode
// errors name the file and byte offset.

import { isBlockState, type StateRun } from './block-map.js';
import { corrupt } from './errors.js';
import { crc32c, type MapGeometry } from './map-format.js';
import { setU64, view } from './wire.js';

/** The two pending files; each epoch is written to the one not holding the newest epoch. */
export const PENDING_FILES = ['pending.0', 'pending.1'] as const;
export type PendingSlot = 0 | 1;

const MAGIC = 'STRMPEND';
const RECORD_MAGIC = 0x3152_5053; // "SPR1"
const VERSION = 1;
const BOOT_ID_MAX = 64;
export const PENDING_HEADER = 128;
const RECORD_HEADER = 40;
const ENTRY = 16;

// Header (128 bytes), written together with the epoch's first record in one write:
//
//  0          8        12          16              24              32          36                  100    124   128
//  +----------+--------+-----------+---------------+---------------+-----------+-------------------+------+-----+
//  | STRMPEND |version |blockSize  | blockCount    | epoch         | bootIdLen | bootId (ASCII,    | zero | crc |
//  |          | u32    | u32       | u64           | u64           | u32       | zero-padded, 64)  |      |     |
//  +----------+--------+-----------+---------------+---------------+-----------+-------------------+------+-----+
//  crc = CRC-32C of bytes 0..124.
//
// Record (40 bytes + 16 per entry), appended without padding or sync:
//
//  0        4        8                16               24               32       36       40
//  +--------+--------+----------------+----------------+----------------+--------+--------+-------------------+
//  | "SPR1" | count  | epoch          | seq            | revision       | crc    | zero   | count × entry     |
//  | u32    | u32    | u64            | u64            | u64            | u32    | u32    |                   |
//  +--------+--------+----------------+----------------+----------------+--------+--------+-------------------+
//  entry: start block u64 | block count u32 | state u8 | 3 zero bytes (the journal's entry layout)
//  crc = CRC-32C of bytes 0..32 then of the entries. `seq` counts from 1 within the epoch; `epoch` repeats the
//  header's so that bytes left over from an earlier epoch in the same file can never pass as a record.

export interface PendingHeader extends MapGeometry {
  epoch: number;
  bootId: string;
}

export interface PendingRecord {
  seq: number;
  revision: number;
  runs: StateRun[];
}

function getU64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
}

export function encodePendingHeader(h: PendingHeader): Uint8Array {
  const id = Buffer.from(h.bootId, 'ascii');
  if (id.length > BOOT_ID_MAX) throw new RangeError(`boot id of ${id.length} bytes is longer than ${BOOT_ID_MAX}`);
  const out = new Uint8Array(PENDING_HEADER);
  const v = view(out);
  out.set(Buffer.from(MAGIC, 'ascii'), 0);
  v.setUint32(8, VERSION, true);
  v.setUint32(12, h.blockSize, true);
  setU64(v, 16, h.blockCount);
  setU64(v, 24, h.epoch);
  v.setUint32(32, id.length, true);
  out.set(id, 36);
  v.setUint32(124, crc32c(out.subarray(0, 124)), true);
  return out;
}

/** The header, or why the file holds none (an empty, torn or foreign file is not an error: it is skipped). */
export function decodePendingHeader(bytes: Uint8Array, expect: MapGeometry): PendingHeader | { invalid: string } {
  if (bytes.length < PENDING_HEADER) return { invalid: `file is ${bytes.length} bytes, shorter than its header` };
  if (Buffer.from(bytes.subarray(0, 8)).toString('ascii') !== MAGIC) return { invalid: 'magic is not STRMPEND' };
  const v = view(bytes);
  if (v.getUint32(124, true) !== crc32c(bytes.subarray(0, 124))) return { invalid: 'header checksum mismatch' };
  if (v.getUint32(8, true) !== VERSION) return { invalid: `version ${v.getUint32(8, true)} is not supported` };
  const blockSize = v.getUint32(12, true);
  const blockCount = getU64(v, 16);
  if (blockSize !== expect.blockSize || blockCount > expect.blockCount) {
    return { invalid: `geometry ${blockCount} × ${blockSize} B does not match the replica's ${expect.blockCount} × ${expect.blockSize} B` };
  }
  const idLen = Math.min(v.getUint32(32, true), BOOT_ID_MAX);
  const bootId = Buffer.from(bytes.subarray(36, 36 + idLen)).toString('ascii');
  return { blockSize, blockCount, epoch: getU64(v, 24), bootId };
}

export function encodePendingRecord(epoch: number, r: PendingRecord): Uint8Array {
  const out = new Uint8Array(RECORD_HEADER + r.runs.length * ENTRY);
  const v = view(out);
  v.setUint32(0, RECORD_MAGIC, true);
  v.setUint32(4, r.runs.length, true);
  setU64(v, 8, epoch);
  setU64(v, 16, r.seq);
  setU64(v, 24, r.revision);
  for (let i = 0; i < r.runs.length; i++) {
    const run = r.runs[i]!;
    const at = RECORD_HEADER + i * ENTRY;
    setU64(v, at, run.start);
    v.setUint32(at + 8, run.count, true);
    out[at + 12] = run.state;
  }
  v.setUint32(32, crc32c(out.subarray(RECORD_HEADER), crc32c(out.subarray(0, 32))), true);
  return out;
}

export interface DecodedPending {
  header: PendingHeader;
  /** Whole, valid records in order (seq 1, 2, …); replay stopped at the first that was not. */
  records: PendingRecord[];
  /** Bytes after the last valid record: a torn append, an append a crash cut, or an earlier epoch's leftovers. */
  tornBytes: number;
}

/**
 * Decode a pending file: the header, then records of the header's epoch with consecutive sequence numbers from 1,
 * up to the first one that is cut short, fails its checksum, or belongs to another epoch. Returns the reason
 * instead when the header is not valid. A record whose checksum matches but whose entries are impossible was
 * written damaged (or by a bug), never torn: that is `Corrupt`.
 */
export function decodePending(bytes: Uint8Array, expect: MapGeometry, file: string): DecodedPending | { invalid: string } {
  const header = decodePendingHeader(bytes, expect);
  if ('invalid' in header) return header;
  const records: PendingRecord[] = [];
  const v = view(bytes);
  let at = PENDING_HEADER;
  for (let seq = 1; ; seq++) {
    if (bytes.length - at < RECORD_HEADER) break;
    if (v.getUint32(at, true) !== RECORD_MAGIC) break;
    const count = v.getUint32(at + 4, true);
    const end = at + RECORD_HEADER + count * ENTRY;
    if (end > bytes.length) break;
    if (getU64(v, at + 8) !== header.epoch || getU64(v, at + 16) !== seq) break;
    const entries = bytes.subarray(at + RECORD_HEADER, end);
    if (v.getUint32(at + 32, true) !== crc32c(entries, crc32c(bytes.subarray(at, at + 32)))) break;
    const runs: StateRun[] = [];
    for (let i = 0; i < count; i++) {
      const e = at + RECORD_HEADER + i * ENTRY;
      const start = getU64(v, e);
      const n = v.getUint32(e + 8, true);
      const state = bytes[e + 12]!;
      if (!isBlockState(state)) throw corrupt(file, e + 12, `entry ${i} has the undefined state ${state}`);
      if (n === 0 || start + n > expect.blockCount) throw corrupt(file, e, `entry ${i} covers blocks ${start}+${n}, past the ${expect.blockCount} blocks of the volume`);
      runs.push({ start, count: n, state });
    }
    records.push({ seq, revision: getU64(v, at + 24), runs });
    at = end;
  }
  return { header, records, tornBytes: bytes.length - at };
}
