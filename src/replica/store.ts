// ReplicaStore: one replica of a volume on one disk. A directory holds the metadata (`replica.json`), a sparse head
// file the size of the volume (`head.img`), and the written-block map (`map.ckpt` + `map.journal`, see
// map-journal.ts), over a read-only backing file on the same disk read natively through imagefmt (raw or qcow2;
// never converted, copied or written).
//
// Reads take each block from where the map says: DATA from the head, UNWRITTEN from the backing image (zeros past
// its virtual size, or with no backing image), ZERO as zeros. A write covering part of a block that is not DATA
// merges with the block's current content (read-modify-write) so the head always holds whole, true blocks. TRIM
// and WRITE_ZEROES mark whole blocks ZERO (hiding the backing image without writing anything) and zero the edges.
// A write is acknowledged once its bytes are in the page cache and its map change is in the pending map log
// (pending-log.ts): from then on it survives a crash of this process. FLUSH and FUA make it survive a power loss.

import { join, resolve } from 'node:path';
import { describeHolder, FileLock } from '../util/file-lock.js';
import { openImageReaderOnSource, type ImageReader } from '../imagefmt/index.js';
import { BlockMap, BlockState, planWrite, type StateRun } from './block-map.js';
import { ReplicaError } from './errors.js';
import { MapJournal, type MapJournalOptions, type OpenedMap } from './map-journal.js';
import type { PendingSlot } from './pending-format.js';
import { applyPending, PendingLog, removePending, resolveBootId, type PendingLogOptions, type PendingReplay } from './pending-log.js';
import { backingInfo, checkGeometry, checkName, decodeMeta, encodeMeta, HEAD_FILE, META_FILE, type ReplicaMeta } from './meta.js';
import { RangeLock } from './range-lock.js';
import type { SharedBackingReaders } from './shared-backing.js';
import { fsStorage, openBackingSource, type StorageDir, type StorageFile } from './storage.js';
import { SyncIoGate, type SyncIoOptions } from '../util/sync-io-gate.js';
import type { ExtentData, ReplicaDevice, ReplicaInfo, WrittenExtents } from './types.js';
import { ioBuffers } from '../util/buffer-pool.js';

export const DEFAULT_BLOCK_SIZE = 4096;

export interface ReplicaStoreOptions {
  /** The directory as a StorageDir (default: the real directory); tests pass a crash-simulating one. */
  storage?: StorageDir;
  journal?: MapJournalOptions;
  /** The pending map log that makes acknowledged writes survive a process crash (boot id, sizes; tests). */
  pending?: PendingLogOptions;
  /** Small head, journal and backing-file I/O on the event-loop thread (storage.ts); `{ maxBytes: 0 }` turns it off. */
  syncIo?: SyncIoOptions;
  /**
   * Who opens the replica, recorded in the directory's lock (`replica.lock`) so a refused second opener can name
   * the holder. The directory is always locked when it is a real directory (no `storage` given).
   */
  holder?: string;
  /** Share the backing file's reader with other replicas of this process (the instance manager's one per file). */
  backingReaders?: SharedBackingReaders;
  /**
   * What UNWRITTEN blocks read as, instead of the backing image: the snapshot layers below this head and the backing
   * image under them (layered.ts). The store neither opens the backing image then nor closes `below`.
   */
  below?: BelowReader;
  signal?: AbortSignal;
}

/** The content under a head: `read` fills `buf` with the bytes at `offset` (the ImageReader read contract). */
export interface BelowReader {
  read(buf: Uint8Array, offset: number, opts?: { signal?: AbortSignal | undefined }): Promise<void>;
}

export interface CreateReplicaOptions extends ReplicaStoreOptions {
  name: string;
  size: number;
  blockSize?: number;
  /** The backing image; `path` absolute or relative to the replica directory. Omit for a blank volume. */
  backing?: { name: string; uuid: string; path: string } | undefined;
}

interface Signal {
  signal?: AbortSignal | undefined;
}

export const LOCK_FILE = 'replica.lock';

/**
 * Locks a real replica directory for this opener (an OS lock that dies with the process: util/file-lock.ts). Two
 * openers of one replica would each keep their own map and overwrite each other's blocks.
 */
export async function lockDir(dir: string, opts: ReplicaStoreOptions): Promise<FileLock | undefined> {
  if (opts.storage) return undefined;
  const r = await FileLock.tryAcquire(join(dir, LOCK_FILE), opts.holder ?? `replica process ${process.pid}`);
  if (r instanceof FileLock) return r;
  throw new ReplicaError('Locked', `Cannot open the replica in ${dir}: it is open by ${describeHolder(r.heldBy)}`);
}

