// Pure parser for the qcow2 image header and its header extensions: bytes in, a validated Qcow2Header out, no I/O.
// It refuses every image Stratum cannot serve as a self-contained backing image, with an ImageFormatError that
// names the field and its byte offset. It never reads out of bounds and never throws anything else.

import { ImageFormatError, type ImageFormatErrorCode } from './errors.js';
import { parseQcow2Extensions, type Qcow2Bitmaps, type Qcow2FeatureName, type Qcow2HeaderExtension } from './qcow2-extensions.js';

export type { Qcow2Bitmaps, Qcow2FeatureName, Qcow2HeaderExtension } from './qcow2-extensions.js';

/** "QFI\xfb" read as a big-endian u32. */
export const QCOW2_MAGIC = 0x514649fb;
export const QCOW2_V2_HEADER_LENGTH = 72;
export const QCOW2_V3_MIN_HEADER_LENGTH = 104;
export const QCOW2_MIN_CLUSTER_BITS = 9;
/** qemu's implementation limit (2 MiB clusters); larger ones are valid per the spec but nobody writes them. */
export const QCOW2_MAX_CLUSTER_BITS = 21;
/** qemu's limit on the active L1 table (32 MiB, 4 Mi entries). The reader keeps the L1 table in memory. */
export const QCOW2_MAX_L1_ENTRIES = (32 * 1024 * 1024) / 8;

const INCOMPAT_DIRTY = 1n << 0n;
const INCOMPAT_CORRUPT = 1n << 1n;
const INCOMPAT_DATA_FILE = 1n << 2n;
const INCOMPAT_COMPRESSION = 1n << 3n;
const INCOMPAT_EXTENDED_L2 = 1n << 4n;
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2;
const COMPAT_LAZY_REFCOUNTS = 1n << 0n;

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** Guest-visible size in bytes (a multiple of 512). */
  virtualSize: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  snapshotCount: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  /** refcount_bits = 1 << refcountOrder; 4 for version 2. */
  refcountOrder: number;
  /** 72 for version 2. Header extensions start here. */
  headerLength: number;
  /** zstd is refused (Node 20's zlib has no zstd decoder), so only zlib (raw deflate) remains. */
  compressionType: 'zlib';
  /** Refcounts may be stale. Harmless for reading: the reader never consults refcounts. */
  dirty: boolean;
  lazyRefcounts: boolean;
  /** 128-bit L2 entries with 32 subclusters per cluster. */
  extendedL2: boolean;
  /** Bytes per L2 entry: 8, or 16 with extended L2 entries. */
  l2EntrySize: 8 | 16;
  /** Entries per L2 table (one cluster). */
  l2Entries: number;
  backingFormat?: string;
  featureNames: Qcow2FeatureName[];
  bitmaps?: Qcow2Bitmaps;
  /** Every extension found, known or not, in file order. */
  extensions: Qcow2HeaderExtension[];
}

