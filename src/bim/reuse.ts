// Syncing a failed copy again from what is left of it. A copy that failed verification was set aside as
// `backing.rejected` (its bytes changed on disk: scan.ts, scrub.ts), and such a file is usually wrong in a few chunks,
// not in all of them. Before a sync of that file creates its partial file, the set-aside file is checked chunk by chunk
// against the sender's manifest (SHA-256, on the chunk checker's thread):
// - a data chunk that matches is marked received in the chunk map, as if it had just arrived and been checked;
// - a chunk the manifest says is all zero but that holds other bytes is overwritten with zeros (a sync never writes
//   zero chunks: it trusts the partial file to hold holes there);
// - the file is fdatasynced, renamed to `backing.partial`, and the chunk map written; the sync then resumes from it
//   and fetches only the chunks left unmarked.
// What is kept passed the same SHA-256 check as a received chunk. With an anchored manifest that vouches for it; without
// one the whole-file SHA-512 still decides before the copy is committed (sync.ts). A set-aside file of another size, or
// one left next to a partial file the sync can resume, is removed instead.

import { open, rename, stat } from 'node:fs/promises';
import { abandonOnAbort } from '../util/abandon.js';
import { ChunkChecker } from './chunk-checker.js';
import { ChunkMap, writeChunkMap } from './chunkmap.js';
import { removeIfExists } from './fsutil.js';
import { chunkCount, manifestDigest, zeros, type ChunkManifest } from './manifest.js';
import { FILES } from './names.js';
import { resumablePartial } from './partial.js';
import type { SyncContext } from './sync.js';
import type { FileRecord } from './table.js';

export interface Reused {
  /** Data chunks of the set-aside file kept (they match the manifest). */
  kept: number;
  /** Data (non-zero) chunks in the manifest. */
  dataChunks: number;
  /** Zero chunks that held other bytes and were zeroed. */
  zeroed: number;
}

/**
 * Turns the record's set-aside file into the sync's partial file with a chunk map marking its good chunks; undefined
 * when there is none to reuse (then nothing is left of it either).
 */
export async function reuseRejected(ctx: SyncContext, rec: FileRecord, manifest: ChunkManifest, signal: AbortSignal): Promise<Reused | undefined> {
  const rejected = ctx.layout.path(rec.key, FILES.rejected);
  const partial = ctx.layout.path(rec.key, FILES.partial);
  const mapPath = ctx.layout.path(rec.key, FILES.chunkMap);
  const size = await stat(rejected).then((s) => s.size, () => undefined);
  if (size === undefined) return undefined;
  if (size !== manifest.size || (await resumablePartial(partial, mapPath, manifest))) {
    await removeIfExists(rejected);
    return undefined;
  }
  ctx.table.transition(rec, 'starting', `checking the ${manifest.chunks.length} chunks of the set-aside copy against the manifest: those that match are not fetched again`);
  // Not waited for past an abort (the copy's deadline): a read from a hung disk may never return.
  const bad = await abandonOnAbort(mismatched(ctx, rec, rejected, manifest), signal);
  const zeroed = manifest.chunks.filter((c, i) => c.zero && bad.has(i));
  const fh = await open(rejected, 'r+');
  try {
    for (const c of zeroed) await fh.write(zeros(c.length), 0, c.length, c.offset);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  signal.throwIfAborted();
  const map = new ChunkMap({ chunkSize: manifest.chunkSize, fileSize: manifest.size, count: chunkCount(manifest.size, manifest.chunkSize), digest: manifestDigest(manifest) });
  let kept = 0;
  manifest.chunks.forEach((c, i) => {
    if (c.zero || bad.has(i)) return;
    map.set(i);
    kept++;
  });
  // A map left from an earlier attempt must not vouch for the renamed file even for a moment.
  await removeIfExists(mapPath);
  await rename(rejected, partial);
  // Atomic and followed by an fsync of the directory, which makes the rename durable with it.
  await writeChunkMap(mapPath, map);
  ctx.stats.received.reusedChunks += kept;
  return { kept, dataChunks: manifest.chunks.filter((c) => !c.zero).length, zeroed: zeroed.length };
}

/** Indices of the chunks (zero ones included) whose bytes in `path` differ from the manifest. */
async function mismatched(ctx: SyncContext, rec: FileRecord, path: string, manifest: ChunkManifest): Promise<Set<number>> {
  const checker = new ChunkChecker(path, { onRead: (n) => (ctx.stats.hashedBytes += n) });
  try {
    const sums = await Promise.all(manifest.chunks.map((c) => checker.sha256(c.offset, c.length).finally(() => ctx.table.touch(rec))));
    return new Set(manifest.chunks.flatMap((c, i) => (sums[i] === c.sha256 ? [] : [i])));
  } finally {
    await checker.close();
  }
}
