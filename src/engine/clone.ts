// Volume clone, the engine's side: fill this (new, empty) volume with the content of another volume's snapshot.
// Both volumes sit on the same backing image, so only what the snapshot's layers wrote is copied (CONTROL
// snapshotAllocated with `written`, then readSnapshot, from one replica of the source: replica/snapshot-read.ts, the
// reader an export uses); the rest reads from the backing image on both sides and is never copied. The bytes go
// through this engine's own write path, so every replica of the clone gets them, flattened into its head (one layer:
// a clone has no snapshot history of its own). All-zero pieces are written as write-zeroes (a block written as zeros
// over the backing image must read as zeros, and costs no data). Copying again is harmless: every write is
// idempotent, which is how a failed or interrupted clone is retried.

import { readPieces, readSnapshotPieces, snapshotRanges } from '../replica/index.js';
import type { ReplicaBackend } from './types.js';

/** What the engine's control API reports of a clone (GET …/clone). */
export interface CloneProgress {
  sourceVolume: string;
  snapshot: string;
  state: 'in-progress' | 'completed' | 'failed';
  /** Bytes the snapshot's layers wrote (what is to be copied), and copied so far. */
  bytesTotal: number;
  bytesCopied: number;
  progress: number;
  error?: string;
  startedAt: string;
  finishedAt?: string;
}

export interface CloneTarget {
  readonly size: number;
  write(offset: number, data: Uint8Array, opts: { fua: boolean; signal?: AbortSignal }): Promise<void>;
  writeZeroes(offset: number, length: number, opts: { fua: boolean; signal?: AbortSignal }): Promise<void>;
  flush(opts?: { signal?: AbortSignal }): Promise<void>;
}

/** Control requests read whole chunks: more than an I/O request's timeout on a loaded disk. */
const CONTROL_TIMEOUT_MS = 120_000;

/**
 * Copies snapshot `snapshot` of the volume `source` serves onto `target`, up to the source's size (`sourceSize`; a
 * larger clone keeps the backing image's content, or zeros, past it). `progress` is updated as it goes.
 */
export async function runClone(target: CloneTarget, source: ReplicaBackend, snapshot: string, sourceSize: number, progress: CloneProgress, { signal }: { signal: AbortSignal }): Promise<void> {
  const size = Math.min(sourceSize, target.size);
  const o = { signal, timeoutMs: CONTROL_TIMEOUT_MS };
  const ranges = await snapshotRanges(source, snapshot, 0, size, true, o);
  progress.bytesTotal = ranges.reduce((n, r) => n + r.length, 0);
  for await (const { piece, data } of readSnapshotPieces(source, snapshot, readPieces(ranges), o)) {
    if (allZero(data)) await target.writeZeroes(piece.offset, piece.length, { fua: false, signal });
    else await target.write(piece.offset, data, { fua: false, signal });
    progress.bytesCopied += piece.length;
    progress.progress = progress.bytesTotal === 0 ? 100 : Math.floor((progress.bytesCopied * 100) / progress.bytesTotal);
  }
  await target.flush({ signal });
  progress.progress = 100;
}

function allZero(b: Uint8Array): boolean {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  // Compare in 64 KiB steps against one zero buffer (no allocation per chunk).
  for (let at = 0; at < buf.length; at += ZERO.length) {
    const n = Math.min(ZERO.length, buf.length - at);
    if (buf.compare(ZERO, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}
const ZERO = Buffer.alloc(64 * 1024);
