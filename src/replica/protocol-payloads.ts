// Payloads of the replica protocol's structured answers (INFO, LIST_EXTENTS, READ_EXTENT), as pure encoders and
// decoders. Decoders take the stream offset where the payload starts so that their errors point into the stream.

import { BlockState, isBlockState } from './block-map.js';
import { protocolError } from './errors.js';
import type { ExtentData, ExtentRun, ReplicaInfo, WrittenExtent, WrittenExtents } from './types.js';
import { getU64, setU64, view } from './wire.js';

// ---------------------------------------------------------------------------------------------------------------
// INFO answer
//
//  0              8           12          16             24             32                   40
//  +--------------+-----------+-----------+--------------+--------------+--------------------+
//  | size u64     | blockSize | flags u32 | revision u64 | generation   | backingVirtualSize |
//  |              | u32       |           |              | u64          | u64                |
//  +--------------+-----------+-----------+--------------+--------------+--------------------+
//  40: four strings, each u16 byte length + UTF-8: replica name, backing name, backing uuid, backing format.
//  flags bit 0: the replica has a backing image (otherwise the backing fields are empty / zero).

const INFO_FIXED = 40;
const HAS_BACKING = 1;

function putString(parts: Uint8Array[], s: string): void {
  const bytes = Buffer.from(s, 'utf8');
  const len = new Uint8Array(2);
  view(len).setUint16(0, bytes.byteLength, true);
  parts.push(len, bytes);
}

export function encodeInfo(info: ReplicaInfo): Uint8Array {
  const fixed = new Uint8Array(INFO_FIXED);
  const v = view(fixed);
  setU64(v, 0, info.size);
  v.setUint32(8, info.blockSize, true);
  v.setUint32(12, info.backing ? HAS_BACKING : 0, true);
  setU64(v, 16, info.revision);
  setU64(v, 24, info.generation);
  setU64(v, 32, info.backing?.virtualSize ?? 0);
  const parts: Uint8Array[] = [fixed];
  for (const s of [info.name, info.backing?.name ?? '', info.backing?.uuid ?? '', info.backing?.format ?? '']) putString(parts, s);
  return Buffer.concat(parts);
}

