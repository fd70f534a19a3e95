// Format detection and inspection of a backing image file: what it is (qcow2 or raw), its guest-visible size, and
// the qcow2 details worth showing. Inspection refuses exactly what the reader would refuse, with the same errors.

import { ImageFormatError } from './errors.js';
import type { ImageFormat } from './image-reader.js';
import { QCOW2_MAGIC, type Qcow2Header } from './qcow2-header.js';
import { openFileSource, readQcow2Header, type ByteSource, type SignalOptions } from './source.js';

export interface Qcow2Info {
  version: 2 | 3;
  /** qemu's name for the version: "0.10" for 2, "1.1" for 3. */
  compat: '0.10' | '1.1';
  clusterSize: number;
  compressionType: 'zlib';
  extendedL2: boolean;
  lazyRefcounts: boolean;
  /** Set when the image was not closed cleanly (refcounts may be stale); reading is unaffected. */
  dirty: boolean;
  refcountBits: number;
  l1Size: number;
  /** Internal snapshots. Only the active image is read. */
  snapshotCount: number;
  bitmapCount: number;
  backingFormat?: string;
}

/** JSON-safe description of an image. */
export interface ImageInfo {
  format: ImageFormat;
  virtualSize: number;
  fileSize: number;
  qcow2?: Qcow2Info;
}

/**
 * qcow2 when `firstBytes` start with the qcow2 magic "QFI\xfb", raw otherwise (as Longhorn accepts only these two
 * formats, any other content is served as raw bytes). Fewer than 4 bytes are raw.
 */
export function detectFormat(firstBytes: Uint8Array): ImageFormat {
  if (firstBytes.length < 4) return 'raw';
  const magic = ((firstBytes[0] ?? 0) * 2 ** 24) + ((firstBytes[1] ?? 0) << 16) + ((firstBytes[2] ?? 0) << 8) + (firstBytes[3] ?? 0);
  return magic === QCOW2_MAGIC ? 'qcow2' : 'raw';
}

/** A raw image's size is its virtual size, which must be whole 512-byte sectors (the data path reads sectors). */
export function checkRawSize(size: number): void {
  if (size % 512 !== 0) {
    throw new ImageFormatError('BadSize', `raw image size ${size} is not a multiple of 512 bytes (${size % 512} bytes over)`);
  }
}

/** Inspect the image at `path`: reads at most the first cluster of a qcow2, 4 bytes of a raw file. */
export async function inspectImage(path: string, options: SignalOptions = {}): Promise<ImageInfo> {
  const source = await openFileSource(path, options);
  try {
    return await inspectSource(source, options);
  } finally {
    await source.close();
  }
}

/** Inspect an already open source (which stays open). */
export async function inspectSource(source: ByteSource, { signal }: SignalOptions = {}): Promise<ImageInfo> {
  const first = new Uint8Array(Math.min(4, source.size));
  await source.read(first, 0);
  signal?.throwIfAborted();
  if (detectFormat(first) === 'raw') {
    checkRawSize(source.size);
    return { format: 'raw', virtualSize: source.size, fileSize: source.size };
  }
  const header = await readQcow2Header(source, { signal });
  return { format: 'qcow2', virtualSize: header.virtualSize, fileSize: source.size, qcow2: qcow2Info(header) };
}

function qcow2Info(h: Qcow2Header): Qcow2Info {
  const info: Qcow2Info = {
    version: h.version,
    compat: h.version === 2 ? '0.10' : '1.1',
    clusterSize: h.clusterSize,
    compressionType: h.compressionType,
    extendedL2: h.extendedL2,
    lazyRefcounts: h.lazyRefcounts,
    dirty: h.dirty,
    refcountBits: 2 ** h.refcountOrder,
    l1Size: h.l1Size,
    snapshotCount: h.snapshotCount,
    bitmapCount: h.bitmaps?.count ?? 0,
  };
  if (h.backingFormat !== undefined) info.backingFormat = h.backingFormat;
  return info;
}
