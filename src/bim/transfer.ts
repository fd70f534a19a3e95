// The chunk workers of a sync: a few requests in flight at once, spread round-robin over the live peers, each chunk
// written through a ChunkSink (holes kept) and handed on once it is completely in the file. A failed request is
// retried, on another peer when there is one, after a per-peer back-off. With an anchored manifest each chunk is read
// back once written and checked against the manifest's SHA-256 (`readBack`). Without one the first pass does not hash
// chunks one by one (the whole-file SHA-512 runs alongside, follower.ts); a repair pass re-fetches chunks found wrong
// and checks each against the manifest's SHA-256 as it arrives. A peer is never asked again for a chunk it sent wrong.

import type { FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChunkSink } from './chunksink.js';
import { READ_BUFFER } from './httpclient.js';
import { SyncIoGate } from '../util/sync-io-gate.js';
import { BimError, isBimError, messageOf } from './errors.js';
import type { ChunkManifest } from './manifest.js';
import type { Checkpointer } from './partial.js';
import type { Peer } from './peers.js';
import type { BimStats } from './stats.js';
import type { FileRecord, FileTable } from './table.js';

export interface TransferContext {
  table: FileTable;
  stats: BimStats;
  /** Chunks in flight at once (bounded memory: one 1 MiB staging buffer each). */
  parallel: number;
  /** A chunk request with no bytes for this long is abandoned and retried (ms). */
  chunkIdleMs: number;
}

export interface TransferPlan {
  peers: Peer[];
  manifest: ChunkManifest;
  todo: number[];
  /** Chunks a previous attempt may have half-written: their zero blocks are checked, not assumed holes. */
  dirty: Set<number>;
  /** Check each chunk's SHA-256 as it arrives (repair pass). */
  verify: boolean;
  /**
   * Check each chunk's SHA-256 as the file holds it once written (an anchored manifest, sync.ts): the chunk counts
   * as received only when it matches.
   */
  readBack?: (offset: number, length: number) => Promise<string>;
  /** Which peer sent each chunk, to blame it if the chunk turns out wrong. */
  sentBy: Map<number, Peer>;
  /** Peers never to be asked again for a chunk (they sent it wrong). */
  badPeers: Map<number, Set<Peer>>;
  fh: FileHandle;
  checkpoint: Checkpointer;
  signal: AbortSignal;
  /** Chunk `i` is completely in the file (not yet durable: the checkpointer makes it so). */
  onReceived: (i: number, length: number) => void;
}

const MAX_BACKOFF_MS = 10_000;

/**
 * Most consecutive chunks asked for in one request. Each request costs both ends about a millisecond of CPU besides
 * its bytes (measured: a 2 GiB sync in 4 MiB requests used 0.5 s more on the sender and 0.9 s more on the receiver
 * than in 16 MiB ones), so runs of chunks share one; each chunk is still checked on its own.
 */
export const RUN_CHUNKS = 4;

export function blame(plan: Pick<TransferPlan, 'badPeers'>, chunk: number, peer: Peer): void {
  let bad = plan.badPeers.get(chunk);
  if (!bad) plan.badPeers.set(chunk, (bad = new Set()));
  bad.add(peer);
}

