// Instance changes seen on an instance manager's watch stream, batched into one status write per manager, in the
// order the stream brought them: the stream's SNAPSHOT (the whole list) replaces everything before it, each change
// after it goes on top. One writer per manager, never two writes at once, so an older view can never land over a
// newer one. A write the store refuses (no quorum, no longer the leader, a conflict storm) keeps its changes for the
// next attempt, behind anything newer the stream brought meanwhile, and is retried: dropping them would leave the
// instance's status where it was (a replica "starting" for good) until the stream happened to reconnect.

import { coalesce } from '../common/monitor.js';

/**
 * Writes `changes` (instance name → its new view, null: gone) into manager `name`'s status; with `full`, they are
 * the whole list (everything else is gone).
 */
export type ChangeWriter<T> = (manager: string, changes: ReadonlyMap<string, T | null>, full: boolean, signal: AbortSignal) => Promise<void>;

interface Pending<T> {
  full: boolean;
  changes: Map<string, T | null>;
}

export class ChangeBatch<T> {
  readonly #write: ChangeWriter<T>;
  readonly #minIntervalMs: number;
  readonly #retryMs: number;
  readonly #pending = new Map<string, Pending<T>>();
  readonly #flushers = new Map<string, () => void>();
  /** The write under way per manager, for settled(). */
  readonly #writing = new Map<string, Promise<void>>();
  /** Bumped by discard(): a failed write from before it must not come back. */
  readonly #generation = new Map<string, number>();
  readonly #abort = new AbortController();

  constructor(write: ChangeWriter<T>, opts: { minIntervalMs?: number; retryMs?: number } = {}) {
    this.#write = write;
    this.#minIntervalMs = opts.minIntervalMs ?? 50;
    this.#retryMs = opts.retryMs ?? 1000;
  }

  /** Records a change of `instance` on `manager` and schedules the write. */
  add(manager: string, instance: string, view: T | null): void {
    let p = this.#pending.get(manager);
    if (!p) this.#pending.set(manager, (p = { full: false, changes: new Map() }));
    p.changes.set(instance, view);
    this.#flush(manager);
  }

  /** Records the whole list of `manager` (what is pending goes: the list is newer) and schedules the write. */
  replace(manager: string, all: ReadonlyMap<string, T>): void {
    this.#pending.set(manager, { full: true, changes: new Map(all) });
    this.#flush(manager);
  }

  /** Forgets what is not written yet for `manager` (its stream stopped: what it said is no longer current). */
  discard(manager: string): void {
    this.#pending.delete(manager);
    this.#generation.set(manager, (this.#generation.get(manager) ?? 0) + 1);
  }

  /**
   * Resolves once no write for `manager` is under way (waiting at most `maxMs`): after discard(), a write that had
   * already started could otherwise land after the caller's own write of that status (the manager set to unknown).
   */
  async settled(manager: string, maxMs = 5000): Promise<void> {
    const w = this.#writing.get(manager);
    if (!w) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([w.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, maxMs)))]);
    clearTimeout(timer);
  }

  /** Changes not written yet, for tests and diagnostics. */
  pendingFor(manager: string): ReadonlyMap<string, T | null> | undefined {
    return this.#pending.get(manager)?.changes;
  }

  stop(): void {
    this.#abort.abort();
  }

  #flush(manager: string): void {
    let flush = this.#flushers.get(manager);
    if (!flush) this.#flushers.set(manager, (flush = coalesce((signal) => this.#writeOne(manager, signal), this.#minIntervalMs, this.#abort.signal)));
    flush();
  }

  async #writeOne(manager: string, signal: AbortSignal): Promise<void> {
    const p = this.#pending.get(manager);
    if (!p || (p.changes.size === 0 && !p.full)) return;
    this.#pending.delete(manager);
    const generation = this.#generation.get(manager) ?? 0;
    const write = this.#write(manager, p.changes, p.full, signal);
    this.#writing.set(manager, write);
    try {
      await write;
    } catch (err) {
      if (generation !== (this.#generation.get(manager) ?? 0)) throw err;
      const newer = this.#pending.get(manager);
      // A whole list that came meanwhile makes the refused batch moot; changes go on top of it.
      if (!newer?.full) {
        const kept: Pending<T> = { full: p.full, changes: new Map(p.changes) };
        if (newer) for (const [k, v] of newer.changes) kept.changes.set(k, v);
        this.#pending.set(manager, kept);
      }
      if (!signal.aborted) setTimeout(() => this.#flush(manager), this.#retryMs).unref();
      throw err;
    } finally {
      if (this.#writing.get(manager) === write) this.#writing.delete(manager);
    }
  }
}