/** The backing image reader, over a source whose small reads go through `gate`; shared when `shared` is given. */
export async function openBacking(path: string, gate: SyncIoGate, signal: AbortSignal | undefined, shared?: SharedBackingReaders): Promise<ImageReader> {
  signal?.throwIfAborted();
  if (shared) return shared.acquire(path, () => openBacking(path, gate, signal));
  const source = await openBackingSource(path, gate);
  try {
    return await openImageReaderOnSource(source, { signal });
  } catch (err) {
    await source.close();
    throw err;
  }
}

export class ReplicaStore implements ReplicaDevice {
  readonly dir: string;
  readonly meta: ReplicaMeta;
  /** What opening found in the map journal (batches replayed, a torn tail, a stale journal) and the pending log. */
  readonly recovery: OpenedMap['replayed'] & { pending: PendingReplay | undefined };
  readonly #head: StorageFile;
  readonly #backing: ImageReader | undefined;
  readonly #below: BelowReader | undefined;
  readonly #map: BlockMap;
  readonly #journal: MapJournal;
  #pending: PendingLog | undefined;
  readonly #lock = new RangeLock();
  readonly #inFlight = new Set<Promise<unknown>>();
  #dirLock: FileLock | undefined;
  #revision: number;
  #failed: unknown;
  #closing: Promise<void> | undefined;
  #runningFlush: Promise<void> | undefined;
  #queuedFlush: Promise<void> | undefined;

  private constructor(dir: string, meta: ReplicaMeta, head: StorageFile, backing: ImageReader | undefined, opened: OpenedMap, pending?: PendingReplay, below?: BelowReader) {
    this.dir = dir;
    this.meta = meta;
    this.recovery = { ...opened.replayed, pending };
    this.#head = head;
    this.#backing = backing;
    this.#below = below ?? backing;
    this.#map = new BlockMap(meta.blockSize, opened.states);
    this.#journal = opened.journal;
    this.#revision = opened.revision;
  }

  /** Create a replica in `dir` (which must not hold one yet). */
  static async create(dir: string, opts: CreateReplicaOptions): Promise<ReplicaStore> {
    const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    checkName('replica name', opts.name);
    checkGeometry(opts.size, blockSize);
    const gate = new SyncIoGate(opts.syncIo);
    const storage = opts.storage ?? (await fsStorage(dir, { gate }));
    const lock = await lockDir(dir, opts);
    let backing: ImageReader | undefined;
    let meta: ReplicaMeta | undefined;
    try {
      if ((await storage.readFile(META_FILE)) !== undefined) {
        throw new ReplicaError('AlreadyExists', `Cannot create replica "${opts.name}" in ${dir}: a replica already exists there`);
      }
      if (opts.backing) {
        checkName('backing image name', opts.backing.name);
        backing = await openBacking(resolve(dir, opts.backing.path), gate, opts.signal, opts.backingReaders);
        if (opts.below) {
          // Its identity is recorded; the reads go through `below`, which holds its own reader.
          await backing.close();
        }
        if (backing.virtualSize > opts.size) {
          throw new ReplicaError('BackingMismatch', `Cannot create replica "${opts.name}": backing image "${opts.backing.name}" is ${backing.virtualSize} bytes, larger than the ${opts.size}-byte volume`);
        }
      }
      meta = {
        version: 1,
        name: opts.name,
        size: opts.size,
        blockSize,
        backing: opts.backing && backing ? { ...opts.backing, format: backing.format, virtualSize: backing.virtualSize } : null,
        createdAt: new Date().toISOString(),
      };
      const head = await storage.open(HEAD_FILE, { create: true });
      // A create interrupted earlier may have left bytes in the head: start from an empty sparse file.
      await head.truncate(0);
      await head.truncate(opts.size);
      await head.datasync();
      const geometry = { blockSize, blockCount: opts.size / blockSize };
      const opened = await MapJournal.create(storage, geometry, opts.journal);
      // Pending files of an earlier replica in this directory would apply to this one: start at epoch 1 afresh.
      await removePending(storage);
      await storage.syncDir();
      await storage.writeFileAtomic(META_FILE, encodeMeta(meta));
      const store = new ReplicaStore(dir, meta, head, opts.below ? undefined : backing, opened, undefined, opts.below);
      store.#dirLock = lock;
      return await store.#startPending(storage, resolveBootId(opts.pending ?? {}), { epoch: 1, slot: 0 }, opts.pending);
    } catch (err) {
      if (!opts.below) await backing?.close();
      await lock?.release();
      throw err;
    }
  }

