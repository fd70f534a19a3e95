// Receiving a copy from peers. The receiver pulls: it asks the peers (in the given order) for the chunk manifest,
// creates `backing.partial` at full size (all hole), and a few workers fetch the non-zero chunks that the persisted
// chunk map does not yet mark verified, spreading them over the peers and retrying a failed chunk on another one.
// A chunk is marked only after its SHA-256 matched and the partial file was fsynced. When every chunk is in, the
// commit hashes the whole file once (SHA-512) and compares it with the expected checksum; a connection closing
// never completes anything.

import { mkdir, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChunkMap, readChunkMap, writeChunkMap } from './chunkmap.js';
import { ChunkSink } from './chunksink.js';
import { commitFile, type CommitContext } from './commit.js';
import { BimError, isBimError, messageOf } from './errors.js';
import { allocatedBytes, removeIfExists, removeTempFiles } from './fsutil.js';
import { hashFile } from './hashing.js';
import { checkManifest, chunkCount, manifestDigest, type ChunkManifest } from './manifest.js';
import { readIntent, writeIntent, type PartialIntent } from './meta.js';
import { FILES } from './names.js';
import { Peer } from './peers.js';
import type { BimStats } from './stats.js';
import type { FileRecord } from './table.js';

export interface SyncRequest {
  name: string;
  uuid: string;
  size: number;
  expectedChecksum: string;
  sources: string[];
}

export interface SyncContext extends CommitContext {
  stats: BimStats;
  diskUUID: string;
  /** The cluster credential, sent to every peer. */
  peerHeaders: Record<string, string>;
  chunkSize: number;
  /** Chunks in flight at once (bounded memory: one 1 MiB staging buffer each). */
  parallel: number;
  /** A chunk request with no bytes for this long is abandoned and retried (ms). */
  chunkIdleMs: number;
  /** One manifest request's limit (ms). */
  manifestTimeoutMs: number;
  /** Persist the chunk map after this many verified chunks, or `checkpointMs` after the first unpersisted one. */
  checkpointChunks: number;
  checkpointMs: number;
}

const MAX_BACKOFF_MS = 10_000;

export async function runSync(ctx: SyncContext, rec: FileRecord, req: SyncRequest, signal: AbortSignal): Promise<void> {
  const dir = ctx.layout.dirOf(rec.key);
  await mkdir(dir, { recursive: true });
  await removeTempFiles(dir);
  await removeIfExists(ctx.layout.path(rec.key, FILES.rejected));
  await ensureIntent(ctx, rec, req);

  const peers = req.sources.map((url) => new Peer(url, { name: req.name, uuid: req.uuid, session: `${ctx.diskUUID}/${rec.key}`, receiver: ctx.diskUUID, headers: ctx.peerHeaders }));
  ctx.table.transition(rec, 'starting', `asking ${req.sources.join(', ')} for the chunk manifest`);
  try {
    await receive(ctx, rec, req, peers, signal);
  } finally {
    for (const p of peers) p.close();
  }
}

async function receive(ctx: SyncContext, rec: FileRecord, req: SyncRequest, peers: Peer[], signal: AbortSignal): Promise<void> {
  const manifest = await fetchManifest(ctx, rec, req, peers, signal);

  const partial = ctx.layout.path(rec.key, FILES.partial);
  const mapPath = ctx.layout.path(rec.key, FILES.chunkMap);
  const { fh, map, resumed } = await openPartial(ctx, partial, mapPath, manifest);
  const checkpoint = new Checkpointer(fh, map, mapPath, ctx);
  try {
    const done = (i: number) => map.has(i) || manifest.chunks[i]?.zero === true;
    let processed = 0;
    for (let i = 0; i < map.count; i++) if (done(i)) processed += manifest.chunks[i]?.length ?? 0;
    ctx.stats.received.zeroChunks += manifest.chunks.filter((c, i) => c.zero && !map.has(i)).length;
    ctx.table.progress(rec, processed);
    const todo = manifest.chunks.map((_, i) => i).filter((i) => !done(i));
    ctx.table.transition(
      rec,
      'in-progress',
      resumed ? `resuming: ${map.done} chunks verified earlier, ${todo.length} to go` : `${todo.length} chunks to transfer`,
    );
    // Chunks a previous process may have half-written: their zero blocks must be checked, not assumed holes.
    const dirty = new Set<number>(resumed ? todo : []);
    await transferChunks(ctx, rec, { peers, manifest, todo, dirty, fh, checkpoint, signal, onVerified: (len) => ctx.table.progress(rec, (processed += len)) });
    await checkpoint.flush();
    await fh.datasync();
  } finally {
    // Stopped or failed: chunks verified so far still count, so persist them before letting go of the file.
    await checkpoint.flush().catch(() => undefined);
    await fh.close();
  }
  await verifyAndCommit(ctx, rec, req, manifest, signal);
}

