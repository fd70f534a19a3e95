// On-disk formats of the written-block map, as pure encode/decode functions: the checkpoint (`map.ckpt`, a packed
// 2-bit state per block, replaced atomically) and the journal (`map.journal`, a header sector and then append-only
// batches, one per flush). map-journal.ts does the file work and explains why this is crash-consistent. All
// integers are little-endian; every structure carries a CRC-32C, and decode errors name the file and byte offset.
// A checkpoint or journal may cover fewer blocks than the replica has: it was written before the volume grew
// (store.ts, `grow`), and the blocks past its end are UNWRITTEN. One covering more blocks is corrupt.

import { isBlockState, type StateRun } from './block-map.js';
import { corrupt } from './errors.js';

export const CHECKPOINT_FILE = 'map.ckpt';
export const JOURNAL_FILE = 'map.journal';
export const SECTOR = 512;

const CKPT_MAGIC = 'STRMCKPT';
const JOURNAL_MAGIC = 'STRMJRNL';
const BATCH_MAGIC = 0x3142_4a53; // "SJB1"
const FORMAT_VERSION = 1;
const BATCH_HEADER = 32;
const ENTRY = 16;

// ---------------------------------------------------------------------------------------------------------------
// CRC-32C (Castagnoli), table-driven: Node 20 has no built-in CRC-32C and nothing here is hot enough to need more.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f6_3b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(n / 2 ** 32), true);
}

function getU64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
}

function ascii(b: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...b.subarray(at, at + n));
}

export interface MapGeometry {
  blockSize: number;
  blockCount: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint: the whole map at one point, written to a temp file and renamed over map.ckpt.
//
//  0          8        12          16              24              32              40              48
//  +----------+--------+-----------+---------------+---------------+---------------+---------------+
//  | magic    |version |blockSize  | blockCount    | generation    | nextSeq       | revision      |
//  | STRMCKPT | u32    | u32       | u64           | u64           | u64           | u64           |
//  +----------+--------+-----------+---------------+---------------+---------------+---------------+
//  48          52          56          60          64
//  | bitmapLen | reserved=0| headerCrc | bitmapCrc | bitmap: 2 bits per block, block i in byte i>>2 at bit 2*(i&3)
//  | u32       | u32       | u32       | u32       | (0 unwritten, 1 data, 2 zero)
//
// headerCrc covers bytes 0..56, bitmapCrc the bitmap. `generation` pairs it with its journal; `nextSeq` and
// `revision` continue the journal's batch numbering and the replica's revision counter.

export interface Checkpoint extends MapGeometry {
  generation: number;
  nextSeq: number;
  revision: number;
  states: Uint8Array;
}

const CKPT_HEADER = 64;

export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const bitmapLen = Math.ceil(c.blockCount / 4);
  const out = new Uint8Array(CKPT_HEADER + bitmapLen);
  const v = view(out);
  out.set(Buffer.from(CKPT_MAGIC, 'ascii'), 0);
  v.setUint32(8, FORMAT_VERSION, true);
  v.setUint32(12, c.blockSize, true);
  setU64(v, 16, c.blockCount);
  setU64(v, 24, c.generation);
  setU64(v, 32, c.nextSeq);
  setU64(v, 40, c.revision);
  v.setUint32(48, bitmapLen, true);
  const bitmap = out.subarray(CKPT_HEADER);
  for (let i = 0; i < c.blockCount; i++) {
    const s = c.states[i]!;
    if (s !== 0) bitmap[i >> 2]! |= s << ((i & 3) * 2);
  }
  v.setUint32(56, crc32c(out.subarray(0, 56)), true);
  v.setUint32(60, crc32c(bitmap), true);
  return out;
}

