// The per-disk backing-image manager: owns `<disk>/backing-images/`, runs one job per file (fetch, sync or
// re-verification), fails any non-terminal state that outlives its deadline, and serves ready files to peers.
// Requests are idempotent: asking again for what is running or ready returns its state, asking again for a failed
// file starts over (reusing verified partial data).

import { clusterAuthHeaders } from '../auth/index.js';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TokenBucket } from './bucket.js';
import { BimError, isBimError, messageOf } from './errors.js';
import { allocatedBytes, identityOf, sameIdentity } from './fsutil.js';
import { fsyncDir } from '../util/disk.js';
import { runFetch, type FetchRequest } from './fetch.js';
import { DEFAULT_CHUNK_SIZE } from './manifest.js';
import { DiskLayout, FILES, OWNER_FILE, fileDirName } from './names.js';
import { runVerify, scanDisk } from './scan.js';
import { runScrub, type ScrubRequest } from './scrub.js';
import { Sender } from './sender.js';
import { DEFAULT_TIMEOUTS, systemClock, type Clock, type Timeouts } from './states.js';
import { BimStats } from './stats.js';
import { removePartial, runSync, type SyncContext, type SyncRequest } from './sync.js';
import { FileRecord, FileTable, type FileInfo, type Job } from './table.js';
import { abandonOnAbort } from '../util/abandon.js';

/** How long GET /v1/files waits for a file's allocated size before answering with the last known one. */
const REAL_SIZE_WAIT_MS = 1000;

export interface ManagerOptions {
  disk: string;
  diskUUID: string;
  /** The cluster secret: peers are asked with the cluster credential, and the server requires it. */
  clusterSecret: string;
  maxConcurrentSends?: number;
  /** Bytes per second for everything the manager sends (chunks and downloads); none when undefined. */
  bandwidthLimit?: number | undefined;
  chunkSize?: number;
  /** Chunks a sync fetches at once. */
  parallelChunks?: number;
  chunkIdleMs?: number;
  /** How long a receiver waits for a manifest its peers are computing (default: sync.ts manifestWaitMs). */
  manifestWaitMs?: number;
  timeouts?: Partial<Timeouts>;
  clock?: Clock;
  /** How often deadlines are checked (ms). */
  tickMs?: number;
  /** Aborts opening (the start-up scan). */
  signal?: AbortSignal | undefined;
  /** This manager's image (the catalog name its pod runs); recorded in the folder, see takeOver. */
  image?: string | undefined;
}

/** Reads `<disk>/longhorn-disk.cfg` and refuses a disk whose UUID is not `diskUUID`. */
export async function checkDiskIdentity(layout: DiskLayout, diskUUID: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(layout.configPath, 'utf8');
  } catch (err) {
    throw new BimError('DiskMismatch', `cannot read ${layout.configPath} (${messageOf(err)}); is ${layout.disk} a disk prepared by the node agent?`, { cause: err });
  }
  let cfg: { diskUUID?: unknown };
  try {
    cfg = JSON.parse(text) as { diskUUID?: unknown };
  } catch (err) {
    throw new BimError('DiskMismatch', `${layout.configPath} is not JSON: ${messageOf(err)}`);
  }
  if (cfg.diskUUID !== diskUUID) {
    throw new BimError('DiskMismatch', `${layout.configPath} names disk ${JSON.stringify(cfg.diskUUID)}, but this manager was started for disk ${diskUUID}; refusing to manage another disk's files`);
  }
}

/**
 * An upgrade hands the folder to a manager of a new image (Longhorn's backing-image-manager take-over). Ready files
 * were re-adopted by the scan without being read; a copy found half-received was left by the old manager, whose
 * sync state is gone: it is failed here (its partial data kept), and the controller syncs it again after its
 * backoff. A restart of the same image (no take-over) keeps such copies pending for a resume instead.
 */
async function takeOver(layout: DiskLayout, image: string, records: FileRecord[]): Promise<void> {
  const file = join(layout.images, OWNER_FILE);
  let previous: string | undefined;
  try {
    previous = (JSON.parse(await readFile(file, 'utf8')) as { image?: string }).image;
  } catch {
    // None yet (a new disk, or a manager from before owners were recorded): nothing is taken over.
  }
  if (previous !== undefined && previous !== image) {
    for (const rec of records) {
      if (rec.state !== 'pending' || rec.waitingFor !== 'a restart') continue;
      rec.state = 'failed';
      rec.waitingFor = undefined;
      rec.message = `taken over from the manager of image ${previous} while in progress (${rec.processedSize} of ${rec.size} bytes): failed; synced again after the backoff`;
    }
  }
  if (previous !== image) {
    await writeFile(`${file}.tmp`, JSON.stringify({ image }));
    await rename(`${file}.tmp`, file);
    await fsyncDir(layout.images);
  }
}

