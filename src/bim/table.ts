// The manager's in-memory view of its files: one record per directory under backing-images/, the state machine
// applied to it, and the change feed behind GET /v1/watch. State and message changes are pushed at once; progress
// changes are coalesced to one event per file per `progressIntervalMs`, so a fast transfer cannot flood watchers.

import { BimError } from './errors.js';
import type { FileIdentity } from './fsutil.js';
import type { ImageFormatName } from './meta.js';
import { canTransition, expiredMessage, percent, type Clock, type FileState, type Timeouts } from './states.js';

/** One peer (or user download) currently being sent a file. */
export interface SendSession {
  id: string;
  /** Who receives: the receiver's disk UUID for a sync, the client address for a download. */
  to: string;
  kind: 'sync' | 'download';
  bytes: number;
  since: string;
  inflight: number;
  lastActive: number;
}

export interface SenderInfo {
  id: string;
  to: string;
  kind: 'sync' | 'download';
  bytes: number;
  since: string;
}

/** What GET /v1/files returns for one file. */
export interface FileInfo {
  name: string;
  uuid: string;
  state: FileState;
  progress: number;
  processedSize: number;
  size: number;
  virtualSize: number;
  realSize: number;
  format: ImageFormatName;
  currentChecksum: string;
  expectedChecksum: string;
  message: string;
  senders: SenderInfo[];
  /** Peers a sync pulls from (empty otherwise). */
  sources: string[];
  lastStateTransitionTime: string;
  /**
   * When every byte was last read and found to hash to the SHA-512 (ISO 8601): the time it became ready, then each
   * clean scrub. Empty while it is not ready.
   */
  verifiedAt: string;
  /** A scrub reading the file now: bytes read so far (ready files only). */
  scrubbedSize?: number;
  /** The request token of the last scrub that ended with the file ready (repaired or clean), when it had one. */
  scrubRequest?: string;
  /**
   * Pending with nothing under way: a restart interrupted its sync or fetch (its partial data kept), and a new
   * request resumes it. Fails when none comes within the pending timeout.
   */
  awaitingRequest?: true;
}

export interface Job {
  kind: 'fetch' | 'sync' | 'verify' | 'scrub';
  abort: AbortController;
  done: Promise<void>;
}

export class FileRecord {
  /** Directory name under backing-images/ (`<name>-<uuid>` for files this manager made). */
  readonly key: string;
  readonly name: string;
  readonly uuid: string;
  state: FileState = 'pending';
  message = '';
  size = 0;
  virtualSize = 0;
  realSize = 0;
  processedSize = 0;
  format: ImageFormatName = 'unknown';
  currentChecksum = '';
  expectedChecksum = '';
  sources: string[] = [];
  /** Identity of `backing` when it was verified (ready files only). */
  identity: FileIdentity | undefined;
  /** See FileInfo.verifiedAt. */
  verifiedAt = '';
  /** Bytes a running scrub has read. */
  scrubbedSize: number | undefined;
  /** See FileInfo.scrubRequest. */
  scrubRequest: string | undefined;
  enteredAt: number;
  lastProgressAt: number;
  lastTransition: string;
  activity: string | undefined;
  lastError: string | undefined;
  waitingFor: string | undefined;
  job: Job | undefined;
  readonly sessions = new Map<string, SendSession>();

  constructor(key: string, name: string, uuid: string, now: number) {
    this.key = key;
    this.name = name;
    this.uuid = uuid;
    this.enteredAt = now;
    this.lastProgressAt = now;
    this.lastTransition = new Date().toISOString();
  }

  info(): FileInfo {
    return {
      name: this.name,
      uuid: this.uuid,
      state: this.state,
      progress: this.state === 'ready' ? 100 : percent(this.processedSize, this.size),
      processedSize: this.processedSize,
      size: this.size,
      virtualSize: this.virtualSize,
      realSize: this.realSize,
      format: this.format,
      currentChecksum: this.currentChecksum,
      expectedChecksum: this.expectedChecksum,
      message: this.message,
      senders: [...this.sessions.values()].map((s) => ({ id: s.id, to: s.to, kind: s.kind, bytes: s.bytes, since: s.since })),
      sources: this.sources,
      lastStateTransitionTime: this.lastTransition,
      verifiedAt: this.state === 'ready' ? this.verifiedAt : '',
      ...(this.scrubbedSize === undefined ? {} : { scrubbedSize: this.scrubbedSize }),
      ...(this.scrubRequest === undefined ? {} : { scrubRequest: this.scrubRequest }),
      ...(this.state === 'pending' && !this.job ? { awaitingRequest: true as const } : {}),
    };
  }
}

export type WatchEvent =
  | { type: 'SNAPSHOT'; files: FileInfo[] }
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; file: FileInfo };

