// The persisted written-block map: a checkpoint plus an append-only journal, kept crash-consistent with the head.
//
// Why it is crash-consistent (the invariant: after any crash, every block the map claims DATA has durable data):
//   1. A write puts its bytes in the head (page cache) and only then marks its blocks DATA in the in-memory map.
//   2. A flush first takes the changed blocks' current states (BlockMap.takeDirty), then fdatasyncs the head, and
//      only then appends one batch with those states to the journal and fsyncs the journal. Every block named DATA
//      in the batch was written before step 2's fdatasync began, so its data is durable before the batch can be.
//   3. A batch is whole or absent: it is sector-padded and checksummed, appends are serialised and each is synced
//      before the next begins, so only the last one can be torn, and a torn batch is dropped on open (a flush that
//      never returned). Damage before a later valid batch is refused instead (decodeJournal).
//   4. The checkpoint is only ever replaced whole (temp file, fdatasync, rename, directory fsync). Compaction writes
//      checkpoint generation G+1 holding the durable map, then replaces the journal with an empty one of generation
//      G+1. A crash in between leaves a G journal next to a G+1 checkpoint; a journal whose generation differs from
//      the checkpoint's is ignored, which is right because the checkpoint already holds its batches.
//   5. ZERO needs no data at all, and a block going back from DATA to ZERO or UNWRITTEN never needs head data, so
//      every state a batch can record is safe once the batch is durable.
// Writes that were acknowledged but not flushed may be lost or torn at a power loss (or any reboot), as on any disk
// with a volatile cache; what is never possible is a block reading data that was never written (a sparse head's
// zeros, or half of a read-modify-write merged with nothing).
//
// A process crash is another matter: the page cache survives it, so every acknowledged write must read back. The
// journal alone cannot promise that (a block's first write reaches it only at the next flush); the pending map log
// does (pending-log.ts): each map change is appended to it, unsynced, before its write is acknowledged, and open
// applies it on top of this journal's replay (the `beforeCompact` step), only in the boot that wrote it, and after
// an fdatasync of the head, so that what it adds to the durable map keeps point 2's guarantee.

import { type StateRun } from './block-map.js';
import { ReplicaError } from './errors.js';
import {
  CHECKPOINT_FILE,
  decodeCheckpoint,
  decodeJournal,
  decodeJournalHeader,
  encodeBatch,
  encodeCheckpoint,
  encodeJournalHeader,
  JOURNAL_FILE,
  SECTOR,
  type MapGeometry,
} from './map-format.js';
import type { StorageDir, StorageFile } from './storage.js';

export interface MapJournalOptions {
  /** Journal size that triggers a compaction after a commit (default 64 MiB). */
  compactBytes?: number;
}

export interface OpenedMap {
  journal: MapJournal;
  /** The durable map (one state byte per block), a copy the caller owns as its live map. */
  states: Uint8Array;
  revision: number;
  /** What open found: batches replayed and bytes of a torn tail dropped. */
  replayed: { batches: number; tornBytes: number; staleJournal: boolean };
}

export class MapJournal {
  readonly #storage: StorageDir;
  readonly #geometry: MapGeometry;
  readonly #compactBytes: number;
  readonly #durable: Uint8Array;
  #file: StorageFile;
  #length: number;
  #generation: number;
  #nextSeq: number;
  #revision: number;
  #closed = false;

  private constructor(storage: StorageDir, geometry: MapGeometry, file: StorageFile, durable: Uint8Array, state: { length: number; generation: number; nextSeq: number; revision: number }, opts: MapJournalOptions) {
    this.#storage = storage;
    this.#geometry = geometry;
    this.#file = file;
    this.#durable = durable;
    this.#length = state.length;
    this.#generation = state.generation;
    this.#nextSeq = state.nextSeq;
    this.#revision = state.revision;
    this.#compactBytes = opts.compactBytes ?? 64 * 1024 * 1024;
  }

  /** A new, empty map (generation 1) in `storage`. */
  static async create(storage: StorageDir, geometry: MapGeometry, opts: MapJournalOptions = {}): Promise<OpenedMap> {
    const durable = new Uint8Array(geometry.blockCount);
    const state = { generation: 1, nextSeq: 1, revision: 0 };
    await storage.writeFileAtomic(CHECKPOINT_FILE, encodeCheckpoint({ ...geometry, ...state, states: durable }));
    await storage.writeFileAtomic(JOURNAL_FILE, encodeJournalHeader({ ...geometry, generation: 1 }));
    const file = await storage.open(JOURNAL_FILE, { create: false });
    const journal = new MapJournal(storage, geometry, file, durable, { ...state, length: SECTOR }, opts);
    return { journal, states: new Uint8Array(durable), revision: 0, replayed: { batches: 0, tornBytes: 0, staleJournal: false } };
  }

