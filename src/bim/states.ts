// File states (Longhorn's strings), the allowed transitions, and the deadlines of the non-terminal states. Deadlines
// are a pure function of the record and an injected clock's `now`, so tests drive time without waiting.
//
//   pending ──► starting ──► in-progress ──► ready ──► unknown (its bytes changed on disk: re-verify; or it vanished: failed)
//      │            │             │
//      └────────────┴─────────────┴──► failed ──► pending (a new request; partial data is reused)
//   unknown ──► in-progress (re-verify) ──► ready | failed;  unknown ──► pending (a new request)

export const FILE_STATES = ['pending', 'starting', 'in-progress', 'ready', 'failed', 'unknown'] as const;
export type FileState = (typeof FILE_STATES)[number];

const NEXT: Record<FileState, readonly FileState[]> = {
  pending: ['starting', 'failed', 'ready'],
  starting: ['in-progress', 'failed', 'ready'],
  'in-progress': ['ready', 'failed'],
  ready: ['unknown'],
  failed: ['pending'],
  unknown: ['pending', 'in-progress', 'failed'],
};

export function canTransition(from: FileState, to: FileState): boolean {
  return NEXT[from].includes(to);
}

/** What a running operation is, for messages: "sync of bi-1 from http://a, http://b". */
export type Activity = string;

export interface Timeouts {
  /** Longest time a request may wait before its work starts (ms). */
  pendingMs: number;
  /** Longest time between start (or the last sign of progress) and the first byte moved: manifest from peers (ms). */
  startingMs: number;
  /** Longest time without a byte moved while in progress: transfer, hashing (ms). */
  stallMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { pendingMs: 60_000, startingMs: 60_000, stallMs: 60_000 };

/** The part of a file record that deadlines depend on. */
export interface DeadlineView {
  name: string;
  state: FileState;
  /** Clock time (ms) the current state was entered. */
  enteredAt: number;
  /** Clock time (ms) of the last byte moved (received, written or hashed). */
  lastProgressAt: number;
  activity: Activity | undefined;
  /** The last transient problem (a peer refused, a chunk failed), for the message. */
  lastError: string | undefined;
  /** Why the file waits, when pending. */
  waitingFor: string | undefined;
  /** Whether a job works on the file; false for a partial file a restart left waiting for a new request. */
  running: boolean;
  /** The kind of job working on the file, if any. */
  jobKind?: string | undefined;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * The failure message when `v` has outlived its state's deadline at `now`, undefined otherwise. Messages say what
 * was going on, for how long, and the last thing that went wrong, so a person can act on them.
 */
export function expiredMessage(v: DeadlineView, now: number, t: Timeouts): string | undefined {
  const what = v.activity ?? `preparation of ${v.name}`;
  const last = v.lastError ? ` (last error: ${v.lastError})` : '';
  switch (v.state) {
    case 'pending':
      if (now - v.enteredAt < t.pendingMs) return undefined;
      return v.running
        ? `${what} did not start within ${seconds(t.pendingMs)}${v.waitingFor ? `: waiting for ${v.waitingFor}` : ''}${last}`
        : `${v.name} waited ${seconds(t.pendingMs)} for a new sync or fetch request after ${v.waitingFor ?? 'a restart'}; partial data is kept for resume`;
    case 'starting':
      // Measured from the last sign of life, not from entering: a peer that reports its manifest computation
      // advancing keeps the receiver waiting patiently.
      if (now - Math.max(v.enteredAt, v.lastProgressAt) < t.startingMs) return undefined;
      return `${what} did not start moving data within ${seconds(t.startingMs)}${last}`;
    case 'in-progress':
      if (!v.running || now - v.lastProgressAt < t.stallMs) return undefined;
      return `${what} stalled: no bytes for ${seconds(t.stallMs)}${last}`;
    case 'ready':
      // A scrub reads a ready file in the background: a disk that stops answering must not leave it reading for ever.
      if (v.jobKind !== 'scrub' || now - v.lastProgressAt < t.stallMs) return undefined;
      return `${what} stalled: nothing read for ${seconds(t.stallMs)}; the disk may be hung, and the volumes reading this copy with it`;
    default:
      return undefined;
  }
}

/** Progress in whole percent, 0–100; 100 only when done. */
export function percent(done: number, total: number): number {
  if (total <= 0) return 0;
  return Math.max(0, Math.min(100, Math.floor((done / total) * 100)));
}

/** The clock the manager reads; tests inject their own. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
