// Receiving a copy from peers. The receiver pulls: it asks the peers (in the given order) for the chunk manifest,
// creates `backing.partial` at full size (all hole), and a few workers fetch the non-zero chunks that the persisted
// chunk map does not yet mark received, spreading them over the peers (transfer.ts). A chunk is marked only after
// the partial file was fsynced. Each byte is hashed once, in one of two ways:
// - With the image's manifest anchor (BackingImage status.chunkManifestDigest, from its data source): only peers
//   whose manifest has that digest are used, and each chunk, once written, is read back and checked against the
//   manifest's SHA-256 on another thread (chunk-checker.ts), in any order and in parallel with the transfer; a chunk
//   that does not match is fetched again from another peer. The copy's SHA-512 is the one the anchored manifest
//   names: the data source built that manifest in the pass that produced the checksum.
// - Without one: the whole-file SHA-512 follows the chunks in file order on another thread while they arrive
//   (follower.ts), so when the last chunk is in only the tail is left to hash. The copy is committed only when that
//   SHA-512 is the expected one. When it is not, every chunk is checked against the manifest's SHA-256, the wrong
//   ones are fetched again (each checked as it arrives, never from the peer that sent it wrong), and the whole file
//   is hashed again.
// A copy set aside after failing verification (`backing.rejected`) is the starting point of its next sync: its chunks
// that match the manifest are kept and only the others are fetched (reuse.ts).
// A connection closing never completes anything.

import { mkdir, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseManifestAnchor, type ManifestAnchor } from '../api/backing-image.js';
import { reserveFor } from '../api/disk-layout.js';
import { writeChunkMap, type ChunkMap } from './chunkmap.js';
import { commitFile, type CommitContext } from './commit.js';
import { BimError, messageOf } from './errors.js';
import { WholeFileHasher } from './follower.js';
import { allocatedBytes, removeIfExists, removeTempFiles } from './fsutil.js';
import { diskSpace, isNoSpace } from '../util/disk.js';
import { humanBytes } from '../util/bytes.js';
import { chunksNotMatching, hashFile } from './hashing.js';
import { ChunkChecker } from './chunk-checker.js';
import { checkManifest, manifestDigest, type ChunkManifest } from './manifest.js';
import { Checkpointer, openPartial, type CheckpointPolicy } from './partial.js';
import { readIntent, writeIntent, type PartialIntent } from './meta.js';
import { FILES } from './names.js';
import { Peer } from './peers.js';
import { reuseRejected } from './reuse.js';
import type { FileRecord } from './table.js';
import { blame, transferChunks, type TransferContext, type TransferPlan } from './transfer.js';

export interface SyncRequest {
  name: string;
  uuid: string;
  size: number;
  expectedChecksum: string;
  /**
   * The image's chunk-manifest anchor (`<chunk size>:<SHA-256 hex>`, BackingImage status.chunkManifestDigest). With it,
   * and when its chunk size is this manager's, only peers whose manifest has this digest are used and each chunk is
   * verified against it as it lands: no whole-file hash. Without it the whole-file SHA-512 decides.
   */
  expectedManifestDigest?: string;
  sources: string[];
}

export interface SyncContext extends CommitContext, TransferContext, CheckpointPolicy {
  diskUUID: string;
  /** The cluster credential, sent to every peer. */
  peerHeaders: Record<string, string>;
  chunkSize: number;
  /** One manifest request's limit (ms). */
  manifestTimeoutMs: number;
  /** The whole wait for a manifest (ms); default manifestWaitMs(size). */
  manifestWaitMs?: number;
}

export async function runSync(ctx: SyncContext, rec: FileRecord, req: SyncRequest, signal: AbortSignal): Promise<void> {
  const dir = ctx.layout.dirOf(rec.key);
  await mkdir(dir, { recursive: true });
  await removeTempFiles(dir);
  await ensureIntent(ctx, rec, req);

  const peers = req.sources.map((url) => new Peer(url, { name: req.name, uuid: req.uuid, session: `${ctx.diskUUID}/${rec.key}`, receiver: ctx.diskUUID, headers: ctx.peerHeaders }));
  ctx.table.transition(rec, 'starting', `asking ${req.sources.join(', ')} for the chunk manifest`);
  try {
    await receive(ctx, rec, req, peers, signal);
  } catch (err) {
    if (!isNoSpace(err)) throw err;
    // Others filled the disk meanwhile. A full disk fails the writes of the volumes on it: give the space back.
    await removePartial(ctx, rec).catch(() => undefined);
    throw new BimError('InsufficientStorage', `the disk filled up while receiving ${req.name} (${messageOf(err)}); the partial copy was removed to give the space back to the volumes on this disk`);
  } finally {
    for (const p of peers) p.close();
  }
}

