// Reads the guest-visible content of a qcow2 backing image: L1 table in memory, L2 tables and decompressed
// clusters in bounded LRU caches, every table offset validated (qcow2-entries.ts) before it is used.
//
// Memory bound per reader, whatever the image size:
//   L1 table         8 bytes × l1_size (at most 32 MiB by the header check; 16 KiB for 2 TiB at 64 KiB clusters)
// + L2 cache         floor(l2CacheBytes / cluster size) tables, at least 1 (default 8 MiB: 128 tables of 64 KiB,
//                    which map 64 GiB of guest space)
// + cluster cache    floor(clusterCacheBytes / cluster size) decompressed clusters, at least 1 (default 4 MiB)
// + compressed read-ahead: 4 windows of 32 KiB (only for compressed clusters smaller than that)
// + per read in flight: at most one L2 table evicted while in use and one compressed input (≤ 2 clusters).

import { promisify } from 'node:util';
import { constants as zlibConstants, inflateRaw, inflateRawSync, type ZlibOptions } from 'node:zlib';
import { ImageFormatError } from './errors.js';
import {
  checkReadArgs, extentRange, pushExtent, ReaderLifecycle, type ImageExtent, type ImageReader, type ZeroExtentsOptions,
} from './image-reader.js';
import { LruCache } from './lru.js';
import { decodeL1Entry, decodeL2Entry, UNALLOCATED, type Qcow2Geometry, type Qcow2Mapping } from './qcow2-entries.js';
import type { Qcow2Header } from './qcow2-header.js';
import { readQcow2Header, type ByteSource, type SignalOptions } from './source.js';

const inflateRawAsync = promisify(inflateRaw);

/**
 * Clusters up to this size are inflated synchronously: for them the thread-pool round trip of async inflate costs
 * more than the inflation itself (a 512-byte cluster took ~20× longer async). Larger ones go to the thread pool so
 * that a 2 MiB cluster does not stall the event loop for milliseconds.
 */
const SYNC_INFLATE_MAX = 64 * 1024;
/** File read size for small compressed clusters, and how many such reads are kept (see #compressedInput). */
const COMPRESSED_WINDOW = 32 * 1024;
const MAX_WINDOWS = 4;

export const DEFAULT_L2_CACHE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_CLUSTER_CACHE_BYTES = 4 * 1024 * 1024;

export interface Qcow2ReaderOptions extends SignalOptions {
  /** Budget for cached L2 tables (default 8 MiB); at least one table is always kept. */
  l2CacheBytes?: number;
  /** Budget for cached decompressed clusters (default 4 MiB); at least one cluster is always kept. */
  clusterCacheBytes?: number;
}

export interface VerifyOptions extends SignalOptions {
  /** Called after each L2 table's clusters are checked: guest bytes covered so far, of the virtual size. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface Qcow2ImageReader extends ImageReader {
  readonly format: 'qcow2';
  readonly header: Qcow2Header;
  /** The cache bounds in effect, in entries of one cluster each. */
  readonly l2CacheEntries: number;
  readonly clusterCacheEntries: number;
  /**
   * Decode every L1 and L2 entry and inflate every compressed cluster once: everything a read could trip on, so an
   * image that passes reads without a format error wherever it is read (verify-image.ts).
   */
  verify(options?: VerifyOptions): Promise<void>;
}

/** Open a qcow2 reader on `source`; on failure the caller still owns (and closes) the source. */
export async function openQcow2Reader(source: ByteSource, options: Qcow2ReaderOptions = {}): Promise<Qcow2ImageReader> {
  const header = await readQcow2Header(source, options);
  const l1 = new Uint8Array(header.l1Size * 8);
  if (l1.length > 0 && (await source.read(l1, header.l1TableOffset)) !== l1.length) {
    throw new ImageFormatError('Corrupt', `qcow2 L1 table at offset ${header.l1TableOffset}: the file ended while reading it`, { offset: header.l1TableOffset });
  }
  options.signal?.throwIfAborted();
  return new Qcow2Reader(source, header, l1, options);
}

