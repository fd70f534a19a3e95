// The pending map log: what makes acknowledged writes survive a process crash (kill -9, OOM kill, a panic) without
// an fsync per write. Power-loss durability stays as NBD defines it, at FLUSH and FUA (map-journal.ts).
//
// The gap it closes: a write's bytes reach the head's page cache before it is acknowledged, but the map change that
// makes them readable (a block going UNWRITTEN → DATA, or to ZERO) only reached the journal at the next flush. A
// process that died in between lost the change, and the block read the backing image again although its bytes were
// in the file. Now every map change is appended, without fsync, to a small side file before the write that made it
// is acknowledged. The page cache outlives the process, so on a reopen in the same boot both the head bytes and the
// record are there; the head bytes were written first, so no record can point at head bytes that were never
// written.
//
//   1. Records hold states, not deltas: each carries the *current* state of every block changed since the previous
//      record (BlockMap.takeVolatile, a change list apart from the flush's). Applying a file's records in order on
//      top of the durable map (checkpoint + journal) therefore gives, for every block, the state of its latest
//      recorded change, even where a journal batch was committed after the file's epoch began.
//   2. Every acknowledged mutation waits for the append holding its change (settle). One that changed no state (a
//      rewrite of DATA blocks) appends nothing, but still waits for an append already queued or running, which may
//      hold the change an earlier, not yet acknowledged write made to its blocks. Writes of one event-loop turn share
//      one append (group commit, scheduled with setImmediate). Appends are serialised, each issued after the previous
//      returned, so a crash can cut only the last one; replay stops at the first record that is torn or invalid.
//   3. Each file starts with a header holding the machine's boot id and an epoch number. Open replays checkpoint and
//      journal, then, only when the boot id of the newest valid file matches this boot's, applies its records. After
//      a reboot (a power loss, or a kernel crash) the page cache is gone and the records may point at head bytes that
//      never reached the disk, so they are ignored: unflushed writes may be lost, as NBD allows, and the invariant
//      of map-journal.ts holds (a block never reads data that was never written). Before open compacts the map into
//      a new checkpoint the head is fdatasynced, so the applied states become durable together with their data.
//   4. Epochs and rotation: the log alternates between two files. A rotation writes the other file afresh (truncate,
//      then header and a first record in one write): the next epoch, whose first record holds the current state of
//      every block changed since the snapshot of the last journal commit (and of every change not yet appended).
//      With the journal holding everything up to that snapshot, the new file alone covers everything since.
//      Rotations happen after a journal commit (the only time the durable map moves), and only when the file has
//      grown past `rotateBytes`: a file not rotated keeps covering every change since its epoch began (point 1), so
//      rotating is for size, never for correctness. A crash before the new file's first record is whole leaves it
//      invalid and the old one newest: still correct, because no write was acknowledged through the new one. Past
//      `maxBytes` the owner runs a flush, which rotates.
//   5. Every open starts a new epoch (one above any seen) in the file not holding the one it applied, so a file
//      from an earlier run is stale by epoch from then on. Without a boot id (not Linux) there is no pending log:
//      both files are removed, so none can be applied later over a newer map.

import { readFileSync } from 'node:fs';
import type { BlockMap, StateRun } from './block-map.js';
import { ReplicaError } from './errors.js';
import type { MapGeometry } from './map-format.js';
import { decodePending, encodePendingHeader, encodePendingRecord, PENDING_FILES, type DecodedPending, type PendingSlot } from './pending-format.js';
import type { StorageDir, StorageFile } from './storage.js';

export interface PendingLogOptions {
  /**
   * This boot's id (default: /proc/sys/kernel/random/boot_id). Tests inject one; a different one on reopen models
   * a reboot. `null` turns the pending log off: only FLUSH/FUA make writes survive anything.
   */
  bootId?: string | null;
  /** After a journal commit, rotate to the other file when this one has grown past this (default 1 MiB). */
  rotateBytes?: number;
  /** Past this size the owner is asked to flush, which rotates (default 16 MiB). */
  maxBytes?: number;
}

/** What open found in the pending files. */
export interface PendingReplay {
  /** The file whose records were applied, if any. */
  file: string | undefined;
  epoch: number;
  /** Records applied, and bytes after the last valid one. */
  records: number;
  tornBytes: number;
  /** The newest file was written in another boot, so none was applied. */
  otherBoot: boolean;
}