export function decodeCheckpoint(bytes: Uint8Array, expect: MapGeometry): Checkpoint {
  const file = CHECKPOINT_FILE;
  if (bytes.length < CKPT_HEADER) throw corrupt(file, bytes.length, `file ends at ${bytes.length} bytes, inside the ${CKPT_HEADER}-byte header`);
  if (ascii(bytes, 0, 8) !== CKPT_MAGIC) throw corrupt(file, 0, 'magic is not STRMCKPT');
  const v = view(bytes);
  if (v.getUint32(56, true) !== crc32c(bytes.subarray(0, 56))) throw corrupt(file, 56, 'header checksum mismatch');
  const version = v.getUint32(8, true);
  if (version !== FORMAT_VERSION) throw corrupt(file, 8, `version ${version} is not supported`);
  const blockSize = v.getUint32(12, true);
  const blockCount = getU64(v, 16);
  if (blockSize !== expect.blockSize) throw corrupt(file, 12, `block size ${blockSize}, the replica has ${expect.blockSize}`);
  if (blockCount > expect.blockCount) throw corrupt(file, 16, `block count ${blockCount}, the replica has ${expect.blockCount}`);
  const bitmapLen = v.getUint32(48, true);
  if (bitmapLen !== Math.ceil(blockCount / 4)) throw corrupt(file, 48, `bitmap length ${bitmapLen} does not fit ${blockCount} blocks`);
  if (bytes.length !== CKPT_HEADER + bitmapLen) throw corrupt(file, bytes.length, `file is ${bytes.length} bytes, expected ${CKPT_HEADER + bitmapLen}`);
  const bitmap = bytes.subarray(CKPT_HEADER);
  if (v.getUint32(60, true) !== crc32c(bitmap)) throw corrupt(file, 60, 'bitmap checksum mismatch');
  // A map written before the volume grew covers fewer blocks: the blocks past its end were never written (zeros).
  const states = new Uint8Array(expect.blockCount);
  for (let i = 0; i < blockCount; i++) {
    const s = (bitmap[i >> 2]! >> ((i & 3) * 2)) & 3;
    if (s === 3) throw corrupt(file, CKPT_HEADER + (i >> 2), `block ${i} has the undefined state 3`);
    states[i] = s;
  }
  return { blockSize, blockCount: expect.blockCount, generation: getU64(v, 24), nextSeq: getU64(v, 32), revision: getU64(v, 40), states };
}

// ---------------------------------------------------------------------------------------------------------------
// Journal header: one sector, written with the (empty) journal by atomic replacement.
//
//  0          8        12          16              24              32 ... 508   512
//  | STRMJRNL |version |blockSize  | blockCount    | generation    | zeros     | crc (of bytes 0..508) |

export interface JournalHeader extends MapGeometry {
  generation: number;
}

export function encodeJournalHeader(h: JournalHeader): Uint8Array {
  const out = new Uint8Array(SECTOR);
  const v = view(out);
  out.set(Buffer.from(JOURNAL_MAGIC, 'ascii'), 0);
  v.setUint32(8, FORMAT_VERSION, true);
  v.setUint32(12, h.blockSize, true);
  setU64(v, 16, h.blockCount);
  setU64(v, 24, h.generation);
  v.setUint32(508, crc32c(out.subarray(0, 508)), true);
  return out;
}

export function decodeJournalHeader(bytes: Uint8Array, expect: MapGeometry): JournalHeader {
  const file = JOURNAL_FILE;
  if (bytes.length < SECTOR) throw corrupt(file, bytes.length, `file ends at ${bytes.length} bytes, inside the header sector`);
  if (ascii(bytes, 0, 8) !== JOURNAL_MAGIC) throw corrupt(file, 0, 'magic is not STRMJRNL');
  const v = view(bytes);
  if (v.getUint32(508, true) !== crc32c(bytes.subarray(0, 508))) throw corrupt(file, 508, 'header checksum mismatch');
  const version = v.getUint32(8, true);
  if (version !== FORMAT_VERSION) throw corrupt(file, 8, `version ${version} is not supported`);
  const blockSize = v.getUint32(12, true);
  const blockCount = getU64(v, 16);
  if (blockSize !== expect.blockSize || blockCount > expect.blockCount) {
    throw corrupt(file, 12, `geometry ${blockCount} × ${blockSize} B does not match the replica's ${expect.blockCount} × ${expect.blockSize} B`);
  }
  return { blockSize, blockCount, generation: getU64(v, 24) };
}

// ---------------------------------------------------------------------------------------------------------------
// Journal batch: the map changes one flush made durable. Padded to a whole number of sectors so that a batch never
// shares a sector with the next one (a torn append cannot damage a committed batch).
//
//  0        4        8                16               24       28       32
//  +--------+--------+----------------+----------------+--------+--------+---------------------------+---------+
//  | magic  | count  | seq            | revision       | length | crc    | count × entry             | padding |
//  | "SJB1" | u32    | u64            | u64            | u32    | u32    |                           | zeros   |
//  +--------+--------+----------------+----------------+--------+--------+---------------------------+---------+
//  entry: start block u64 | block count u32 | state u8 | 3 zero bytes          (16 bytes)
//  length = whole batch in bytes (a multiple of 512); crc = CRC-32C of bytes 0..28 then of the entries.

export interface JournalBatch {
  seq: number;
  revision: number;
  runs: StateRun[];
}