  /**
   * Load checkpoint and journal, replay, and compact into a fresh generation. `beforeCompact` may change the
   * replayed map first (the pending map log, pending-log.ts): whatever it leaves becomes the durable map, so every
   * DATA block it adds must have durable data before it returns. It may return a newer revision.
   */
  static async open(storage: StorageDir, geometry: MapGeometry, opts: MapJournalOptions = {}, beforeCompact?: (states: Uint8Array) => Promise<number | undefined>): Promise<OpenedMap> {
    const ckptBytes = await storage.readFile(CHECKPOINT_FILE);
    if (ckptBytes === undefined) {
      throw new ReplicaError('Corrupt', `replica ${storage.location} has no ${CHECKPOINT_FILE}`, { file: CHECKPOINT_FILE, offset: 0 });
    }
    const ckpt = decodeCheckpoint(ckptBytes, geometry);
    const durable = ckpt.states;
    let { revision, nextSeq } = ckpt;
    let batches = 0;
    let tornBytes = 0;
    let staleJournal = false;
    const journalBytes = await storage.readFile(JOURNAL_FILE);
    if (journalBytes !== undefined) {
      if (decodeJournalHeader(journalBytes, geometry).generation !== ckpt.generation) staleJournal = true;
      else {
        const decoded = decodeJournal(journalBytes, { ...geometry, nextSeq });
        for (const b of decoded.batches) {
          for (const r of b.runs) durable.fill(r.state, r.start, r.start + r.count);
          revision = b.revision;
          nextSeq = b.seq + 1;
        }
        batches = decoded.batches.length;
        tornBytes = decoded.tornBytes;
      }
    }
    const newer = await beforeCompact?.(durable);
    if (newer !== undefined && newer > revision) revision = newer;
    const generation = ckpt.generation + 1;
    await MapJournal.#writeGeneration(storage, geometry, { generation, nextSeq, revision }, durable);
    const file = await storage.open(JOURNAL_FILE, { create: false });
    const journal = new MapJournal(storage, geometry, file, durable, { length: SECTOR, generation, nextSeq, revision }, opts);
    return { journal, states: new Uint8Array(durable), revision, replayed: { batches, tornBytes, staleJournal } };
  }

  static async #writeGeneration(storage: StorageDir, geometry: MapGeometry, s: { generation: number; nextSeq: number; revision: number }, durable: Uint8Array): Promise<void> {
    // Order matters (point 4 above): the checkpoint first, then the journal that continues it.
    await storage.writeFileAtomic(CHECKPOINT_FILE, encodeCheckpoint({ ...geometry, ...s, states: durable }));
    await storage.writeFileAtomic(JOURNAL_FILE, encodeJournalHeader({ ...geometry, generation: s.generation }));
  }

  /** The checkpoint generation: it grows at every open and compaction. */
  get generation(): number {
    return this.#generation;
  }

  /** The revision counter as last made durable. */
  get revision(): number {
    return this.#revision;
  }

  get journalBytes(): number {
    return this.#length;
  }

  /**
   * Append one batch and make it durable. The caller must have made the head's data for every DATA run durable
   * first (point 2 above). A failure leaves the journal in an unknown state: the caller must stop using it.
   */
  async commit(runs: readonly StateRun[], revision: number): Promise<void> {
    if (this.#closed) throw new ReplicaError('Closed', 'cannot commit map changes: the map journal is closed');
    const changed = this.#changedOnly(runs);
    if (changed.length === 0 && revision === this.#revision) return;
    const batch = encodeBatch({ seq: this.#nextSeq, revision, runs: changed });
    await this.#file.write(batch, this.#length);
    await this.#file.datasync();
    this.#length += batch.length;
    this.#nextSeq++;
    this.#revision = revision;
    for (const r of changed) this.#durable.fill(r.state, r.start, r.start + r.count);
    if (this.#length >= this.#compactBytes) await this.compact();
  }

  /** The parts of `runs` that differ from the durable map: rewriting a DATA block again needs no new entry. */
  #changedOnly(runs: readonly StateRun[]): StateRun[] {
    const out: StateRun[] = [];
    const durable = this.#durable;
    for (const r of runs) {
      const end = r.start + r.count;
      let at = r.start;
      while (at < end) {
        while (at < end && durable[at] === r.state) at++;
        const from = at;
        while (at < end && durable[at] !== r.state) at++;
        if (at > from) out.push({ start: from, count: at - from, state: r.state });
      }
    }
    return out;
  }

  /** Fold the journal into a new checkpoint and start an empty journal (bounded journal size, fast open). */
  async compact(): Promise<void> {
    const generation = this.#generation + 1;
    await MapJournal.#writeGeneration(this.#storage, this.#geometry, { generation, nextSeq: this.#nextSeq, revision: this.#revision }, this.#durable);
    const old = this.#file;
    this.#file = await this.#storage.open(JOURNAL_FILE, { create: false });
    this.#generation = generation;
    this.#length = SECTOR;
    await old.close();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#file.close();
  }
}