const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/** This machine's boot id, or null where the kernel does not say (not Linux). */
export function readBootId(): string | null {
  try {
    return readFileSync(BOOT_ID_FILE, 'ascii').trim() || null;
  } catch {
    return null;
  }
}

export function resolveBootId(opts: PendingLogOptions): string | null {
  return opts.bootId === undefined ? readBootId() : opts.bootId;
}

export interface AppliedPending {
  replay: PendingReplay;
  /** The revision of the last record applied, if any. */
  revision: number | undefined;
  /** Where the next epoch goes. */
  next: { epoch: number; slot: PendingSlot };
}

/** Remove both pending files (a new replica, or no pending log: none may be applied later over a newer map). */
export async function removePending(storage: StorageDir): Promise<void> {
  for (const name of PENDING_FILES) await storage.remove(name);
}

/**
 * Apply the newest valid pending file's records to `states` (point 3), if it was written in this boot. When it was
 * (`replay.file` set), the caller must fdatasync the head before the states become durable.
 */
export async function applyPending(storage: StorageDir, geometry: MapGeometry, bootId: string | null, states: Uint8Array): Promise<AppliedPending> {
  const replay: PendingReplay = { file: undefined, epoch: 0, records: 0, tornBytes: 0, otherBoot: false };
  const none = { replay, revision: undefined };
  if (bootId === null) {
    await removePending(storage);
    return { ...none, next: { epoch: 1, slot: 0 } };
  }
  let maxEpoch = 0;
  let newest: { slot: PendingSlot; decoded: DecodedPending } | undefined;
  for (const slot of [0, 1] as const) {
    const name = PENDING_FILES[slot];
    const bytes = await storage.readFile(name);
    if (bytes === undefined) continue;
    const decoded = decodePending(bytes, geometry, name);
    if ('invalid' in decoded) continue;
    maxEpoch = Math.max(maxEpoch, decoded.header.epoch);
    // A file whose first record is not whole was cut while being written: its epoch never began (point 4).
    if (decoded.records.length === 0) continue;
    if (!newest || decoded.header.epoch > newest.decoded.header.epoch) newest = { slot, decoded };
  }
  const next = { epoch: maxEpoch + 1, slot: (newest ? 1 - newest.slot : 0) as PendingSlot };
  if (!newest) return { ...none, next };
  const { header, records, tornBytes } = newest.decoded;
  if (header.bootId !== bootId) return { replay: { ...replay, epoch: header.epoch, otherBoot: true }, revision: undefined, next };
  for (const r of records) for (const run of r.runs) states.fill(run.state, run.start, run.start + run.count);
  return {
    replay: { file: PENDING_FILES[newest.slot], epoch: header.epoch, records: records.length, tornBytes, otherBoot: false },
    revision: records[records.length - 1]!.revision,
    next,
  };
}

export interface PendingLogHooks {
  map: BlockMap;
  revision: () => number;
  /** The file passed maxBytes: flush (which rotates). */
  onFull: () => void;
}

export class PendingLog {
  readonly #geometry: MapGeometry;
  readonly #bootId: string;
  readonly #files: readonly [StorageFile, StorageFile];
  readonly #hooks: PendingLogHooks;
  readonly #rotateBytes: number;
  readonly #maxBytes: number;
  #slot: PendingSlot;
  #epoch: number;
  #seq = 1;
  #length = 0;
  #askedToFlush = false;
  /** The last operation queued (append or rotation); operations run one after another. */
  #last: Promise<void> = Promise.resolve();
  #queued = 0;
  /** An append queued and not yet started: changes made until it starts go into it. */
  #next: Promise<void> | undefined;
  #failed: unknown;
  #closed = false;