export class FileTable {
  readonly #records = new Map<string, FileRecord>();
  readonly #listeners = new Set<(ev: WatchEvent) => void>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #clock: Clock;
  readonly #progressIntervalMs: number;

  constructor(opts: { clock: Clock; progressIntervalMs?: number }) {
    this.#clock = opts.clock;
    this.#progressIntervalMs = opts.progressIntervalMs ?? 250;
  }

  now(): number {
    return this.#clock.now();
  }

  get(key: string): FileRecord | undefined {
    return this.#records.get(key);
  }

  all(): FileRecord[] {
    return [...this.#records.values()].sort((a, b) => a.key.localeCompare(b.key));
  }

  /**
   * The file a request means: by name, narrowed by uuid when given. Without a uuid, several files of one name (an
   * old and a new uuid) are ambiguous and refused with a message listing them.
   */
  find(name: string, uuid?: string): FileRecord {
    const hits = [...this.#records.values()].filter((r) => r.name === name && (uuid === undefined || uuid === '' || r.uuid === uuid));
    if (hits.length === 1) return hits[0]!;
    if (hits.length === 0) throw new BimError('NotFound', `no file ${JSON.stringify(name)}${uuid ? ` with uuid ${uuid}` : ''} on this disk`);
    throw new BimError('Conflict', `${hits.length} files are named ${JSON.stringify(name)} (uuids ${hits.map((h) => h.uuid || '?').join(', ')}); add ?uuid= to choose one`);
  }

  tryFind(name: string, uuid: string): FileRecord | undefined {
    return [...this.#records.values()].find((r) => r.name === name && r.uuid === uuid);
  }

  add(rec: FileRecord): void {
    if (this.#records.has(rec.key)) throw new BimError('Internal', `record ${rec.key} exists already`);
    this.#records.set(rec.key, rec);
    this.#emit({ type: 'ADDED', file: rec.info() });
  }

  remove(rec: FileRecord): void {
    if (this.#records.get(rec.key) !== rec) return;
    this.#records.delete(rec.key);
    const t = this.#timers.get(rec.key);
    if (t) clearTimeout(t);
    this.#timers.delete(rec.key);
    this.#emit({ type: 'DELETED', file: rec.info() });
  }

  /** Moves `rec` to `to` (checked against the transition table) and tells watchers at once. */
  transition(rec: FileRecord, to: FileState, message = ''): void {
    if (rec.state !== to && !canTransition(rec.state, to)) {
      throw new BimError('Internal', `${rec.name} cannot go from ${rec.state} to ${to}`);
    }
    const now = this.#clock.now();
    if (rec.state !== to) {
      rec.state = to;
      rec.lastTransition = new Date().toISOString();
    }
    // Entering a state again (a new request for a pending file) restarts its deadline.
    rec.enteredAt = now;
    rec.lastProgressAt = now;
    rec.message = message;
    this.changedNow(rec);
  }

  /** Bytes moved: resets the stall deadline without telling anyone. */
  touch(rec: FileRecord): void {
    rec.lastProgressAt = this.#clock.now();
  }

  /** Verified progress: bytes done so far. */
  progress(rec: FileRecord, processedSize: number): void {
    rec.processedSize = processedSize;
    rec.lastProgressAt = this.#clock.now();
    this.changed(rec);
  }

  /** Something watchers may want to see changed; coalesced. */
  changed(rec: FileRecord): void {
    if (this.#timers.has(rec.key) || this.#records.get(rec.key) !== rec) return;
    const t = setTimeout(() => {
      this.#timers.delete(rec.key);
      if (this.#records.get(rec.key) === rec) this.#emit({ type: 'MODIFIED', file: rec.info() });
    }, this.#progressIntervalMs);
    t.unref();
    this.#timers.set(rec.key, t);
  }

  changedNow(rec: FileRecord): void {
    const t = this.#timers.get(rec.key);
    if (t) clearTimeout(t);
    this.#timers.delete(rec.key);
    if (this.#records.get(rec.key) === rec) this.#emit({ type: 'MODIFIED', file: rec.info() });
  }

  /** Records past their state's deadline at the clock's now, with the failure message. */
  expired(t: Timeouts): Array<[FileRecord, string]> {
    const now = this.#clock.now();
    const out: Array<[FileRecord, string]> = [];
    for (const rec of this.#records.values()) {
      const msg = expiredMessage({ ...rec, running: rec.job !== undefined, jobKind: rec.job?.kind }, now, t);
      if (msg !== undefined) out.push([rec, msg]);
    }
    return out;
  }

  /** Subscribes to changes; the listener first gets a SNAPSHOT of every file. Returns the unsubscribe function. */
  subscribe(listener: (ev: WatchEvent) => void): () => void {
    listener({ type: 'SNAPSHOT', files: this.all().map((r) => r.info()) });
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(ev: WatchEvent): void {
    for (const l of this.#listeners) l(ev);
  }

  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#listeners.clear();
  }
}