async function receive(ctx: SyncContext, rec: FileRecord, req: SyncRequest, peers: Peer[], signal: AbortSignal): Promise<void> {
  // An anchor cut with another chunk size than this manager's cannot vouch for its chunks: the whole-file hash decides.
  const parsed = parseManifestAnchor(req.expectedManifestDigest);
  const anchor = parsed?.chunkSize === ctx.chunkSize ? parsed : undefined;
  const manifest = await fetchManifest(ctx, rec, req, peers, anchor, signal);

  const partial = ctx.layout.path(rec.key, FILES.partial);
  const mapPath = ctx.layout.path(rec.key, FILES.chunkMap);
  const reused = await reuseRejected(ctx, rec, manifest, signal);
  const { fh, map, resumed } = await openPartial(partial, mapPath, manifest);
  const checkpoint = new Checkpointer(fh, map, mapPath, ctx);
  const onRead = (n: number) => (ctx.stats.hashedBytes += n);
  const checker = anchor ? new ChunkChecker(partial, { onRead }) : undefined;
  const hasher = anchor ? undefined : new WholeFileHasher(partial, manifest, { onRead });
  let sha512: string;
  try {
    // Chunks an earlier attempt marked were not necessarily checked one by one (it may have had no anchor): check them.
    // (A reused set-aside file's chunks were each checked just now.)
    const recheck = checker && resumed && !reused ? await unmatched(checker, manifest, map, () => ctx.table.touch(rec)) : [];
    for (const i of recheck) map.clear(i);
    const done = (i: number) => map.has(i) || manifest.chunks[i]?.zero === true;
    let processed = 0;
    for (let i = 0; i < map.count; i++) if (done(i)) processed += manifest.chunks[i]?.length ?? 0;
    for (let i = 0; i < map.count; i++) if (map.has(i)) hasher?.received(i);
    ctx.stats.received.zeroChunks += manifest.chunks.filter((c, i) => c.zero && !map.has(i)).length;
    ctx.table.progress(rec, processed);
    const todo = manifest.chunks.map((_, i) => i).filter((i) => !done(i));
    await ensureRoom(ctx, rec, req, todo.reduce((n, i) => n + (manifest.chunks[i]?.length ?? 0), 0));
    ctx.table.transition(
      rec,
      'in-progress',
      reused
        ? `${reused.kept} of ${reused.dataChunks} data chunks of the set-aside copy match the manifest and are kept${reused.zeroed ? ` (${reused.zeroed} zero chunks that were not zero were zeroed)` : ''}; ${todo.length} to transfer`
        : resumed ? `resuming: ${map.done} chunks received earlier, ${todo.length} to go` : `${todo.length} chunks to transfer`,
    );
    const plan: TransferPlan = {
      peers,
      manifest,
      todo,
      // Chunks a previous process may have half-written: their zero blocks must be checked, not assumed holes.
      dirty: new Set<number>(resumed ? todo : []),
      verify: false,
      ...(checker ? { readBack: (offset: number, length: number) => checker.sha256(offset, length) } : {}),
      sentBy: new Map(),
      badPeers: new Map(),
      fh,
      checkpoint,
      signal,
      onReceived: (i, len) => {
        hasher?.received(i);
        ctx.table.progress(rec, (processed += len));
      },
    };
    await transferChunks(ctx, rec, plan);
    rec.realSize = await allocatedBytes(partial);
    const durable = checkpoint.flush().then(() => fh.datasync());
    if (!hasher) {
      // Every chunk matched the anchored manifest, which was built with the SHA-512 it names (checked in fetchManifest).
      await durable;
      sha512 = manifest.sha512;
    } else {
      rec.message = `all chunks received; finishing the SHA-512 of ${req.size} bytes`;
      ctx.table.changedNow(rec);
      [sha512] = await Promise.all([hasher.digest(signal), durable]);
      if (sha512 !== req.expectedChecksum) {
        sha512 = await repair(ctx, rec, req, { ...plan, onReceived: (_, len) => ctx.table.progress(rec, (processed += len)) }, map, sha512, (len) => ctx.table.progress(rec, (processed -= len)));
      }
    }
  } finally {
    // Stopped or failed: chunks received so far still count, so persist them before letting go of the file.
    await checkpoint.flush().catch(() => undefined);
    await hasher?.close();
    await checker?.close();
    await fh.close();
  }
  await commitFile(ctx, rec, { from: partial, sha512, manifest, signal });
  await removeIfExists(mapPath);
  await removeIfExists(ctx.layout.path(rec.key, FILES.intent));
}

/**
 * A copy never takes a disk's reserve (reserveFor): the volumes on the disk write into it. Refused before anything is
 * written, naming what is needed and what is free; `needed` counts only the non-zero chunks still to come.
 */
async function ensureRoom(ctx: SyncContext, rec: FileRecord, req: SyncRequest, needed: number): Promise<void> {
  const { free, total } = await diskSpace(ctx.layout.dirOf(rec.key));
  const reserve = reserveFor(total);
  if (needed + reserve <= free) return;
  throw new BimError(
    'InsufficientStorage',
    `${req.name} needs ${humanBytes(needed)} more on this disk and ${humanBytes(reserve)} must stay free for the volumes on it, but only ${humanBytes(free)} is free; free space or put the copy on another disk`,
  );
}