export function decodeInfo(bytes: Uint8Array, at = 0): ReplicaInfo {
  if (bytes.length < INFO_FIXED) throw protocolError(at + bytes.length, `INFO payload of ${bytes.length} bytes is shorter than ${INFO_FIXED}`);
  const v = view(bytes);
  const flags = v.getUint32(12, true);
  if ((flags & ~HAS_BACKING) !== 0) throw protocolError(at + 12, `unknown INFO flags 0x${flags.toString(16)}`);
  const strings: string[] = [];
  let p = INFO_FIXED;
  for (let i = 0; i < 4; i++) {
    if (p + 2 > bytes.length) throw protocolError(at + p, 'INFO string length cut short');
    const n = v.getUint16(p, true);
    if (p + 2 + n > bytes.length) throw protocolError(at + p, `INFO string of ${n} bytes runs past the payload`);
    strings.push(Buffer.from(bytes.subarray(p + 2, p + 2 + n)).toString('utf8'));
    p += 2 + n;
  }
  if (p !== bytes.length) throw protocolError(at + p, `${bytes.length - p} bytes after the INFO strings`);
  const [name, bName, bUuid, bFormat] = strings as [string, string, string, string];
  let backing: ReplicaInfo['backing'] = null;
  if (flags & HAS_BACKING) {
    if (bFormat !== 'raw' && bFormat !== 'qcow2') throw protocolError(at + INFO_FIXED, `backing format "${bFormat}" is not raw or qcow2`);
    backing = { name: bName, uuid: bUuid, format: bFormat, virtualSize: getU64(v, 32, at, 'backing virtual size') };
  }
  return {
    name,
    size: getU64(v, 0, at, 'size'),
    blockSize: v.getUint32(8, true),
    revision: getU64(v, 16, at, 'revision'),
    generation: getU64(v, 24, at, 'generation'),
    backing,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// LIST_EXTENTS answer
//
//  0           4           8                 16
//  +-----------+-----------+-----------------+------------------------------------------------+
//  | count u32 | zero u32  | next u64        | count × { offset u64 | length u64 | state u8 | 7 zero bytes } |
//  +-----------+-----------+-----------------+------------------------------------------------+
//  next: where the following page starts, or 0xFFFF_FFFF_FFFF_FFFF when the listing is complete.
//  state: 1 data, 2 zero (the BlockState values).

const EXTENT_ENTRY = 24;

export function encodeExtents(page: WrittenExtents): Uint8Array {
  const out = new Uint8Array(16 + page.extents.length * EXTENT_ENTRY);
  const v = view(out);
  v.setUint32(0, page.extents.length, true);
  if (page.nextOffset === undefined) {
    v.setUint32(8, 0xffff_ffff, true);
    v.setUint32(12, 0xffff_ffff, true);
  } else setU64(v, 8, page.nextOffset);
  page.extents.forEach((e, i) => {
    const p = 16 + i * EXTENT_ENTRY;
    setU64(v, p, e.offset);
    setU64(v, p + 8, e.length);
    out[p + 16] = e.state === 'data' ? BlockState.DATA : BlockState.ZERO;
  });
  return out;
}

export function decodeExtents(bytes: Uint8Array, at = 0): WrittenExtents {
  if (bytes.length < 16) throw protocolError(at + bytes.length, 'LIST_EXTENTS payload cut short');
  const v = view(bytes);
  const count = v.getUint32(0, true);
  if (bytes.length !== 16 + count * EXTENT_ENTRY) throw protocolError(at, `LIST_EXTENTS payload of ${bytes.length} bytes does not hold ${count} extents`);
  const done = v.getUint32(8, true) === 0xffff_ffff && v.getUint32(12, true) === 0xffff_ffff;
  const nextOffset = done ? undefined : getU64(v, 8, at, 'next offset');
  const extents: WrittenExtent[] = [];
  for (let i = 0; i < count; i++) {
    const p = 16 + i * EXTENT_ENTRY;
    const state = bytes[p + 16]!;
    if (state !== BlockState.DATA && state !== BlockState.ZERO) throw protocolError(at + p + 16, `extent ${i} has state ${state}, not data (1) or zero (2)`);
    extents.push({ offset: getU64(v, p, at, 'extent offset'), length: getU64(v, p + 8, at, 'extent length'), state: state === BlockState.DATA ? 'data' : 'zero' });
  }
  return { extents, nextOffset };
}

// ---------------------------------------------------------------------------------------------------------------
// READ_EXTENT answer
//
//  0              4           8
//  +--------------+-----------+---------------------------------------------------+---------------------+
//  | runCount u32 | zero u32  | runCount × { length u64 | state u8 | 7 zero bytes } | bytes of DATA runs  |
//  +--------------+-----------+---------------------------------------------------+---------------------+
//  The runs cover the requested range in order; state 0 unwritten, 1 data, 2 zero.

const RUN_ENTRY = 16;

export function encodeExtentData(e: ExtentData): Uint8Array[] {
  const table = new Uint8Array(8 + e.runs.length * RUN_ENTRY);
  const v = view(table);
  v.setUint32(0, e.runs.length, true);
  e.runs.forEach((r, i) => {
    setU64(v, 8 + i * RUN_ENTRY, r.length);
    table[8 + i * RUN_ENTRY + 8] = r.state;
  });
  return [table, e.data];
}

export function decodeExtentData(bytes: Uint8Array, at = 0): ExtentData {
  if (bytes.length < 8) throw protocolError(at + bytes.length, 'READ_EXTENT payload cut short');
  const v = view(bytes);
  const count = v.getUint32(0, true);
  const tableEnd = 8 + count * RUN_ENTRY;
  if (tableEnd > bytes.length) throw protocolError(at, `READ_EXTENT run table of ${count} runs runs past the payload`);
  const runs: ExtentRun[] = [];
  let dataBytes = 0;
  for (let i = 0; i < count; i++) {
    const p = 8 + i * RUN_ENTRY;
    const state = bytes[p + 8]!;
    if (!isBlockState(state)) throw protocolError(at + p + 8, `run ${i} has the undefined state ${state}`);
    const length = getU64(v, p, at, 'run length');
    if (state === BlockState.DATA) dataBytes += length;
    runs.push({ length, state });
  }
  if (bytes.length - tableEnd !== dataBytes) {
    throw protocolError(at + tableEnd, `READ_EXTENT carries ${bytes.length - tableEnd} data bytes, its runs need ${dataBytes}`);
  }
  return { runs, data: bytes.subarray(tableEnd) };
}