async function ensureIntent(ctx: SyncContext, rec: FileRecord, req: SyncRequest): Promise<void> {
  const path = ctx.layout.path(rec.key, FILES.intent);
  const old = await readIntent(path);
  if (old && old.size === req.size && old.expectedChecksum === req.expectedChecksum && old.chunkSize === ctx.chunkSize) return;
  // Another target (or none recorded): earlier partial data cannot be reused.
  await removeIfExists(ctx.layout.path(rec.key, FILES.partial));
  await removeIfExists(ctx.layout.path(rec.key, FILES.chunkMap));
  const intent: PartialIntent = {
    version: 1,
    name: req.name,
    uuid: req.uuid,
    size: req.size,
    expectedChecksum: req.expectedChecksum,
    chunkSize: ctx.chunkSize,
    startedAt: new Date().toISOString(),
  };
  await writeIntent(path, intent);
}

async function fetchManifest(ctx: SyncContext, rec: FileRecord, req: SyncRequest, peers: Peer[], signal: AbortSignal): Promise<ChunkManifest> {
  let lastPending = '';
  for (;;) {
    for (const peer of peers) {
      if (peer.excluded) continue;
      signal.throwIfAborted();
      try {
        const ans = await peer.manifest(ctx.chunkSize, { signal, timeoutMs: ctx.manifestTimeoutMs });
        if (ans.kind === 'pending') {
          rec.waitingFor = `${peer.url}: ${ans.message}`;
          // A peer making progress on its manifest is a sign of life: reset the starting deadline when it moves.
          if (ans.message !== lastPending) ctx.table.touch(rec);
          lastPending = ans.message;
          rec.lastError = ans.message;
          continue;
        }
        const m = checkManifest(ans.manifest, { size: req.size, chunkSize: ctx.chunkSize }, peer.url);
        if (m.sha512 !== req.expectedChecksum) {
          peer.excluded = `${peer.url} holds SHA-512 ${m.sha512}, expected ${req.expectedChecksum}`;
          rec.lastError = peer.excluded;
          continue;
        }
        rec.waitingFor = undefined;
        return m;
      } catch (err) {
        if (signal.aborted) throw err;
        rec.lastError = messageOf(err);
      }
    }
    const excluded = peers.filter((p) => p.excluded);
    if (excluded.length === peers.length) {
      throw new BimError('ChecksumMismatch', `no source has the expected content of ${req.name}: ${excluded.map((p) => p.excluded).join('; ')}`);
    }
    await sleep(1000, undefined, { signal });
  }
}

async function openPartial(
  ctx: SyncContext,
  partial: string,
  mapPath: string,
  manifest: ChunkManifest,
): Promise<{ fh: FileHandle; map: ChunkMap; resumed: boolean }> {
  const digest = manifestDigest(manifest);
  const old = await readChunkMap(mapPath);
  const size = await stat(partial).then((s) => s.size, () => -1);
  if (old && old.matches({ chunkSize: manifest.chunkSize, fileSize: manifest.size, digest }) && size === manifest.size) {
    return { fh: await open(partial, 'r+'), map: old, resumed: true };
  }
  // Start over: an empty file extended to full size is all hole; zero chunks are never written.
  await removeIfExists(mapPath);
  const fh = await open(partial, 'w+', 0o644);
  try {
    await fh.truncate(manifest.size);
    await fh.datasync();
    const map = new ChunkMap({ chunkSize: manifest.chunkSize, fileSize: manifest.size, count: chunkCount(manifest.size, manifest.chunkSize), digest });
    await writeChunkMap(mapPath, map);
    return { fh, map, resumed: false };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Persists verified chunks in batches: fsync the data first, then the map that vouches for it. */
class Checkpointer {
  readonly #fh: FileHandle;
  readonly #map: ChunkMap;
  readonly #path: string;
  readonly #ctx: SyncContext;
  #pending: number[] = [];
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  error: unknown;

  constructor(fh: FileHandle, map: ChunkMap, path: string, ctx: SyncContext) {
    this.#fh = fh;
    this.#map = map;
    this.#path = path;
    this.#ctx = ctx;
  }

  add(i: number): void {
    this.#pending.push(i);
    if (this.#pending.length >= this.#ctx.checkpointChunks) void this.flush().catch(() => undefined);
    else this.#timer ??= setTimeout(() => void this.flush().catch(() => undefined), this.#ctx.checkpointMs);
  }

  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const next = this.#chain.then(async () => {
      if (this.#pending.length === 0) return;
      const batch = this.#pending.splice(0);
      await this.#fh.datasync();
      for (const i of batch) this.#map.set(i);
      await writeChunkMap(this.#path, this.#map);
    });
    this.#chain = next.catch((err: unknown) => {
      this.error ??= err;
    });
    return next;
  }
}