export function encodeBatch(b: JournalBatch): Uint8Array {
  const length = Math.ceil((BATCH_HEADER + b.runs.length * ENTRY) / SECTOR) * SECTOR;
  const out = new Uint8Array(length);
  const v = view(out);
  v.setUint32(0, BATCH_MAGIC, true);
  v.setUint32(4, b.runs.length, true);
  setU64(v, 8, b.seq);
  setU64(v, 16, b.revision);
  v.setUint32(24, length, true);
  b.runs.forEach((r, i) => {
    const at = BATCH_HEADER + i * ENTRY;
    setU64(v, at, r.start);
    v.setUint32(at + 8, r.count, true);
    out[at + 12] = r.state;
  });
  const entries = out.subarray(BATCH_HEADER, BATCH_HEADER + b.runs.length * ENTRY);
  v.setUint32(28, crc32c(entries, crc32c(out.subarray(0, 28))), true);
  return out;
}

type BatchProbe = { ok: true; batch: JournalBatch; length: number } | { ok: false; reason: string; at: number };

/** Try to read a batch at `at`; structural failures are reported, not thrown (they may be a torn tail). */
function probeBatch(bytes: Uint8Array, at: number, geometry: MapGeometry): BatchProbe {
  if (bytes.length - at < BATCH_HEADER) return { ok: false, reason: 'batch header cut short', at };
  const v = view(bytes);
  if (v.getUint32(at, true) !== BATCH_MAGIC) return { ok: false, reason: 'batch magic is not SJB1', at };
  const count = v.getUint32(at + 4, true);
  const length = v.getUint32(at + 24, true);
  const need = Math.ceil((BATCH_HEADER + count * ENTRY) / SECTOR) * SECTOR;
  if (length !== need) return { ok: false, reason: `batch length ${length} does not fit ${count} entries`, at: at + 24 };
  if (bytes.length - at < length) return { ok: false, reason: 'batch cut short', at };
  const entries = bytes.subarray(at + BATCH_HEADER, at + BATCH_HEADER + count * ENTRY);
  if (v.getUint32(at + 28, true) !== crc32c(entries, crc32c(bytes.subarray(at, at + 28)))) {
    return { ok: false, reason: 'batch checksum mismatch', at: at + 28 };
  }
  const runs: StateRun[] = [];
  for (let i = 0; i < count; i++) {
    const e = at + BATCH_HEADER + i * ENTRY;
    const start = getU64(v, e);
    const n = v.getUint32(e + 8, true);
    const state = bytes[e + 12]!;
    // The checksum matched, so these are written-then-damaged bytes or a bug: never a torn tail. Say so loudly.
    if (!isBlockState(state)) throw corrupt(JOURNAL_FILE, e + 12, `entry ${i} has the undefined state ${state}`);
    if (n === 0 || start + n > geometry.blockCount) {
      throw corrupt(JOURNAL_FILE, e, `entry ${i} covers blocks ${start}+${n}, past the ${geometry.blockCount} blocks of the volume`);
    }
    runs.push({ start, count: n, state });
  }
  return { ok: true, batch: { seq: getU64(v, at + 8), revision: getU64(v, at + 16), runs }, length };
}

export interface DecodedJournal {
  header: JournalHeader;
  batches: JournalBatch[];
  /** Bytes of the file holding the header and the valid batches. */
  validLength: number;
  /** Bytes after the last valid batch (a torn append from a crash), dropped. */
  tornBytes: number;
}

/**
 * Decode a journal. Batches must carry consecutive sequence numbers from `nextSeq`. Replay stops at the first batch
 * that is not whole and valid: that is a torn append and is dropped. Only the last append can be torn (appends are
 * serialised and each is fsynced before the next), so a valid batch with a later sequence number beyond the bad
 * spot proves damage in the middle of the journal, which is refused rather than silently losing committed batches.
 */
export function decodeJournal(bytes: Uint8Array, expect: MapGeometry & { nextSeq: number }): DecodedJournal {
  const header = decodeJournalHeader(bytes, expect);
  const batches: JournalBatch[] = [];
  let at = SECTOR;
  let seq = expect.nextSeq;
  for (;;) {
    if (at >= bytes.length) return { header, batches, validLength: at, tornBytes: 0 };
    const probe = probeBatch(bytes, at, expect);
    if (probe.ok && probe.batch.seq === seq) {
      batches.push(probe.batch);
      at += probe.length;
      seq++;
      continue;
    }
    const reason = probe.ok ? `batch sequence ${probe.batch.seq}, expected ${seq}` : probe.reason;
    const where = probe.ok ? at + 8 : probe.at;
    for (let q = at + SECTOR; q + BATCH_HEADER <= bytes.length; q += SECTOR) {
      let later: BatchProbe;
      try {
        later = probeBatch(bytes, q, expect);
      } catch {
        continue;
      }
      if (later.ok && later.batch.seq > seq) {
        throw corrupt(JOURNAL_FILE, where, `${reason}, but batch ${later.batch.seq} follows at byte ${q}`);
      }
    }
    return { header, batches, validLength: at, tornBytes: bytes.length - at };
  }
}