class Qcow2Reader implements Qcow2ImageReader {
  readonly format = 'qcow2' as const;
  readonly virtualSize: number;
  readonly header: Qcow2Header;
  readonly l2CacheEntries: number;
  readonly clusterCacheEntries: number;
  readonly #source: ByteSource;
  readonly #geo: Qcow2Geometry;
  readonly #l1: DataView;
  readonly #l2Cache: LruCache<number, Promise<DataView>>;
  readonly #clusterCache: LruCache<string, Promise<Uint8Array>>;
  readonly #life = new ReaderLifecycle();
  #windows: { start: number; end: number; bytes: Promise<Uint8Array> }[] = [];

  constructor(source: ByteSource, header: Qcow2Header, l1: Uint8Array, options: Qcow2ReaderOptions) {
    this.#source = source;
    this.header = header;
    this.virtualSize = header.virtualSize;
    this.#geo = { ...header, fileSize: source.size };
    this.#l1 = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    const cs = header.clusterSize;
    this.l2CacheEntries = Math.max(1, Math.floor((options.l2CacheBytes ?? DEFAULT_L2_CACHE_BYTES) / cs));
    this.clusterCacheEntries = Math.max(1, Math.floor((options.clusterCacheBytes ?? DEFAULT_CLUSTER_CACHE_BYTES) / cs));
    this.#l2Cache = new LruCache(this.l2CacheEntries);
    this.#clusterCache = new LruCache(this.clusterCacheEntries);
  }

  read(buf: Uint8Array, offset: number, { signal }: SignalOptions = {}): Promise<void> {
    checkReadArgs(buf, offset);
    return this.#life.run('read', () => this.#read(buf, offset, signal));
  }

  zeroExtents(options: ZeroExtentsOptions = {}): Promise<ImageExtent[]> {
    const { start, end } = extentRange(options, this.virtualSize);
    return this.#life.run('list zero extents', () => this.#zeroExtents(start, end, options.signal));
  }

  verify({ signal, onProgress }: VerifyOptions = {}): Promise<void> {
    return this.#life.run('verify', () => this.#verify(signal, onProgress));
  }