interface TransferPlan {
  peers: Peer[];
  manifest: ChunkManifest;
  todo: number[];
  dirty: Set<number>;
  fh: FileHandle;
  checkpoint: Checkpointer;
  signal: AbortSignal;
  onVerified: (length: number) => void;
}

async function transferChunks(ctx: SyncContext, rec: FileRecord, plan: TransferPlan): Promise<void> {
  const { peers, manifest } = plan;
  // A fatal error in one worker (no peer can supply a chunk, the disk failed) stops the others at once.
  const fatal = new AbortController();
  const signal = AbortSignal.any([plan.signal, fatal.signal]);
  const queue = [...plan.todo];
  const badPeers = new Map<number, Set<Peer>>();
  let turn = 0;

  const pickPeer = (chunk: number): Peer | number => {
    const usable = peers.filter((p) => !p.excluded && !badPeers.get(chunk)?.has(p));
    if (usable.length === 0) {
      const c = manifest.chunks[chunk]!;
      throw new BimError('ChecksumMismatch', `chunk at offset ${c.offset} (${c.length} bytes) of ${rec.name} failed verification from every source (${peers.map((p) => p.url).join(', ')}); expected SHA-256 ${c.sha256}`);
    }
    const now = ctx.table.now();
    const ready = usable.filter((p) => p.backoffUntil <= now);
    if (ready.length === 0) return Math.min(...usable.map((p) => p.backoffUntil)) - now;
    return ready[turn++ % ready.length]!;
  };

  const worker = async () => {
    const sink = new ChunkSink(plan.fh);
    for (;;) {
      if (signal.aborted) return;
      if (plan.checkpoint.error) throw plan.checkpoint.error;
      const i = queue.shift();
      if (i === undefined) return;
      const peer = pickPeer(i);
      if (typeof peer === 'number') {
        queue.unshift(i);
        await sleep(Math.max(50, peer), undefined, { signal });
        continue;
      }
      const c = manifest.chunks[i]!;
      try {
        sink.begin(c.offset, plan.dirty.has(i));
        await peer.fetchRange(c.offset, c.length, {
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
        if (got !== c.sha256) {
          ctx.stats.received.chunksRejected++;
          let bad = badPeers.get(i);
          if (!bad) badPeers.set(i, (bad = new Set()));
          bad.add(peer);
          throw new BimError('ChecksumMismatch', `${peer.url} sent chunk at offset ${c.offset} with SHA-256 ${got}, the manifest says ${c.sha256}`);
        }
        peer.failures = 0;
        ctx.stats.received.chunks++;
        plan.checkpoint.add(i);
        plan.onVerified(c.length);
      } catch (err) {
        if (signal.aborted) throw err;
        plan.dirty.add(i);
        queue.push(i);
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
  rec.realSize = await allocatedBytes(ctx.layout.path(rec.key, FILES.partial));
}

async function verifyAndCommit(ctx: SyncContext, rec: FileRecord, req: SyncRequest, manifest: ChunkManifest, signal: AbortSignal): Promise<void> {
  const partial = ctx.layout.path(rec.key, FILES.partial);
  rec.message = `all chunks received; verifying the SHA-512 of ${req.size} bytes`;
  ctx.table.changedNow(rec);
  const r = await hashFile(partial, { signal, onRead: (n) => (ctx.stats.hashedBytes += n), onProgress: () => ctx.table.touch(rec) });
  if (r.size !== req.size || r.sha512 !== req.expectedChecksum) {
    // Every chunk matched a manifest that promised the expected checksum, yet the whole does not: the manifest lied.
    // The partial data is useless; remove it so a new sync starts clean.
    await removePartial(ctx, rec);
    throw new BimError(
      'ChecksumMismatch',
      `sync of ${req.name} from ${req.sources.join(', ')} produced ${r.size} bytes with SHA-512 ${r.sha512}, expected ${req.size} bytes with SHA-512 ${req.expectedChecksum}; the received data was removed`,
    );
  }
  await commitFile(ctx, rec, { from: partial, sha512: r.sha512, manifest, signal });
  await removeIfExists(ctx.layout.path(rec.key, FILES.chunkMap));
  await removeIfExists(ctx.layout.path(rec.key, FILES.intent));
}

/** Removes partial data: the partial file, its chunk map and the intent. */
export async function removePartial(ctx: CommitContext, rec: FileRecord): Promise<void> {
  for (const f of [FILES.partial, FILES.chunkMap, FILES.intent]) await rm(ctx.layout.path(rec.key, f), { force: true });
}