export class BackingImageManager {
  readonly layout: DiskLayout;
  readonly diskUUID: string;
  readonly stats = new BimStats();
  readonly table: FileTable;
  readonly sender: Sender;
  readonly #timeouts: Timeouts;
  readonly #ctx: SyncContext;
  readonly #ticker: NodeJS.Timeout;
  #closing = false;
  #ticks = 0;
  #checking = false;

  private constructor(opts: ManagerOptions) {
    this.layout = new DiskLayout(opts.disk);
    this.diskUUID = opts.diskUUID;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.table = new FileTable({ clock: opts.clock ?? systemClock });
    const bucket = opts.bandwidthLimit ? new TokenBucket(opts.bandwidthLimit) : undefined;
    this.sender = new Sender({
      layout: this.layout,
      table: this.table,
      stats: this.stats,
      maxConcurrentSends: opts.maxConcurrentSends ?? 3,
      bucket,
      onSuspect: (rec, why) => this.#suspect(rec, why),
    });
    this.#ctx = {
      layout: this.layout,
      table: this.table,
      stats: this.stats,
      diskUUID: this.diskUUID,
      peerHeaders: clusterAuthHeaders(opts.clusterSecret),
      chunkSize: opts.chunkSize ?? DEFAULT_CHUNK_SIZE,
      parallel: opts.parallelChunks ?? 8,
      chunkIdleMs: opts.chunkIdleMs ?? 30_000,
      manifestTimeoutMs: 30_000,
      ...(opts.manifestWaitMs === undefined ? {} : { manifestWaitMs: opts.manifestWaitMs }),
      // Every 256 MiB or half a second: each checkpoint is an fdatasync of the partial file, and one every 64 MiB held
      // a fast sync to the disk's pace; a crash loses at most that much, fetched again.
      checkpointChunks: 64,
      checkpointMs: 500,
    };
    this.#ticker = setInterval(() => this.#checkDeadlines(), opts.tickMs ?? 1000);
    this.#ticker.unref();
  }

  /** Checks the disk, scans it, and starts re-verifying files whose identity changed. */
  static async open(opts: ManagerOptions): Promise<BackingImageManager> {
    const layout = new DiskLayout(opts.disk);
    await checkDiskIdentity(layout, opts.diskUUID);
    await mkdir(layout.images, { recursive: true });
    opts.signal?.throwIfAborted();
    const m = new BackingImageManager(opts);
    let scan;
    try {
      scan = await scanDisk(m.#ctx, { signal: opts.signal });
    } catch (err) {
      await m.close();
      throw err;
    }
    if (opts.image) await takeOver(layout, opts.image, scan.records);
    for (const rec of scan.records) m.table.add(rec);
    // One at a time: re-hashing several files at once only makes them all slow.
    let chain = Promise.resolve();
    for (const { rec, meta } of scan.toVerify) {
      chain = chain.then(() => {
        // A request may have taken the file over meanwhile (a sync replacing it): then it is not ours to verify.
        if (m.#closing || m.table.get(rec.key) !== rec || rec.job || rec.state !== 'unknown') return;
        return m.#startJob(rec, 'verify', (signal) => runVerify(m.#ctx, rec, meta, signal)).done;
      });
    }
    return m;
  }

  async list(): Promise<FileInfo[]> {
    const recs = this.table.all();
    await Promise.all(recs.map((r) => this.#refreshRealSize(r)));
    return recs.map((r) => r.info());
  }

  async get(name: string, uuid?: string): Promise<FileInfo> {
    const rec = this.table.find(name, uuid);
    await this.#refreshRealSize(rec);
    return rec.info();
  }

  /** The file's allocated bytes, as of now; the last known value when the disk does not answer at once (hung). */
  async #refreshRealSize(rec: FileRecord): Promise<void> {
    if (!rec.uuid) return;
    const file = rec.state === 'ready' ? FILES.backing : FILES.partial;
    try {
      rec.realSize = await abandonOnAbort(allocatedBytes(join(this.layout.images, rec.key, file)), AbortSignal.timeout(REAL_SIZE_WAIT_MS));
    } catch {
      // A request about the file is answered all the same: what it says of the state matters more.
    }
  }

  /** Starts (or joins) receiving a copy from peers. `started` is false when nothing new had to be done. */
  startSync(req: SyncRequest): { info: FileInfo; started: boolean } {
    const rec = this.#prepare(req.name, req.uuid, 'sync', req.expectedChecksum, req.size);
    if (!rec) return { info: this.table.find(req.name, req.uuid).info(), started: false };
    rec.size = req.size;
    rec.expectedChecksum = req.expectedChecksum;
    rec.sources = req.sources;
    rec.activity = `sync of ${req.name} from ${req.sources.join(', ')}`;
    this.#startJob(rec, 'sync', (signal) => runSync(this.#ctx, rec, req, signal));
    return { info: rec.info(), started: true };
  }

  /** Starts (or joins) taking over a data source's finished file on this disk. */
  startFetch(req: FetchRequest): { info: FileInfo; started: boolean } {
    const rec = this.#prepare(req.name, req.uuid, 'fetch', req.expectedChecksum, req.size);
    if (!rec) return { info: this.table.find(req.name, req.uuid).info(), started: false };
    rec.size = req.size;
    rec.expectedChecksum = req.expectedChecksum ?? '';
    rec.sources = [];
    rec.activity = `take-over of ${req.sourcePath} as ${req.name}`;
    this.#startJob(rec, 'fetch', (signal) => runFetch(this.#ctx, rec, req, signal));
    return { info: rec.info(), started: true };
  }

  /**
   * Starts a scrub of a ready file (scrub.ts), or joins the one under way. One scrub per disk at a time: a second file
   * is refused with Busy naming the one being read.
   */
  startScrub(req: ScrubRequest): { info: FileInfo; started: boolean } {
    if (this.#closing) throw new BimError('NotReady', 'the manager is shutting down');
    const rec = this.table.find(req.name, req.uuid);
    if (rec.job?.kind === 'scrub') return { info: rec.info(), started: false };
    if (rec.state !== 'ready' || rec.job) {
      throw new BimError('NotReady', `${req.name} (uuid ${req.uuid}) is ${rec.state}${rec.job ? ` with a ${rec.job.kind} under way` : ''}; only a ready file is scrubbed`);
    }
    const other = this.table.all().find((r) => r.job?.kind === 'scrub');
    if (other) throw new BimError('Busy', `a scrub of ${other.name} is reading this disk (${other.scrubbedSize ?? 0} of ${other.size} bytes); one at a time per disk, ask again later`);
    rec.activity = `scrub of ${req.name}`;
    this.#startJob(rec, 'scrub', (signal) => runScrub(this.#ctx, rec, req, signal));
    return { info: rec.info(), started: true };
  }

  /** The record to start a job on, or undefined when the request is already satisfied or under way. */
  #prepare(name: string, uuid: string, kind: Job['kind'], expected: string | undefined, size: number): FileRecord | undefined {
    if (this.#closing) throw new BimError('NotReady', 'the manager is shutting down');
    let rec = this.table.tryFind(name, uuid);
    if (!rec) {
      rec = new FileRecord(fileDirName(name, uuid), name, uuid, this.table.now());
      rec.message = `${kind} requested`;
      this.table.add(rec);
      return rec;
    }
    const sameTarget = (!expected || !rec.expectedChecksum || rec.expectedChecksum === expected) && (rec.size === 0 || rec.size === size);
    if (rec.state === 'ready') {
      if (expected && rec.currentChecksum !== expected) {
        throw new BimError('Conflict', `${name} (uuid ${uuid}) is ready with SHA-512 ${rec.currentChecksum}, the request expects ${expected}; delete it first`);
      }
      return undefined;
    }
    if (rec.job) {
      if (rec.job.kind === kind && sameTarget) return undefined;
      throw new BimError('Conflict', `${name} (uuid ${uuid}) is busy with a ${rec.job.kind} (${rec.state}); wait for it or delete the file`);
    }
    this.table.transition(rec, 'pending', `${kind} requested`);
    return rec;
  }

  #startJob(rec: FileRecord, kind: Job['kind'], fn: (signal: AbortSignal) => Promise<void>): Job {
    const abort = new AbortController();
    const job: Job = { kind, abort, done: Promise.resolve() };
    rec.job = job;
    rec.lastError = undefined;
    job.done = (async () => {
      try {
        await fn(abort.signal);
      } catch (err) {
        await this.#jobFailed(rec, kind, err, abort.signal);
      } finally {
        if (rec.job === job) rec.job = undefined;
      }
    })();
    return job;
  }

  async #jobFailed(rec: FileRecord, kind: Job['kind'], err: unknown, signal: AbortSignal): Promise<void> {
    // Shut down or deleted: leave the disk as it is (partial data stays for resume). Timed out: already failed.
    if (this.#closing || this.table.get(rec.key) !== rec || rec.state === 'failed') return;
    if (signal.aborted && !isBimError(signal.reason, 'Timeout')) return;
    if (kind === 'sync' && isBimError(err, 'ChecksumMismatch')) await removePartial(this.#ctx, rec).catch(() => undefined);
    const msg = rec.activity && !isBimError(err) ? `${rec.activity} failed: ${messageOf(err)}` : messageOf(err);
    if (rec.state !== 'ready') this.table.transition(rec, 'failed', msg);
  }

  #checkDeadlines(): void {
    for (const [rec, msg] of this.table.expired(this.#timeouts)) {
      rec.job?.abort.abort(new BimError('Timeout', msg));
      // A scrub stalls on a ready file: the state machine leaves `ready` only through `unknown`.
      if (rec.state === 'ready') {
        rec.identity = undefined;
        this.table.transition(rec, 'unknown', msg);
      }
      this.table.transition(rec, 'failed', msg);
    }
    this.sender.sweep();
    if (++this.#ticks % 5 === 0 && !this.#checking) {
      this.#checking = true;
      void this.#checkReadyFiles().finally(() => (this.#checking = false));
    }
  }

  /**
   * A ready file someone removed or rewrote behind our back must not stay `ready`: a missing file fails at once
   * (the controller syncs it again from a peer); a changed identity (size, mtime, inode) is re-verified.
   */
  async #checkReadyFiles(): Promise<void> {
    for (const rec of this.table.all()) {
      if (rec.state !== 'ready' || rec.job || !rec.uuid || this.#closing) continue;
      const path = this.layout.path(rec.key, FILES.backing);
      let now;
      try {
        now = await identityOf(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') continue;
        if (rec.state !== 'ready' || rec.job) continue;
        // ready → unknown → failed: the state machine only leaves `ready` through `unknown`.
        const msg = `${path} disappeared from the disk; the copy must be synced again`;
        this.table.transition(rec, 'unknown', msg);
        this.table.transition(rec, 'failed', msg);
        continue;
      }
      if (rec.identity && !sameIdentity(rec.identity, now)) this.#suspect(rec, 'its size, mtime or inode changed on disk');
    }
  }

  /** A ready file's bytes look changed: re-verify it before serving it again. */
  #suspect(rec: FileRecord, why: string): void {
    if (rec.state !== 'ready' || rec.job || this.#closing) return;
    this.table.transition(rec, 'unknown', `${rec.name} is being re-verified: ${why}`);
    rec.identity = undefined;
    this.#startJob(rec, 'verify', (signal) => runVerify(this.#ctx, rec, undefined, signal));
  }

  /** Stops any job on the file and removes its directory with everything in it. */
  async delete(name: string, uuid?: string): Promise<void> {
    const rec = this.table.find(name, uuid);
    const job = rec.job;
    if (job) {
      job.abort.abort(new BimError('Conflict', `${name} was deleted`));
      await job.done;
    }
    const dir = join(this.layout.images, rec.key);
    // The key is a directory entry or a checked `<name>-<uuid>`: it cannot climb out of backing-images/.
    if (dirname(dir) !== this.layout.images) throw new BimError('Internal', `refusing to delete ${dir}: not directly inside ${this.layout.images}`);
    await rm(dir, { recursive: true, force: true });
    await fsyncDir(this.layout.images);
    this.table.remove(rec);
    this.sender.forget(rec);
  }

  /** Aborts jobs (their on-disk state stays for resume) and waits for them to stop. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearInterval(this.#ticker);
    const jobs = this.table.all().flatMap((r) => (r.job ? [r.job] : []));
    for (const j of jobs) j.abort.abort(new BimError('NotReady', 'the manager is shutting down'));
    await Promise.all(jobs.map((j) => j.done));
    await this.sender.close();
    this.table.close();
  }
}