/*
 * qcow2 header, all fields big-endian (offsets in bytes):
 *
 *   0      4        8                    16       20       24                   32
 *   +------+--------+--------------------+--------+--------+--------------------+
 *   |magic |version | backing_file_offset|bf_size |clu_bits| size (virtual)     |
 *   |QFI\xfb 2 or 3 | 0: no backing file | u32    | 9..21  | u64, % 512 == 0    |
 *   +------+--------+--------------------+--------+--------+--------------------+
 *   32       36       40                   48                   56       60       64
 *   +--------+--------+--------------------+--------------------+--------+--------+
 *   |crypt   |l1_size | l1_table_offset    | refcount_table_off | rt_clus|nb_snaps|
 *   | 0 only | entries| cluster aligned    | cluster aligned    | u32    | u32    |
 *   +--------+--------+--------------------+--------------------+--------+--------+
 *   64                   72 ---- version 2 ends here (header_length 72) -----------
 *   +--------------------+
 *   | snapshots_offset   |
 *   +--------------------+
 *   72                   80                   88                   96       100      104  105   header_length
 *   +--------------------+--------------------+--------------------+--------+--------+-----+-----+
 *   |incompatible_feats  | compatible_feats   | autoclear_feats    |rc_order|hdr_len |compr| pad |
 *   |0 dirty 1 corrupt   | 0 lazy refcounts   | 0 bitmaps          | 0..6   | >=104, |0 zlib     |
 *   |2 data file 3 compr | (unknown: ignored) | 1 raw data file    |        | % 8==0 |1 zstd     |
 *   |4 extended L2       |                    |                    |        |        |if len>=105|
 *   +--------------------+--------------------+--------------------+--------+--------+-----+-----+
 *
 * Then header extensions, each 8-byte aligned, until type 0 or the end of the first cluster:
 *
 *   +--------+--------+----------------------------+-----------------+
 *   | type   | length | data (length bytes)        | pad to 8 bytes  |
 *   +--------+--------+----------------------------+-----------------+
 *   types: 0 end, 0xe2792aca backing format, 0x6803f857 feature names, 0x23852875 bitmaps,
 *          0x0537be77 encryption header, 0x44415441 external data file name, others ignored.
 */

/**
 * Parse and validate a qcow2 header. `buf` holds the start of the file: at least the header and its extensions,
 * normally the whole first cluster (or the whole file if it is shorter). Bytes missing from `buf` give `Truncated`;
 * a value that is wrong gives the matching code with the field's offset. Checks that need the file size are in
 * `checkQcow2Layout`.
 */