  close(): Promise<void> {
    return this.#life.close(async () => {
      this.#l2Cache.clear();
      this.#clusterCache.clear();
      this.#windows = [];
      await this.#source.close();
    });
  }

  async #read(buf: Uint8Array, offset: number, signal: AbortSignal | undefined): Promise<void> {
    const cs = this.header.clusterSize;
    const end = Math.min(offset + buf.length, this.virtualSize);
    buf.fill(0, Math.max(0, end - offset));
    // Contiguous data pieces (whole clusters or subclusters adjacent both in the guest and in the file) are merged
    // into one file read: images written by qemu-img convert are mostly laid out in guest order.
    const pending = { at: 0, host: 0, length: 0 };
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      this.#life.check('read');
      const dst = buf.subarray(pending.at, pending.at + pending.length);
      if ((await this.#source.read(dst, pending.host)) !== dst.length) {
        // decodeL2Entry checked that the clusters lie inside the file, so the file shrank under us.
        throw new ImageFormatError('Corrupt', `qcow2 data at offset ${pending.host}: the file ended while reading it`, { offset: pending.host });
      }
      pending.length = 0;
    };
    const addData = async (at: number, host: number, length: number): Promise<void> => {
      if (pending.length > 0 && pending.at + pending.length === at && pending.host + pending.length === host) {
        pending.length += length;
        return;
      }
      await flush();
      Object.assign(pending, { at, host, length });
    };

    let pos = offset;
    while (pos < end) {
      signal?.throwIfAborted();
      this.#life.check('read');
      const cluster = Math.floor(pos / cs);
      const within = pos - cluster * cs;
      const n = Math.min(cs - within, end - pos);
      const at = pos - offset;
      const m = await this.#lookup(cluster);
      switch (m.kind) {
        case 'unallocated':
        case 'zero':
          buf.fill(0, at, at + n);
          break;
        case 'data':
          await addData(at, m.hostOffset + within, n);
          break;
        case 'compressed': {
          const data = await this.#decompressed(m.hostOffset, m.length);
          buf.set(data.subarray(within, within + n), at);
          break;
        }
        case 'subclusters': {
          const scs = cs / 32;
          for (let p = within; p < within + n; ) {
            const sc = Math.floor(p / scs);
            const q = Math.min((sc + 1) * scs, within + n);
            if (((m.allocated >>> sc) & 1) === 1) await addData(at + (p - within), m.hostOffset + p, q - p);
            else buf.fill(0, at + (p - within), at + (q - within));
            p = q;
          }
          break;
        }
      }
      pos += n;
    }
    await flush();
  }

  async #zeroExtents(start: number, end: number, signal: AbortSignal | undefined): Promise<ImageExtent[]> {
    const { clusterSize: cs, l2Entries } = this.header;
    const span = cs * l2Entries; // guest bytes mapped by one L2 table
    const out: ImageExtent[] = [];
    let pos = start;
    while (pos < end) {
      signal?.throwIfAborted();
      this.#life.check('list zero extents');
      const l1Index = Math.floor(pos / span);
      const tableEnd = Math.min(end, (l1Index + 1) * span);
      const l2Offset = this.#l1Entry(l1Index);
      if (l2Offset === 0) {
        pushExtent(out, pos, tableEnd - pos);
        pos = tableEnd;
        continue;
      }
      const table = await this.#l2Table(l2Offset);
      // One await per L2 table, then a synchronous walk of its entries.
      while (pos < tableEnd) {
        const cluster = Math.floor(pos / cs);
        const cEnd = Math.min(tableEnd, (cluster + 1) * cs);
        const m = decodeL2Entry(table, cluster - l1Index * l2Entries, l2Offset, this.#geo, this.#visible(cluster));
        if (m.kind === 'unallocated' || m.kind === 'zero') pushExtent(out, pos, cEnd - pos);
        else if (m.kind === 'subclusters') {
          const scs = cs / 32;
          for (let p = pos; p < cEnd; ) {
            const sc = Math.floor((p - cluster * cs) / scs);
            const q = Math.min(cluster * cs + (sc + 1) * scs, cEnd);
            if (((m.allocated >>> sc) & 1) === 0) pushExtent(out, p, q - p);
            p = q;
          }
        }
        pos = cEnd;
      }
    }
    return out;
  }

  async #verify(signal: AbortSignal | undefined, onProgress: VerifyOptions['onProgress']): Promise<void> {
    const { clusterSize: cs, l2Entries } = this.header;
    const clusters = Math.ceil(this.virtualSize / cs);
    for (let l1Index = 0; l1Index * l2Entries < clusters; l1Index++) {
      signal?.throwIfAborted();
      this.#life.check('verify');
      const l2Offset = this.#l1Entry(l1Index);
      const last = Math.min(clusters, (l1Index + 1) * l2Entries);
      if (l2Offset !== 0) {
        // Read directly, not through the cache: each table is met once, and the reader's caches stay as they were.
        const table = await this.#loadL2Table(l2Offset);
        for (let cluster = l1Index * l2Entries; cluster < last; cluster++) {
          const m = decodeL2Entry(table, cluster - l1Index * l2Entries, l2Offset, this.#geo, this.#visible(cluster));
          if (m.kind === 'compressed') await this.#inflate(m.hostOffset, m.length);
        }
      }
      onProgress?.(Math.min(this.virtualSize, last * cs), this.virtualSize);
    }
  }

  #l1Entry(l1Index: number): number {
    if (l1Index >= this.header.l1Size) {
      // parseQcow2Header checked that the L1 table covers the virtual size, so this is a bug, not a bad image.
      throw new RangeError(`qcow2 L1 index ${l1Index} is beyond the L1 table (${this.header.l1Size} entries)`);
    }
    return decodeL1Entry(this.#l1, l1Index, this.header.l1TableOffset, this.#geo);
  }

  /** Bytes of guest cluster `cluster` inside the virtual size: a whole cluster except maybe for the last one. */
  #visible(cluster: number): number {
    const cs = this.header.clusterSize;
    return Math.min(cs, this.virtualSize - cluster * cs);
  }

  async #lookup(cluster: number): Promise<Qcow2Mapping> {
    const l2Entries = this.header.l2Entries;
    const l1Index = Math.floor(cluster / l2Entries);
    const l2Offset = this.#l1Entry(l1Index);
    if (l2Offset === 0) return UNALLOCATED;
    const table = await this.#l2Table(l2Offset);
    return decodeL2Entry(table, cluster - l1Index * l2Entries, l2Offset, this.#geo, this.#visible(cluster));
  }

  #l2Table(offset: number): Promise<DataView> {
    // The promise is cached, not the table, so concurrent reads of one table share one file read.
    let p = this.#l2Cache.get(offset);
    if (p === undefined) {
      const loading = this.#loadL2Table(offset);
      this.#l2Cache.set(offset, loading);
      loading.catch(() => this.#l2Cache.deleteIf(offset, loading));
      p = loading;
    }
    return p;
  }

  async #loadL2Table(offset: number): Promise<DataView> {
    this.#life.check('read');
    const table = new Uint8Array(this.header.clusterSize);
    if ((await this.#source.read(table, offset)) !== table.length) {
      // decodeL1Entry checked the table lies inside the file, so the file shrank under us.
      throw new ImageFormatError('Corrupt', `qcow2 L2 table at offset ${offset}: the file ended while reading it`, { offset });
    }
    return new DataView(table.buffer);
  }

  #decompressed(hostOffset: number, length: number): Promise<Uint8Array> {
    const key = `${hostOffset}:${length}`;
    let p = this.#clusterCache.get(key);
    if (p === undefined) {
      const loading = this.#inflate(hostOffset, length);
      this.#clusterCache.set(key, loading);
      loading.catch(() => this.#clusterCache.deleteIf(key, loading));
      p = loading;
    }
    return p;
  }

  /**
   * The deflate bytes of one compressed cluster. qemu packs compressed clusters back to back, so for small ones a
   * single read of COMPRESSED_WINDOW bytes usually holds the next clusters too: one file read per window instead of
   * one per cluster. A few windows are kept so that concurrent sequential readers do not evict each other's.
   * Larger compressed clusters are read exactly; the decompressed-cluster cache covers their reuse.
   */
  async #compressedInput(hostOffset: number, length: number): Promise<Uint8Array> {
    if (length >= COMPRESSED_WINDOW) return this.#readBytes(hostOffset, hostOffset + length);
    let w = this.#windows.find((x) => hostOffset >= x.start && hostOffset + length <= x.end);
    if (w === undefined) {
      const end = Math.min(this.#source.size, hostOffset + COMPRESSED_WINDOW);
      const fresh = { start: hostOffset, end, bytes: this.#readBytes(hostOffset, end) };
      fresh.bytes.catch(() => {
        this.#windows = this.#windows.filter((x) => x !== fresh); // an I/O error must not stick to a window
      });
      this.#windows = [...this.#windows.slice(1 - MAX_WINDOWS), fresh];
      w = fresh;
    }
    const bytes = await w.bytes;
    const from = hostOffset - w.start;
    return bytes.subarray(from, from + length);
  }

  async #readBytes(start: number, end: number): Promise<Uint8Array> {
    const buf = new Uint8Array(end - start);
    return buf.subarray(0, await this.#source.read(buf, start));
  }

  async #inflate(hostOffset: number, length: number): Promise<Uint8Array> {
    this.#life.check('read');
    const cs = this.header.clusterSize;
    const data = await this.#compressedInput(hostOffset, length);
    let out: Uint8Array;
    try {
      // The descriptor gives the length only to a 512-byte sector, so the stream is followed by padding or the
      // next cluster's data: Z_SYNC_FLUSH accepts input that ends mid-stream, and inflate ignores bytes after the
      // stream's end. qemu compresses exactly one cluster, so more output than a cluster means a bad stream.
      const opts: ZlibOptions = { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: cs };
      out = cs <= SYNC_INFLATE_MAX ? inflateRawSync(data, opts) : await inflateRawAsync(data, opts);
    } catch (err) {
      throw new ImageFormatError('Corrupt', `qcow2 compressed cluster at offset ${hostOffset}: the deflate data is invalid (${err instanceof Error ? err.message : String(err)})`, { offset: hostOffset, cause: err });
    }
    if (out.length !== cs) {
      throw new ImageFormatError('Corrupt', `qcow2 compressed cluster at offset ${hostOffset}: decompresses to ${out.length} bytes, not the cluster size ${cs}`, { offset: hostOffset });
    }
    return out;
  }
}
