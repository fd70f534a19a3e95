// The data source's state machine. Every non-terminal state has a timeout, so nothing waits forever for a client or
// a manager that never comes (Longhorn's data source could sit in `starting` or `ready-for-transfer` indefinitely,
// or fail an upload that did not begin within a fixed 60 s). `in-progress` measures idleness: each `touch()`
// (bytes moved) re-arms it. Time comes from an injected Clock.
//
//   pending ──► starting ──► in-progress ──► ready-for-transfer ──► ready
//      └───────────┴──────────────┴─────────────────┴──────────────► failed

import type { Clock, TimerHandle } from '../controller-kit/clock.js';

export const DATA_SOURCE_STATES = ['pending', 'starting', 'in-progress', 'ready-for-transfer', 'ready', 'failed'] as const;
export type DataSourceState = (typeof DATA_SOURCE_STATES)[number];
export type TimedState = Exclude<DataSourceState, 'ready' | 'failed'>;

/** Milliseconds each non-terminal state may last (`in-progress`: without a `touch()`). */
export type StateTimeouts = Record<TimedState, number>;

export const DEFAULT_TIMEOUTS: StateTimeouts = {
  pending: 10 * 60_000,
  starting: 10 * 60_000,
  'in-progress': 30 * 60_000,
  'ready-for-transfer': 24 * 3_600_000,
};

export function isTerminal(s: DataSourceState): s is 'ready' | 'failed' {
  return s === 'ready' || s === 'failed';
}

export class StateMachine {
  readonly #clock: Clock;
  readonly #timeouts: StateTimeouts;
  readonly #onTimeout: (state: TimedState, ms: number) => void;
  readonly #listeners = new Set<() => void>();
  #state: DataSourceState = 'pending';
  #message = '';
  #timer: TimerHandle | undefined;

  constructor(clock: Clock, timeouts: StateTimeouts, onTimeout: (state: TimedState, ms: number) => void) {
    this.#clock = clock;
    this.#timeouts = timeouts;
    this.#onTimeout = onTimeout;
    this.#arm();
  }

  get state(): DataSourceState {
    return this.#state;
  }

  get message(): string {
    return this.#message;
  }

  /** Moves to `state` (a terminal state is final: later calls are ignored and return false). */
  set(state: DataSourceState, message = ''): boolean {
    if (isTerminal(this.#state)) return false;
    const changed = state !== this.#state || message !== this.#message;
    const entered = state !== this.#state;
    this.#state = state;
    this.#message = message;
    if (entered) this.#arm();
    if (changed) this.#emit();
    return true;
  }

  /** Bytes moved: restart the idle timeout of `in-progress`. */
  touch(): void {
    if (this.#state === 'in-progress') this.#arm();
  }

  /** Called on every state or message change. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  dispose(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }

  #arm(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const s = this.#state;
    if (isTerminal(s)) return;
    const ms = this.#timeouts[s];
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#state === s) this.#onTimeout(s, ms);
    }, ms);
  }

  #emit(): void {
    for (const fn of this.#listeners) fn();
  }
}