  private constructor(geometry: MapGeometry, bootId: string, files: [StorageFile, StorageFile], next: { epoch: number; slot: PendingSlot }, hooks: PendingLogHooks, opts: PendingLogOptions) {
    this.#geometry = geometry;
    this.#bootId = bootId;
    this.#files = files;
    this.#hooks = hooks;
    // The slot and epoch before the first: #startEpoch moves to `next`.
    this.#slot = (1 - next.slot) as PendingSlot;
    this.#epoch = next.epoch - 1;
    this.#rotateBytes = opts.rotateBytes ?? 1024 * 1024;
    this.#maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  }

  /** Open both files and begin epoch `next.epoch` in `next.slot` (point 5). */
  static async start(storage: StorageDir, geometry: MapGeometry, bootId: string, next: { epoch: number; slot: PendingSlot }, hooks: PendingLogHooks, opts: PendingLogOptions = {}): Promise<PendingLog> {
    const files: StorageFile[] = [];
    try {
      for (const name of PENDING_FILES) files.push(await storage.open(name, { create: true }));
      const log = new PendingLog(geometry, bootId, files as [StorageFile, StorageFile], next, hooks, opts);
      await log.#startEpoch([]);
      return log;
    } catch (err) {
      await Promise.allSettled(files.map((f) => f.close()));
      throw err;
    }
  }

  /** Bytes in the current file (tests, status). */
  get bytes(): number {
    return this.#length;
  }

  get epoch(): number {
    return this.#epoch;
  }

  /**
   * A promise that settles once every map change made so far is in the current file (point 2), or undefined when
   * that is already so. Rejects when an append failed.
   */
  settle(): Promise<void> | undefined {
    if (this.#failed !== undefined) return Promise.reject(this.#failedError());
    if (this.#hooks.map.hasVolatile) {
      this.#next ??= this.#enqueue(() => {
        this.#next = undefined;
        return this.#append();
      }, true);
      return this.#next;
    }
    return this.#queued > 0 ? this.#last : undefined;
  }

  /**
   * Called after every journal commit, before the flush is acknowledged: start the next epoch in the other file
   * when this one is big enough (point 4).
   */
  afterCommit(): Promise<void> {
    if (this.#length < Math.min(this.#rotateBytes, this.#maxBytes)) return Promise.resolve();
    return this.#enqueue(() => this.#startEpoch(this.#hooks.map.takeVolatile(true)), false);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#last.catch(() => {});
    await Promise.allSettled(this.#files.map((f) => f.close()));
  }

  #enqueue(op: () => Promise<void> | void, groupCommit: boolean): Promise<void> {
    const previous = this.#last;
    this.#queued++;
    const p = (async () => {
      try {
        await previous.catch(() => {});
        // Let the other writes of this event-loop turn put their changes in the same record.
        if (groupCommit) await new Promise((r) => setImmediate(r));
        if (this.#failed !== undefined) throw this.#failedError();
        if (this.#closed) throw new ReplicaError('Closed', 'cannot append to the pending map log: it is closed');
        await op();
      } catch (err) {
        this.#failed ??= err;
        throw err;
      } finally {
        this.#queued--;
      }
    })();
    p.catch(() => {}); // callers that wait see the rejection; nobody waiting is no unhandled rejection
    this.#last = p;
    return p;
  }

  async #append(): Promise<void> {
    const runs = this.#hooks.map.takeVolatile();
    if (runs.length === 0) return;
    const record = encodePendingRecord(this.#epoch, { seq: this.#seq, revision: this.#hooks.revision(), runs });
    const at = this.#length;
    this.#seq++;
    this.#length += record.length;
    await this.#files[this.#slot].write(record, at);
    if (this.#length >= this.#maxBytes && !this.#askedToFlush) {
      this.#askedToFlush = true;
      this.#hooks.onFull();
    }
  }

  /** Write the next epoch into the other file: truncate, then header and first record in one write. */
  async #startEpoch(runs: StateRun[]): Promise<void> {
    const slot = (1 - this.#slot) as PendingSlot;
    const epoch = this.#epoch + 1;
    const header = encodePendingHeader({ ...this.#geometry, epoch, bootId: this.#bootId });
    const record = encodePendingRecord(epoch, { seq: 1, revision: this.#hooks.revision(), runs });
    const bytes = new Uint8Array(header.length + record.length);
    bytes.set(header);
    bytes.set(record, header.length);
    const file = this.#files[slot];
    // Truncated first: bytes of an older epoch beyond the new record would be ignored anyway (records carry their
    // epoch), but they would be read at every open.
    await file.truncate(0);
    await file.write(bytes, 0);
    this.#slot = slot;
    this.#epoch = epoch;
    this.#seq = 2;
    this.#length = bytes.length;
    this.#askedToFlush = false;
  }

  #failedError(): ReplicaError {
    return new ReplicaError('Failed', `Cannot record map changes in the pending map log: ${(this.#failed as Error).message}`, { cause: this.#failed });
  }
}
