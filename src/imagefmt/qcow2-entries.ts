// Pure decoders for qcow2 L1 and L2 table entries: table bytes in, a validated guest-cluster mapping out. Every
// file offset taken from a table is checked against the cluster alignment and the file size here, so the reader
// never reads outside the file or returns bytes from a place the image does not really point to.

import { ImageFormatError } from './errors.js';

/** What the decoders need to know about the image. */
export interface Qcow2Geometry {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  extendedL2: boolean;
  l2EntrySize: 8 | 16;
  l2Entries: number;
  fileSize: number;
}

/** Where one guest cluster's bytes come from. Without a backing file, `unallocated` and `zero` both read as zeros. */
export type Qcow2Mapping =
  | { readonly kind: 'unallocated' }
  | { readonly kind: 'zero' }
  /** The cluster's visible bytes lie inside the file. */
  | { readonly kind: 'data'; readonly hostOffset: number }
  /** `length`: bytes of deflate data to read from `hostOffset`, already clipped to the end of the file. */
  | { readonly kind: 'compressed'; readonly hostOffset: number; readonly length: number }
  /** Extended L2: bit i of `allocated` means subcluster i is at hostOffset + i × subcluster size; else zeros. */
  | { readonly kind: 'subclusters'; readonly hostOffset: number; readonly allocated: number };

export const UNALLOCATED: Qcow2Mapping = Object.freeze({ kind: 'unallocated' });
export const ZERO: Qcow2Mapping = Object.freeze({ kind: 'zero' });

const OFFSET_HI_MASK = 0x00ffffff; // bits 32..55 of a standard offset (bits 56..63 are reserved or flags)
const OFFSET_LO_MASK = 0xfffffe00; // bits 9..31 (bits 0..8 are flags or reserved)
const COMPRESSED_BIT = 0x40000000; // bit 62, in the high word
const ZERO_BIT = 0x1; // bit 0, in the low word
const ALL_SUBCLUSTERS = 0xffffffff;

/** Bits 9..55 of a 64-bit entry given as two big-endian words. Exact: the result is below 2^56 but a multiple of 512. */
function standardOffset(hi: number, lo: number): number {
  return (hi & OFFSET_HI_MASK) * 2 ** 32 + ((lo & OFFSET_LO_MASK) >>> 0);
}

/**
 * Decode L1 entry `index` of the table `l1` (the raw bytes loaded from file offset `l1Offset`). Returns the L2
 * table's file offset, or 0 when the whole L2 range is unallocated.
 */
export function decodeL1Entry(l1: DataView, index: number, l1Offset: number, geo: Qcow2Geometry): number {
  const at = index * 8;
  const offset = standardOffset(l1.getUint32(at), l1.getUint32(at + 4));
  if (offset === 0) return 0;
  const where = l1Offset + at;
  if (offset % geo.clusterSize !== 0) {
    throw corrupt(where, `L1 entry ${index} at offset ${where}: L2 table offset ${offset} is not aligned to the cluster size ${geo.clusterSize}`);
  }
  if (offset + geo.clusterSize > geo.fileSize) {
    throw corrupt(where, `L1 entry ${index} at offset ${where}: L2 table at ${offset} runs past the end of the file (${geo.fileSize} bytes)`);
  }
  return offset;
}

/**
 * Decode L2 entry `index` of the table `l2` (the raw bytes of one cluster loaded from file offset `l2Offset`).
 * `visible`: how many bytes of this guest cluster are inside the virtual size (less than a cluster only for the
 * last one); the file must hold at least the allocated part of those.
 */
