// Instance changes seen on an instance manager's watch stream, batched into one status write per manager. A write
// the store refuses (no quorum, no longer the leader, a conflict storm) keeps its changes for the next attempt,
// behind anything newer the stream brought meanwhile, and is retried: dropping them would leave the instance's
// status where it was (a replica "starting" for good) until the stream happened to reconnect.

import { coalesce } from '../common/monitor.js';

/** Writes `changes` (instance name → its new view, null: gone) into manager `name`'s status. */
export type ChangeWriter<T> = (manager: string, changes: ReadonlyMap<string, T | null>, signal: AbortSignal) => Promise<void>;

export class ChangeBatch<T> {
  readonly #write: ChangeWriter<T>;
  readonly #minIntervalMs: number;
  readonly #retryMs: number;
  readonly #pending = new Map<string, Map<string, T | null>>();
  readonly #flushers = new Map<string, () => void>();
  /** Bumped by discard(): a failed write from before it must not come back over the full list. */
  readonly #generation = new Map<string, number>();
  readonly #abort = new AbortController();

  constructor(write: ChangeWriter<T>, opts: { minIntervalMs?: number; retryMs?: number } = {}) {
    this.#write = write;
    this.#minIntervalMs = opts.minIntervalMs ?? 50;
    this.#retryMs = opts.retryMs ?? 1000;
  }

  /** Records a change of `instance` on `manager` and schedules the write. */
  add(manager: string, instance: string, view: T | null): void {
    let changes = this.#pending.get(manager);
    if (!changes) this.#pending.set(manager, (changes = new Map()));
    changes.set(instance, view);
    this.#flush(manager);
  }

  /** Forgets what is not written yet for `manager` (a full list is about to replace its status). */
  discard(manager: string): void {
    this.#pending.delete(manager);
    this.#generation.set(manager, (this.#generation.get(manager) ?? 0) + 1);
  }

  /** Changes not written yet, for tests and diagnostics. */
  pendingFor(manager: string): ReadonlyMap<string, T | null> | undefined {
    return this.#pending.get(manager);
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
    const changes = this.#pending.get(manager);
    if (!changes || changes.size === 0) return;
    this.#pending.delete(manager);
    const generation = this.#generation.get(manager) ?? 0;
    try {
      await this.#write(manager, changes, signal);
    } catch (err) {
      if (generation !== (this.#generation.get(manager) ?? 0)) throw err;
      const newer = this.#pending.get(manager);
      const kept = new Map(changes);
      if (newer) for (const [k, v] of newer) kept.set(k, v);
      this.#pending.set(manager, kept);
      if (!signal.aborted) setTimeout(() => this.#flush(manager), this.#retryMs).unref();
      throw err;
    }
  }
}