export async function transferChunks(ctx: TransferContext, rec: FileRecord, plan: TransferPlan): Promise<void> {
  const { peers, manifest } = plan;
  // A fatal error in one worker (no peer can supply a chunk, the disk failed) stops the others at once.
  const fatal = new AbortController();
  const signal = AbortSignal.any([plan.signal, fatal.signal]);
  const queue = [...plan.todo];
  let turn = 0;
  // One gate for the workers: they write to the same file on the same disk (chunksink.ts, "write-through").
  const gate = new SyncIoGate({ maxBytes: READ_BUFFER });

  const pickPeer = (chunk: number): Peer | number => {
    const usable = peers.filter((p) => !p.excluded && !plan.badPeers.get(chunk)?.has(p));
    if (usable.length === 0) {
      const c = manifest.chunks[chunk]!;
      const disk = plan.readBack ? ' (checked as read back from this disk: if every source is right, the disk altered it)' : '';
      throw new BimError('ChecksumMismatch', `chunk at offset ${c.offset} (${c.length} bytes) of ${rec.name} failed verification from every source (${peers.map((p) => p.url).join(', ')})${disk}; expected SHA-256 ${c.sha256}`);
    }
    const now = ctx.table.now();
    const ready = usable.filter((p) => p.backoffUntil <= now);
    if (ready.length === 0) return Math.min(...usable.map((p) => p.backoffUntil)) - now;
    return ready[turn++ % ready.length]!;
  };

  /** Chunk `i` is in the file as the manifest says. */
  const accepted = (i: number, peer: Peer, length: number) => {
    peer.failures = 0;
    plan.sentBy.set(i, peer);
    ctx.stats.received.chunks++;
    plan.checkpoint.add(i);
    plan.onReceived(i, length);
  };

  /** Why a read-back check could not be made (the checking thread failed): fatal, thrown by the next worker turn. */
  let checkFailure: unknown;
  /** The read-back check of a written chunk: accepted, or blamed on its peer and queued again. Never rejects. */
  const checkHeld = async (readBack: NonNullable<TransferPlan['readBack']>, i: number, peer: Peer): Promise<void> => {
    const c = manifest.chunks[i]!;
    let held: string;
    try {
      held = await readBack(c.offset, c.length);
    } catch (err) {
      checkFailure ??= err;
      return;
    }
    if (held === c.sha256) return accepted(i, peer, c.length);
    ctx.stats.received.chunksRejected++;
    blame(plan, i, peer);
    plan.dirty.add(i);
    queue.push(i);
    rec.lastError = `chunk at offset ${c.offset} from ${peer.url} reads back with SHA-256 ${held}, the manifest says ${c.sha256}; fetching it again`;
  };

  /**
   * The next chunks to fetch in one request: the queue's first chunk, and after it up to RUN_CHUNKS - 1 chunks that
   * follow it in the file and in the queue, when neither this pass nor the chunks need the chunk-by-chunk treatment
   * (a hash as the bytes arrive, or zero blocks of dirty chunks read back).
   */
  const takeRun = (): number[] => {
    const first = queue.shift();
    if (first === undefined) return [];
    const run = [first];
    if (plan.verify || plan.dirty.has(first)) return run;
    while (run.length < RUN_CHUNKS && queue[0] === run[run.length - 1]! + 1 && !plan.dirty.has(queue[0]) && !plan.badPeers.has(queue[0])) {
      run.push(queue.shift()!);
    }
    return run;
  };

  const worker = async () => {
    const sink = new ChunkSink(plan.fh, gate);
    // This worker's previous chunks being checked: the next request's transfer overlaps their check.
    let checking: Promise<void> | undefined;
    const settle = async () => {
      const p = checking;
      checking = undefined;
      await p;
    };
    for (;;) {
      if (signal.aborted) return settle();
      if (plan.checkpoint.error) throw plan.checkpoint.error;
      if (checkFailure !== undefined) throw checkFailure;
      const run = takeRun();
      if (run.length === 0) {
        // A check still running may queue its chunk again: nothing is left only once it is done.
        if (!checking) return;
        await settle();
        if (checkFailure !== undefined) throw checkFailure;
        continue;
      }
      const peer = pickPeer(run[0]!);
      if (typeof peer === 'number') {
        queue.unshift(...run);
        await sleep(Math.max(50, peer), undefined, { signal });
        continue;
      }
      const first = manifest.chunks[run[0]!]!;
      const last = manifest.chunks[run[run.length - 1]!]!;
      const length = last.offset + last.length - first.offset;
      try {
        sink.begin(first.offset, plan.dirty.has(run[0]!), plan.verify);
        await peer.fetchRange(first.offset, length, {
          signal,
          idleMs: ctx.chunkIdleMs,
          onPiece: (piece) => {
            ctx.stats.received.bytes += piece.length;
            ctx.table.touch(rec);
            return sink.accept(piece);
          },
          onPause: () => sink.drain(),
        });
        const got = await sink.end();
        // Verifying as the bytes arrive takes one chunk per request (takeRun).
        if (plan.verify && got !== first.sha256) {
          ctx.stats.received.chunksRejected++;
          blame(plan, run[0]!, peer);
          throw new BimError('ChecksumMismatch', `${peer.url} sent chunk at offset ${first.offset} with SHA-256 ${got}, the manifest says ${first.sha256}`);
        }
        if (plan.readBack) {
          await settle();
          const readBack = plan.readBack;
          checking = Promise.all(run.map((i) => checkHeld(readBack, i, peer))).then(() => undefined);
          continue;
        }
        for (const i of run) accepted(i, peer, manifest.chunks[i]!.length);
      } catch (err) {
        await sink.abandon();
        if (signal.aborted) throw err;
        for (const i of run) plan.dirty.add(i);
        queue.push(...run);
        rec.lastError = messageOf(err);
        if (!isBimError(err, 'ChecksumMismatch')) {
          peer.failures++;
          const base = isBimError(err, 'Busy') ? 1000 : 250 * 2 ** Math.min(peer.failures, 6);
          peer.backoffUntil = ctx.table.now() + Math.min(MAX_BACKOFF_MS, base);
        }
      }
    }
  };

  const run = async () => {
    try {
      await worker();
    } catch (err) {
      if (!signal.aborted) fatal.abort(err);
      throw err;
    }
  };
  const n = Math.max(1, Math.min(ctx.parallel, queue.length));
  await Promise.allSettled(Array.from({ length: n }, run));
  plan.signal.throwIfAborted();
  if (fatal.signal.aborted) throw fatal.signal.reason;
  if (queue.length > 0) throw new BimError('Internal', `${queue.length} chunks of ${rec.name} were left untransferred`);
}
