// The start-up scan of `<disk>/backing-images/` and re-verification. A `backing` whose metadata matches its
// identity (size, mtime ns, inode) is re-adopted as ready without reading a byte; one that does not is re-hashed
// and becomes ready only if it still hashes to the recorded SHA-512, else it is set aside as `backing.rejected` and
// the file is failed with both checksums. Partial data is kept for resume. Directories nobody can attribute are
// listed as `unknown` and left alone: deleting them is the controller's decision.

import { readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { abandonOnAbort } from '../util/abandon.js';
import { readChunkMap } from './chunkmap.js';
import { applyMeta, commitFile, setAsideBacking, type CommitContext } from './commit.js';
import { BimError } from './errors.js';
import { allocatedBytes, exists, identityOf, removeIfExists, removeTempFiles, sameIdentity } from './fsutil.js';
import { fsyncDir } from '../util/disk.js';
import { hashFile } from './hashing.js';
import { DEFAULT_CHUNK_SIZE } from './manifest.js';
import { readIntent, readMeta, type BackingMeta } from './meta.js';
import { FILES, OWNER_FILE } from './names.js';
import type { BimStats } from './stats.js';
import { FileRecord } from './table.js';

export interface ScanResult {
  records: FileRecord[];
  /** Ready-looking files whose identity changed: re-hash them (state `unknown` until then). */
  toVerify: Array<{ rec: FileRecord; meta: BackingMeta }>;
}

export async function scanDisk(ctx: CommitContext, { signal }: { signal?: AbortSignal | undefined } = {}): Promise<ScanResult> {
  const out: ScanResult = { records: [], toVerify: [] };
  const now = ctx.table.now();
  for (const entry of (await readdir(ctx.layout.images, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    signal?.throwIfAborted();
    if (entry.name === OWNER_FILE) continue;
    const unknown = (why: string) => {
      const r = new FileRecord(entry.name, entry.name, '', now);
      r.state = 'unknown';
      r.message = `${why}; not touched by the manager (delete it through the API if it is not needed)`;
      out.records.push(r);
    };
    if (!entry.isDirectory()) {
      unknown(`${entry.name} is not a directory`);
      continue;
    }
    const dir = join(ctx.layout.images, entry.name);
    const meta = await readMeta(join(dir, FILES.meta));
    const intent = await readIntent(join(dir, FILES.intent));
    const ids = meta ?? intent;
    if (!ids) {
      unknown(`directory ${entry.name} has no metadata naming its file`);
      continue;
    }
    if (`${ids.name}-${ids.uuid}` !== entry.name) {
      unknown(`directory ${entry.name} holds metadata of ${ids.name}-${ids.uuid}`);
      continue;
    }
    await removeTempFiles(dir);
    const rec = new FileRecord(entry.name, ids.name, ids.uuid, now);
    out.records.push(rec);
    await classify(ctx, rec, dir, meta, intent, out);
  }
  return out;
}

async function classify(
  ctx: CommitContext,
  rec: FileRecord,
  dir: string,
  meta: BackingMeta | undefined,
  intent: Awaited<ReturnType<typeof readIntent>>,
  out: ScanResult,
): Promise<void> {
  const backing = join(dir, FILES.backing);
  const partial = join(dir, FILES.partial);
  if (await exists(backing)) {
    if (!meta) {
      rec.state = 'unknown';
      rec.message = `${rec.name} has a backing file but no metadata; delete it or sync it again`;
      return;
    }
    applyMeta(rec, meta);
    rec.expectedChecksum = intent?.expectedChecksum ?? meta.sha512;
    rec.realSize = await allocatedBytes(backing);
    const id = await identityOf(backing);
    if (sameIdentity(id, meta.identity)) {
      rec.state = 'ready';
      return;
    }
    rec.state = 'unknown';
    rec.identity = undefined;
    rec.message = `the backing file changed since it was verified (size, mtime or inode differ); re-verifying its SHA-512`;
    out.toVerify.push({ rec, meta });
    return;
  }
  if (meta && (await exists(partial)) && sameIdentity(await identityOf(partial), meta.identity)) {
    // A crash between writing the metadata and the rename of the commit: the metadata vouches for these bytes.
    await rename(partial, backing);
    await fsyncDir(dir);
    await removeIfExists(join(dir, FILES.chunkMap));
    await removeIfExists(join(dir, FILES.intent));
    applyMeta(rec, meta);
    rec.expectedChecksum = meta.sha512;
    rec.realSize = await allocatedBytes(backing);
    rec.state = 'ready';
    return;
  }
  if (intent) {
    rec.size = intent.size;
    rec.expectedChecksum = intent.expectedChecksum;
    const map = await readChunkMap(join(dir, FILES.chunkMap));
    const received = map ? Math.min(intent.size, map.done * intent.chunkSize) : 0;
    rec.processedSize = received;
    rec.realSize = await allocatedBytes(partial);
    rec.state = 'pending';
    rec.waitingFor = 'a restart';
    rec.message = `sync interrupted by a restart with ${received} of ${intent.size} bytes received (zero chunks not counted); a new sync request resumes it`;
    return;
  }
  if (await exists(join(dir, FILES.rejected))) {
    rec.state = 'failed';
    rec.message = `${rec.name} failed verification earlier; its data was set aside as ${FILES.rejected} and is not served`;
    return;
  }
  rec.state = 'unknown';
  rec.message = `${rec.name} has metadata but no data`;
}

export interface VerifyContext extends CommitContext {
  stats: BimStats;
}

/**
 * Re-hashes a `backing` whose identity changed; ready again only if the bytes still hash to the recorded SHA-512.
 * Without `meta`, it is read here, under the stall deadline like the rest.
 */
export async function runVerify(ctx: VerifyContext, rec: FileRecord, known: BackingMeta | undefined, signal: AbortSignal): Promise<void> {
  const backing = ctx.layout.path(rec.key, FILES.backing);
  rec.processedSize = 0;
  // In progress (with its stall deadline) from the first read on.
  ctx.table.transition(rec, 'in-progress', `re-verifying ${rec.name}: its backing file changed since it was verified`);
  rec.activity = `re-verification of ${rec.name}`;
  // Not waited for past an abort (the stall deadline): a read from a hung disk may never return.
  const { meta, r } = await abandonOnAbort((async () => {
    const meta = known ?? (await readMeta(ctx.layout.path(rec.key, FILES.meta)));
    if (!meta) throw new BimError('Internal', `the metadata of ${rec.name} is gone; delete the file and sync it again`);
    rec.size = (await stat(backing)).size;
    const r = await hashFile(backing, {
      signal,
      chunkSize: DEFAULT_CHUNK_SIZE,
      ids: { name: rec.name, uuid: rec.uuid },
      onRead: (n) => (ctx.stats.hashedBytes += n),
      onProgress: (n) => ctx.table.progress(rec, n),
    });
    return { meta, r };
  })(), signal);
  if (r.sha512 !== meta.sha512) {
    await setAsideBacking(ctx, rec);
    rec.currentChecksum = r.sha512;
    throw new BimError(
      'ChecksumMismatch',
      `the backing file of ${rec.name} changed on disk: its SHA-512 is now ${r.sha512}, expected ${meta.sha512}; it was set aside as ${FILES.rejected} and is not served`,
    );
  }
  await commitFile(ctx, rec, { from: backing, sha512: r.sha512, manifest: r.manifest, signal });
}