export function decodeL2Entry(l2: DataView, index: number, l2Offset: number, geo: Qcow2Geometry, visible = geo.clusterSize): Qcow2Mapping {
  const at = index * geo.l2EntrySize;
  const where = l2Offset + at;
  const hi = l2.getUint32(at);
  const lo = l2.getUint32(at + 4);
  if ((hi & COMPRESSED_BIT) !== 0) {
    if (geo.extendedL2 && (l2.getUint32(at + 8) !== 0 || l2.getUint32(at + 12) !== 0)) {
      throw corrupt(where, `L2 entry at offset ${where}: a compressed cluster has a non-zero subcluster bitmap`);
    }
    return decodeCompressed(hi, lo, where, geo);
  }

  const offset = standardOffset(hi, lo);
  if (geo.extendedL2) {
    // Big-endian: the high word (bits 32..63) is the "reads as zero" bitmap, the low word the allocation bitmap.
    const zeroMask = l2.getUint32(at + 8);
    const allocated = l2.getUint32(at + 12);
    if ((allocated & zeroMask) !== 0) {
      throw corrupt(where, `L2 entry at offset ${where}: subclusters are marked both allocated and zero (0x${(allocated & zeroMask).toString(16)})`);
    }
    if (offset === 0) {
      if (allocated !== 0) throw corrupt(where, `L2 entry at offset ${where}: subclusters are allocated but the cluster has no host offset`);
      return UNALLOCATED;
    }
    checkAligned(offset, where, geo);
    if (allocated === 0) return UNALLOCATED;
    // qemu writes only the allocated subclusters, so the file may end right after the last one.
    const lastAllocatedEnd = (32 - Math.clz32(allocated)) * (geo.clusterSize / 32);
    checkInFile(offset, Math.min(visible, lastAllocatedEnd), where, geo);
    return allocated === ALL_SUBCLUSTERS ? { kind: 'data', hostOffset: offset } : { kind: 'subclusters', hostOffset: offset, allocated };
  }

  if ((lo & ZERO_BIT) !== 0) {
    // qemu treats this as corruption too: version 2 has no zero clusters, bit 0 is reserved there.
    if (geo.version === 2) throw corrupt(where, `L2 entry at offset ${where}: zero-cluster flag in a version 2 image`);
    if (offset !== 0) checkAligned(offset, where, geo);
    return ZERO;
  }
  // Offset 0 with the "copied" bit set would mean "host offset 0" only with an external data file (refused), so
  // like qemu we read it as unallocated.
  if (offset === 0) return UNALLOCATED;
  checkAligned(offset, where, geo);
  checkInFile(offset, visible, where, geo);
  return { kind: 'data', hostOffset: offset };
}

/**
 * Compressed cluster descriptor, x = 62 - (cluster_bits - 8):
 *
 *   63   62   61 ............. x   x-1 ............................ 0
 *   +----+----+------------------+----------------------------------+
 *   |copy|  1 | extra 512-byte   | host byte offset of deflate data |
 *   | 0  |    | sectors (n - 1)  | (not aligned)                    |
 *   +----+----+------------------+----------------------------------+
 *
 * The data spans n sectors counted from the sector holding the offset: n × 512 - (offset mod 512) bytes.
 * With 9 ≤ cluster_bits ≤ 21, x is 49..61 so both fields are split at a bit inside the high word.
 */
function decodeCompressed(hi: number, lo: number, where: number, geo: Qcow2Geometry): Qcow2Mapping {
  const x = 70 - geo.clusterBits;
  const hiOffsetBits = x - 32;
  const offset = (hi & ((1 << hiOffsetBits) - 1)) * 2 ** 32 + (lo >>> 0);
  const extraSectors = (hi >>> hiOffsetBits) & ((1 << (geo.clusterBits - 8)) - 1);
  // Also catches offsets beyond 2^53, which cannot be exact numbers: any such offset is past the file.
  if (offset >= geo.fileSize) {
    throw corrupt(where, `L2 entry at offset ${where}: compressed data offset ${offset} is past the end of the file (${geo.fileSize} bytes)`);
  }
  const length = (extraSectors + 1) * 512 - (offset % 512);
  // The last compressed cluster may end in a sector the file does not fully hold; qemu reads zeros there.
  return { kind: 'compressed', hostOffset: offset, length: Math.min(length, geo.fileSize - offset) };
}

function checkAligned(offset: number, where: number, geo: Qcow2Geometry): void {
  if (offset % geo.clusterSize !== 0) {
    throw corrupt(where, `L2 entry at offset ${where}: host cluster offset ${offset} is not aligned to the cluster size ${geo.clusterSize}`);
  }
}

function checkInFile(offset: number, needed: number, where: number, geo: Qcow2Geometry): void {
  // All the bytes the guest can read from this cluster, not just its start: qemu writes whole clusters (or whole
  // subclusters), so a file that ends inside them is cut short or damaged. qemu would read zeros there; a backing
  // image is better refused than silently padded.
  if (offset + needed > geo.fileSize) {
    throw corrupt(where, `L2 entry at offset ${where}: host cluster ${offset} (${needed} bytes used) runs past the end of the file (${geo.fileSize} bytes)`);
  }
}

function corrupt(offset: number, message: string): ImageFormatError {
  return new ImageFormatError('Corrupt', `qcow2 ${message}`, { offset });
}