/**
 * The marked non-zero chunks whose bytes in the file do not match the manifest (checked on the checker's thread);
 * `onChecked` after each, a sign of life for the copy's deadline.
 */
async function unmatched(checker: ChunkChecker, manifest: ChunkManifest, map: ChunkMap, onChecked: () => void): Promise<number[]> {
  const marked = manifest.chunks.map((c, i) => ({ c, i })).filter(({ c, i }) => map.has(i) && !c.zero);
  const sums = await Promise.all(marked.map(({ c }) => checker.sha256(c.offset, c.length).finally(onChecked)));
  return marked.filter(({ c }, k) => sums[k] !== c.sha256).map(({ i }) => i);
}

/**
 * The received file does not hash to the expected SHA-512. Chunks whose bytes differ from the manifest's SHA-256 are
 * fetched again, each checked as it arrives and never from the peer that sent it wrong; then the whole file is hashed
 * again. If every chunk matches the manifest, the manifest itself does not describe the expected file.
 */
async function repair(
  ctx: SyncContext,
  rec: FileRecord,
  req: SyncRequest,
  plan: TransferPlan,
  map: ChunkMap,
  got: string,
  onDropped: (length: number) => void,
): Promise<string> {
  const partial = ctx.layout.path(rec.key, FILES.partial);
  const lied = async (sha512: string): Promise<never> => {
    // The partial data is useless; remove it so a new sync starts clean.
    await removePartial(ctx, rec);
    throw new BimError(
      'ChecksumMismatch',
      `sync of ${req.name} from ${req.sources.join(', ')} produced ${req.size} bytes with SHA-512 ${sha512}, expected SHA-512 ${req.expectedChecksum}, ` +
        `although every chunk matches the peers' chunk manifest; the received data was removed`,
    );
  };
  rec.message = `the received bytes hash to SHA-512 ${got}, not ${req.expectedChecksum}; checking every chunk against the manifest`;
  ctx.table.changedNow(rec);
  const bad = await chunksNotMatching(plan.fh, plan.manifest, plan.signal, (n) => (ctx.stats.hashedBytes += n));
  if (bad.length === 0) return lied(got);
  for (const i of bad) {
    map.clear(i);
    const sender = plan.sentBy.get(i);
    if (sender) blame(plan, i, sender);
    ctx.stats.received.chunksRejected++;
    onDropped(plan.manifest.chunks[i]?.length ?? 0);
  }
  await writeChunkMap(ctx.layout.path(rec.key, FILES.chunkMap), map);
  rec.lastError = `${bad.length} received chunks did not match the manifest (first at offset ${plan.manifest.chunks[bad[0]!]?.offset}); fetching them again`;
  ctx.table.transition(rec, 'in-progress', rec.lastError);
  await transferChunks(ctx, rec, { ...plan, todo: bad, dirty: new Set(bad), verify: true });
  await plan.checkpoint.flush();
  await plan.fh.datasync();
  rec.message = `repaired chunks received; verifying the SHA-512 of ${req.size} bytes`;
  ctx.table.changedNow(rec);
  const r = await hashFile(partial, { signal: plan.signal, onRead: (n) => (ctx.stats.hashedBytes += n), onProgress: () => ctx.table.touch(rec) });
  return r.sha512 === req.expectedChecksum ? r.sha512 : lied(r.sha512);
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

/**
 * How long a receiver waits for a manifest that peers say is being computed: a minute plus the file read at 20 MiB/s,
 * a rate any working disk beats. Progress messages keep the copy's starting deadline alive, so without this bound a
 * sender whose computation never finishes (or keeps starting over) would keep the copy waiting forever.
 */
export function manifestWaitMs(size: number): number {
  return 60_000 + Math.ceil(size / (20 * 1024 * 1024)) * 1000;
}

async function fetchManifest(ctx: SyncContext, rec: FileRecord, req: SyncRequest, peers: Peer[], anchor: ManifestAnchor | undefined, signal: AbortSignal): Promise<ChunkManifest> {
  let lastPending = '';
  const waitMs = ctx.manifestWaitMs ?? manifestWaitMs(req.size);
  const giveUpAt = Date.now() + waitMs;
  for (;;) {
    if (Date.now() > giveUpAt) {
      throw new BimError('Timeout', `no chunk manifest of ${req.name} from ${req.sources.join(', ')} within ${Math.round(waitMs / 1000)} s; the last answer: ${rec.lastError ?? 'none'}`);
    }
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
        const digest = anchor ? manifestDigest(m).toString('hex') : undefined;
        if (anchor && digest !== anchor.digest) {
          peer.excluded = `${peer.url} serves a chunk manifest with digest ${digest}, not the image's ${anchor.digest} (from its data source)`;
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

/** Removes partial data: the partial file, its chunk map and the intent. */
export async function removePartial(ctx: CommitContext, rec: FileRecord): Promise<void> {
  for (const f of [FILES.partial, FILES.chunkMap, FILES.intent]) await rm(ctx.layout.path(rec.key, f), { force: true });
}