export function parseQcow2Header(buf: Uint8Array): Qcow2Header {
  const r = new FieldReader(buf);
  const magic = r.u32(0, 'magic');
  if (magic !== QCOW2_MAGIC) {
    throw fail('BadMagic', 0, `magic is 0x${magic.toString(16).padStart(8, '0')}, not "QFI\\xfb" (0x514649fb)`);
  }
  const version = r.u32(4, 'version');
  if (version !== 2 && version !== 3) {
    const what = version === 1 ? 'version 1 (the original qcow format)' : `version ${version}`;
    throw fail('UnsupportedVersion', 4, `${what} is not supported (2 or 3)`);
  }

  const clusterBits = r.u32(20, 'cluster_bits');
  if (clusterBits < QCOW2_MIN_CLUSTER_BITS) {
    throw fail('Corrupt', 20, `cluster_bits ${clusterBits} is below the minimum of 9 (512-byte clusters)`);
  }
  if (clusterBits > QCOW2_MAX_CLUSTER_BITS) {
    throw fail('UnsupportedFeature', 20, `cluster_bits ${clusterBits} is not supported (at most 21: 2 MiB clusters)`);
  }
  const clusterSize = 2 ** clusterBits;

  const backingFileOffset = r.u64(8, 'backing_file_offset');
  if (backingFileOffset !== 0n) throw backingFileError(r, buf, backingFileOffset);

  const cryptMethod = r.u32(32, 'crypt_method');
  if (cryptMethod !== 0) {
    const name = cryptMethod === 1 ? 'AES' : cryptMethod === 2 ? 'LUKS' : `unknown method ${cryptMethod}`;
    throw fail('Encrypted', 32, `the image is encrypted (crypt_method ${cryptMethod}: ${name}); encrypted backing images are not supported`);
  }

  const virtualSize = r.safe(24, 'size', 'BadSize');
  if (virtualSize % 512 !== 0) {
    throw fail('BadSize', 24, `virtual size ${virtualSize} is not a multiple of 512 bytes`);
  }
  const l1Size = r.u32(36, 'l1_size');
  if (l1Size > QCOW2_MAX_L1_ENTRIES) {
    throw fail('BadSize', 36, `L1 table of ${l1Size} entries exceeds the 32 MiB limit (${QCOW2_MAX_L1_ENTRIES} entries)`);
  }
  const l1TableOffset = r.alignedOffset(40, 'l1_table_offset', clusterSize);
  if (l1Size > 0 && l1TableOffset === 0) throw fail('Corrupt', 40, 'l1_table_offset is 0: the L1 table would overlap the header');
  const refcountTableOffset = r.alignedOffset(48, 'refcount_table_offset', clusterSize);
  const refcountTableClusters = r.u32(56, 'refcount_table_clusters');
  const snapshotCount = r.u32(60, 'nb_snapshots');
  const snapshotsOffset = snapshotCount > 0 ? r.alignedOffset(64, 'snapshots_offset', clusterSize) : r.safe(64, 'snapshots_offset', 'Corrupt');

  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = 4;
  let headerLength = QCOW2_V2_HEADER_LENGTH;
  let compressionByte = 0;
  if (version === 3) {
    incompatibleFeatures = r.u64(72, 'incompatible_features');
    compatibleFeatures = r.u64(80, 'compatible_features');
    autoclearFeatures = r.u64(88, 'autoclear_features');
    refcountOrder = r.u32(96, 'refcount_order');
    if (refcountOrder > 6) throw fail('Corrupt', 96, `refcount_order ${refcountOrder} is above the maximum of 6`);
    headerLength = r.u32(100, 'header_length');
    if (headerLength < QCOW2_V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > clusterSize) {
      throw fail('Corrupt', 100, `header_length ${headerLength} must be a multiple of 8 from 104 to the cluster size ${clusterSize}`);
    }
    r.need(0, headerLength, 'the version 3 header');
    if (headerLength > 104) compressionByte = r.u8(104);
  }

  const extendedL2 = (incompatibleFeatures & INCOMPAT_EXTENDED_L2) !== 0n;
  const l2EntrySize = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / l2EntrySize;
  // A file offset of guest data must be representable, so the L1 table must cover the whole virtual size.
  const needL1 = Math.ceil(virtualSize / (l2Entries * clusterSize));
  if (l1Size < needL1) {
    throw fail('Corrupt', 36, `l1_size ${l1Size} is too small for virtual size ${virtualSize} (needs ${needL1} entries)`);
  }

  const ext = parseQcow2Extensions(buf, headerLength, clusterSize);

  if ((incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n) {
    throw fail('Corrupt', 72, 'the image is marked corrupt (incompatible feature bit 1); repair it with "qemu-img check -r all"');
  }
  if ((incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n) {
    throw fail('ExternalDataFile', 72, 'the image keeps its data in an external data file (incompatible feature bit 2)');
  }
  const unknown = incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    throw fail('UnsupportedFeature', 72, `unknown incompatible feature ${describeBits(unknown, ext.featureNames)} is set`);
  }
  if (extendedL2 && clusterBits < 14) {
    throw fail('Corrupt', 20, `extended L2 entries need clusters of at least 16 KiB, not ${clusterSize} bytes`);
  }
  checkCompressionType(incompatibleFeatures, headerLength, compressionByte);

  const header: Qcow2Header = {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    l1Size,
    l1TableOffset,
    refcountTableOffset,
    refcountTableClusters,
    snapshotCount,
    snapshotsOffset,
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLength,
    compressionType: 'zlib',
    dirty: (incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    lazyRefcounts: (compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
    extendedL2,
    l2EntrySize,
    l2Entries,
    featureNames: ext.featureNames,
    extensions: ext.extensions,
  };
  if (ext.backingFormat !== undefined) header.backingFormat = ext.backingFormat;
  if (ext.bitmaps !== undefined) header.bitmaps = ext.bitmaps;
  return header;
}

/** Checks that need the file size: the L1 table, which the reader loads whole, must lie inside the file. */
export function checkQcow2Layout(header: Qcow2Header, fileSize: number): void {
  const l1End = header.l1TableOffset + header.l1Size * 8;
  if (header.l1Size > 0 && l1End > fileSize) {
    throw fail('Corrupt', 40, `the L1 table at offset ${header.l1TableOffset} (${header.l1Size} entries) ends at ${l1End}, past the end of the file (${fileSize} bytes)`);
  }
}

function checkCompressionType(incompatible: bigint, headerLength: number, type: number): void {
  const flagged = (incompatible & INCOMPAT_COMPRESSION) !== 0n;
  if (!flagged && type === 0) return;
  if (flagged && headerLength <= 104) {
    throw fail('Corrupt', 72, 'the compression type feature bit is set but the header has no compression_type field');
  }
  if (!flagged) {
    throw fail('Corrupt', 104, `compression_type is ${type} but the compression type feature bit (3) is not set`);
  }
  if (type === 0) throw fail('Corrupt', 104, 'the compression type feature bit is set but compression_type is 0 (zlib)');
  if (type === 1) {
    throw fail('UnsupportedFeature', 104, 'compression_type is zstd, which cannot be read: Node.js 20\'s zlib has no zstd decoder (convert the image with "qemu-img convert -O qcow2 -o compression_type=zlib")');
  }
  throw fail('UnsupportedFeature', 104, `compression_type ${type} is unknown (0 zlib, 1 zstd)`);
}

function backingFileError(r: FieldReader, buf: Uint8Array, offset: bigint): ImageFormatError {
  // The name is only for the message: show it when it is where the header says, else refuse without it.
  let name = '';
  const size = r.u32(16, 'backing_file_size');
  if (size > 0 && size <= 1023 && offset + BigInt(size) <= BigInt(buf.length)) {
    const start = Number(offset);
    name = ` ${JSON.stringify(new TextDecoder().decode(buf.subarray(start, start + size)))}`;
  }
  return fail('BackingFile', 8, `the image refers to a backing file${name}; a backing image must be self-contained (flatten it with "qemu-img convert -O qcow2")`);
}

function describeBits(bits: bigint, names: readonly Qcow2FeatureName[]): string {
  const parts: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((bits & (1n << BigInt(bit))) === 0n) continue;
    const named = names.find((n) => n.type === 'incompatible' && n.bit === bit);
    parts.push(named === undefined ? `bit ${bit}` : `bit ${bit} (${JSON.stringify(named.name)})`);
  }
  return parts.join(', ');
}

function fail(code: ImageFormatErrorCode, offset: number, text: string): ImageFormatError {
  return new ImageFormatError(code, `qcow2 header at offset ${offset}: ${text}`, { offset });
}

/** Bounds-checked big-endian field access: every read first checks that the bytes are in `buf`. */
class FieldReader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;

  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  need(offset: number, width: number, what: string): void {
    if (offset + width > this.#buf.length) {
      throw new ImageFormatError(
        'Truncated',
        `qcow2 header at offset ${offset}: ${what} needs ${width} bytes but only ${Math.max(0, this.#buf.length - offset)} are there (${this.#buf.length} bytes given)`,
        { offset },
      );
    }
  }

  u8(offset: number): number {
    this.need(offset, 1, 'compression_type');
    return this.#view.getUint8(offset);
  }

  u32(offset: number, what: string): number {
    this.need(offset, 4, what);
    return this.#view.getUint32(offset);
  }

  u64(offset: number, what: string): bigint {
    this.need(offset, 8, what);
    return this.#view.getBigUint64(offset);
  }

  /** A u64 that must fit a JS number exactly. */
  safe(offset: number, what: string, code: ImageFormatErrorCode): number {
    const v = this.u64(offset, what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(code, offset, `${what} ${v} is beyond 2^53`);
    return Number(v);
  }

  alignedOffset(offset: number, what: string, clusterSize: number): number {
    const v = this.safe(offset, what, 'Corrupt');
    if (v % clusterSize !== 0) throw fail('Corrupt', offset, `${what} ${v} is not aligned to the cluster size ${clusterSize}`);
    return v;
  }
}