  /** Open the replica in `dir`, replaying and compacting its map. */
  static async open(dir: string, opts: ReplicaStoreOptions = {}): Promise<ReplicaStore> {
    const gate = new SyncIoGate(opts.syncIo);
    const storage = opts.storage ?? (await fsStorage(dir, { gate }));
    const lock = await lockDir(dir, opts);
    let backing: ImageReader | undefined;
    let head: StorageFile | undefined;
    try {
      const bytes = await storage.readFile(META_FILE);
      if (bytes === undefined) throw new ReplicaError('NotFound', `No replica in ${dir}: ${META_FILE} is missing`);
      const meta = decodeMeta(bytes);
      if (meta.backing && !opts.below) {
        const b = meta.backing;
        backing = await openBacking(resolve(dir, b.path), gate, opts.signal, opts.backingReaders);
        if (backing.format !== b.format || backing.virtualSize !== b.virtualSize) {
          throw new ReplicaError('BackingMismatch', `Cannot open replica "${meta.name}": backing file ${b.path} is ${backing.format} of ${backing.virtualSize} bytes, the replica was created over ${b.format} of ${b.virtualSize} bytes`);
        }
      }
      head = await storage.open(HEAD_FILE, { create: false });
      let headSize = await head.size();
      if (headSize > meta.size) {
        // A growth cut short before its commit (grow.ts): nothing past the old end was ever addressable.
        await head.truncate(meta.size);
        await head.datasync();
        headSize = meta.size;
      }
      if (headSize !== meta.size) {
        throw new ReplicaError('Corrupt', `replica ${dir}: ${HEAD_FILE} is ${headSize} bytes, the volume is ${meta.size}`, { file: HEAD_FILE, offset: 0 });
      }
      opts.signal?.throwIfAborted();
      const geometry = { blockSize: meta.blockSize, blockCount: meta.size / meta.blockSize };
      const bootId = resolveBootId(opts.pending ?? {});
      let pending: Awaited<ReturnType<typeof applyPending>> | undefined;
      const opened = await MapJournal.open(storage, geometry, opts.journal, async (states) => {
        pending = await applyPending(storage, geometry, bootId, states);
        // The applied states are about to become durable map entries: their data must be durable first. (That
        // also makes every write acknowledged before the crash durable, those that changed no state included.)
        if (pending.replay.file !== undefined) await head!.datasync();
        return pending.revision;
      });
      const store = new ReplicaStore(dir, meta, head, backing, opened, pending?.replay, opts.below);
      store.#dirLock = lock;
      return await store.#startPending(storage, bootId, pending?.next ?? { epoch: 1, slot: 0 }, opts.pending);
    } catch (err) {
      await head?.close();
      await backing?.close();
      await lock?.release();
      throw err;
    }
  }

  get size(): number {
    return this.meta.size;
  }

  info(): ReplicaInfo {
    return {
      name: this.meta.name,
      size: this.meta.size,
      blockSize: this.meta.blockSize,
      revision: this.#revision,
      generation: this.#journal.generation,
      backing: backingInfo(this.meta.backing),
    };
  }

  /** Written bytes by state, the journal's size and the current pending log file's (status, tests). */
  stats(): { dataBytes: number; zeroBytes: number; journalBytes: number; pendingBytes: number } {
    const { dataBlocks, zeroBlocks } = this.#map.countWritten();
    const bs = this.meta.blockSize;
    return { dataBytes: dataBlocks * bs, zeroBytes: zeroBlocks * bs, journalBytes: this.#journal.journalBytes, pendingBytes: this.#pending?.bytes ?? 0 };
  }

  read(offset: number, length: number, { signal }: Signal = {}): Promise<Uint8Array> {
    return this.#run('read', offset, length, undefined, async () => {
      signal?.throwIfAborted();
      // Not zero-filled: #readInto writes every byte (data, backing bytes, or zeros for ZERO runs). From the pool: the
      // caller owns the result and may give it back (util/buffer-pool.ts).
      const out = ioBuffers.take(length);
      await this.#readInto(out, offset, signal);
      return out;
    });
  }

  write(offset: number, data: Uint8Array, { fua, signal }: { fua: boolean } & Signal): Promise<void> {
    return this.#run('write', offset, data.byteLength, 'exclusive', async () => {
      signal?.throwIfAborted();
      if (data.byteLength === 0) return;
      const bs = this.meta.blockSize;
      for (const seg of planWrite(offset, data.byteLength, bs)) {
        const part = data.subarray(seg.dataStart, seg.dataEnd);
        if (seg.kind === 'full' || this.#map.get(seg.block) === BlockState.DATA) {
          // Whole blocks, or a DATA block whose other bytes in the head are already true: write as is.
          await this.#head.write(part, seg.kind === 'full' ? seg.block * bs : seg.block * bs + seg.within);
        } else {
          const block = await this.#blockContent(seg.block, signal);
          block.set(part, seg.within);
          await this.#head.write(block, seg.block * bs);
        }
      }
      // Only after the head writes: the map must never point at head bytes that were not written (crash order).
      const first = Math.floor(offset / bs);
      this.#map.set(first, Math.ceil((offset + data.byteLength) / bs) - first, BlockState.DATA);
      this.#revision++;
    }, fua);
  }

  trim(offset: number, length: number, { fua, signal }: { fua: boolean } & Signal): Promise<void> {
    return this.#zero('trim', offset, length, fua, signal);
  }

  writeZeroes(offset: number, length: number, { fua, signal }: { fua: boolean } & Signal): Promise<void> {
    return this.#zero('write zeroes', offset, length, fua, signal);
  }

  /**
   * Make every write acknowledged before this call durable. Concurrent flushes share work: a flush arriving while
   * one runs joins the next one queued behind it, whose snapshot of the map is taken after the caller's writes.
   */
  flush({ signal }: Signal = {}): Promise<void> {
    if (this.#closing) return Promise.reject(this.#closedError('flush'));
    signal?.throwIfAborted();
    return this.#flushGroup();
  }

  writtenExtents({ offset = 0, maxExtents = 1024 }: { offset?: number; maxExtents?: number } = {}): WrittenExtents {
    this.#checkRange('list written extents', offset, 0);
    const bs = this.meta.blockSize;
    const { runs, next } = this.#map.written(Math.floor(offset / bs), Math.max(1, maxExtents));
    return {
      extents: runs.map((r) => ({ offset: r.start * bs, length: r.count * bs, state: r.state === BlockState.DATA ? 'data' : 'zero' })),
      nextOffset: next === undefined ? undefined : next * bs,
    };
  }

  /** The written state of a block-aligned range and the head's bytes of its DATA runs (the rebuild copy unit). */
  readExtent(offset: number, length: number, { signal }: Signal = {}): Promise<ExtentData> {
    const bs = this.meta.blockSize;
    if (offset % bs !== 0 || length % bs !== 0) {
      return Promise.reject(new ReplicaError('OutOfRange', `Cannot read extent ${offset}+${length}: it must be aligned to the ${bs}-byte block size`));
    }
    return this.#run('read extent', offset, length, 'shared', async () => {
      signal?.throwIfAborted();
      const runs: StateRun[] = [...this.#map.runs(offset / bs, (offset + length) / bs)];
      const dataBytes = runs.reduce((n, r) => n + (r.state === BlockState.DATA ? r.count * bs : 0), 0);
      const data = Buffer.allocUnsafe(dataBytes);
      let at = 0;
      const reads: Promise<void>[] = [];
      for (const r of runs) {
        if (r.state !== BlockState.DATA) continue;
        reads.push(this.#readHead(data.subarray(at, at + r.count * bs), r.start * bs));
        at += r.count * bs;
      }
      await Promise.all(reads);
      return { runs: runs.map((r) => ({ length: r.count * bs, state: r.state })), data };
    });
  }

  /** A copy of every block's state (one byte per block): what a snapshot of this head freezes (layered.ts). */
  mapStates(): Uint8Array {
    return this.#map.copyStates();
  }

  /**
   * Take over the blocks of [offset, offset + length) that are still UNWRITTEN here from the layer below, as that
   * layer has them (`extent`: its runs and the bytes of its DATA runs): the purge of the snapshot under this head.
   * Reads return the same bytes before and after, so it is no mutation: the revision stays, and a crash part way
   * leaves a head that holds copies of some of the layer's blocks, which is harmless.
   */
  adopt(offset: number, extent: ExtentData, { signal }: Signal = {}): Promise<void> {
    const bs = this.meta.blockSize;
    const length = extent.runs.reduce((n, r) => n + r.length, 0);
    if (offset % bs !== 0 || length % bs !== 0) {
      return Promise.reject(new ReplicaError('OutOfRange', `Cannot adopt ${offset}+${length}: it must be aligned to the ${bs}-byte block size`));
    }
    return this.#run('adopt', offset, length, 'exclusive', async () => {
      let at = offset / bs;
      let dataAt = 0;
      for (const r of extent.runs) {
        const count = r.length / bs;
        const runData = r.state === BlockState.DATA ? extent.data.subarray(dataAt, dataAt + r.length) : undefined;
        if (runData) dataAt += r.length;
        if (r.state !== BlockState.UNWRITTEN) {
          for (const u of [...this.#map.runs(at, at + count)]) {
            if (u.state !== BlockState.UNWRITTEN) continue;
            signal?.throwIfAborted();
            if (runData) {
              const from = (u.start - at) * bs;
              await this.#head.write(runData.subarray(from, from + u.count * bs), u.start * bs);
            }
            this.#map.set(u.start, u.count, r.state);
          }
        }
        at += count;
      }
    });
  }

  /** Set the revision counter (a rebuilt replica takes its source's); durable at the next flush. */
  setRevision(revision: number): void {
    if (!Number.isSafeInteger(revision) || revision < 0) throw new ReplicaError('InvalidArgument', `revision ${revision} must be a non-negative integer`);
    this.#revision = revision;
  }

  /** Wait for calls in flight, flush, and close the files. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#inFlight]);
      try {
        if (this.#failed === undefined) await this.#flushGroup();
      } finally {
        await Promise.allSettled([this.#journal.close(), this.#head.close(), this.#backing?.close(), this.#pending?.close()]);
        // Last: the directory is free for another opener only once every file of this one is closed.
        await this.#dirLock?.release();
      }
    })();
    return this.#closing;
  }

  /** Begin the pending map log, the last step of create and open; on failure close the journal (callers: the rest). */
  async #startPending(storage: StorageDir, bootId: string | null, next: { epoch: number; slot: PendingSlot }, opts: PendingLogOptions = {}): Promise<this> {
    if (bootId === null) return this;
    try {
      const hooks = { map: this.#map, revision: () => this.#revision, onFull: () => void this.#flushGroup().catch(() => {}) };
      this.#pending = await PendingLog.start(storage, { blockSize: this.meta.blockSize, blockCount: this.#map.blockCount }, bootId, next, hooks, opts);
      return this;
    } catch (err) {
      await this.#journal.close().catch(() => {});
      throw err;
    }
  }

  #zero(what: string, offset: number, length: number, fua: boolean, signal: AbortSignal | undefined): Promise<void> {
    return this.#run(what, offset, length, 'exclusive', async () => {
      signal?.throwIfAborted();
      if (length === 0) return;
      const bs = this.meta.blockSize;
      for (const seg of planWrite(offset, length, bs)) {
        if (seg.kind === 'full') {
          this.#map.set(seg.block, seg.count, BlockState.ZERO);
          continue;
        }
        const state = this.#map.get(seg.block);
        if (state === BlockState.ZERO) continue;
        const n = seg.dataEnd - seg.dataStart;
        const block = state === BlockState.DATA ? undefined : await this.#blockContent(seg.block, signal);
        if (block === undefined) {
          await this.#head.write(new Uint8Array(n), seg.block * bs + seg.within);
        } else {
          block.fill(0, seg.within, seg.within + n);
          // A backing block that is now all zeros needs no head bytes at all.
          if (block.every((b) => b === 0)) {
            this.#map.set(seg.block, 1, BlockState.ZERO);
            continue;
          }
          await this.#head.write(block, seg.block * bs);
        }
        this.#map.set(seg.block, 1, BlockState.DATA);
      }
      this.#revision++;
    }, fua);
  }

  /**
   * Common frame of every I/O call: checks, the range lock (taken synchronously, before any await, so requests
   * handed over in order are applied in order), tracking for close(), and FUA as a flush after the operation.
   */
  #run<T>(what: string, offset: number, length: number, lock: 'shared' | 'exclusive' | undefined, op: () => Promise<T>, fua = false): Promise<T> {
    try {
      if (this.#closing) throw this.#closedError(what);
      this.#checkFailed(what);
      this.#checkRange(what, offset, length);
    } catch (err) {
      return Promise.reject(err);
    }
    const bs = this.meta.blockSize;
    const locked = lock && this.#lock.acquire(Math.floor(offset / bs), Math.ceil((offset + length) / bs), lock);
    const p = (async () => {
      const release = await locked;
      let result: T;
      try {
        result = await op();
      } finally {
        release?.();
      }
      // A mutation is acknowledged only once its map change is in the pending log (pending-log.ts, point 2).
      const recorded = lock === 'exclusive' ? this.#pending?.settle() : undefined;
      if (recorded) await recorded.catch((err: unknown) => this.#fail('record map changes', err));
      if (fua) await this.#flushGroup();
      return result;
    })();
    this.#inFlight.add(p);
    const done = (): void => void this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  #flushGroup(): Promise<void> {
    if (this.#queuedFlush) return this.#queuedFlush;
    const before = this.#runningFlush ?? Promise.resolve();
    const p = before
      .catch(() => {})
      .then(() => {
        this.#queuedFlush = undefined;
        this.#runningFlush = p;
        return this.#flushOnce();
      })
      .finally(() => {
        if (this.#runningFlush === p) this.#runningFlush = undefined;
      });
    this.#queuedFlush = p;
    return p;
  }

  /** Snapshot the map changes, fdatasync the head, then commit the snapshot (map-journal.ts, point 2). */
  async #flushOnce(): Promise<void> {
    this.#checkFailed('flush');
    const revision = this.#revision;
    if (!this.#map.hasDirty && revision === this.#journal.revision) return;
    const runs = this.#map.takeDirty();
    try {
      await this.#head.datasync();
      await this.#journal.commit(runs, revision);
      await this.#pending?.afterCommit();
    } catch (err) {
      // After a failed fdatasync the page cache may have dropped the data: nothing about the head can be trusted.
      this.#failed = err;
      this.#map.restoreDirty(runs);
      throw new ReplicaError('Failed', `Cannot flush replica "${this.meta.name}": ${(err as Error).message}`, { cause: err });
    }
  }

  /** Fill every byte of `out` with the volume's content at `offset` (`out` may hold garbage on entry). */
  async #readInto(out: Uint8Array, offset: number, signal: AbortSignal | undefined): Promise<void> {
    const bs = this.meta.blockSize;
    const end = offset + out.length;
    const jobs: Promise<unknown>[] = [];
    for (const run of this.#map.runs(Math.floor(offset / bs), Math.ceil(end / bs))) {
      const a = Math.max(offset, run.start * bs);
      const b = Math.min(end, (run.start + run.count) * bs);
      const slice = out.subarray(a - offset, b - offset);
      if (run.state === BlockState.DATA) jobs.push(this.#readHead(slice, a));
      else if (run.state === BlockState.UNWRITTEN && this.#below) jobs.push(this.#below.read(slice, a, { signal }));
      else slice.fill(0);
    }
    if (jobs.length === 1) await jobs[0];
    else await Promise.all(jobs);
  }

  async #readHead(buf: Uint8Array, position: number): Promise<void> {
    const n = await this.#head.read(buf, position);
    if (n < buf.length) buf.fill(0, n);
  }

  /** A fresh copy of one block's current content, as a read would return it. */
  async #blockContent(block: number, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const bs = this.meta.blockSize;
    const buf = Buffer.allocUnsafe(bs);
    await this.#readInto(buf, block * bs, signal);
    return buf;
  }

  #checkRange(what: string, offset: number, length: number): void {
    const ok = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.meta.size;
    if (!ok) throw new ReplicaError('OutOfRange', `Cannot ${what} ${offset}+${length} on replica "${this.meta.name}": outside the ${this.meta.size}-byte volume`);
  }

  /** A pending-log append failed: the map changes since can no longer be promised to survive, so stop. */
  #fail(what: string, err: unknown): never {
    this.#failed ??= err;
    throw new ReplicaError('Failed', `Cannot ${what} on replica "${this.meta.name}": ${(err as Error).message}`, { cause: err });
  }

  #checkFailed(what: string): void {
    if (this.#failed !== undefined) {
      throw new ReplicaError('Failed', `Cannot ${what} on replica "${this.meta.name}": an earlier flush failed`, { cause: this.#failed });
    }
  }

  #closedError(what: string): ReplicaError {
    return new ReplicaError('Closed', `Cannot ${what} on replica "${this.meta.name}": it is closed`);
  }
}
