// Scrubbing: reading a ready file again, on the controller's schedule, to find bytes that changed although nobody
// wrote them (bit rot, a misdirected write, a sector read back wrong). The start-up scan and the periodic identity
// check only notice a file whose size, mtime or inode changed; these changes keep all three.
//
// The file stays `ready` while it is read (volumes keep reading it, peers keep being served), at a limited rate, in one
// pass that computes its SHA-512 and every chunk's SHA-256. When the SHA-512 is the recorded one, the time is recorded
// (meta `verifiedAt`) and nothing else happens. When it is not, the file leaves `ready` at once, and:
// - the damaged chunks are those whose SHA-256 differs from the manifest cached while the file was still good (it is
//   bound to the file's identity and SHA-512, sender.ts);
// - with peers holding ready copies, those chunks are fetched again and written in place, each checked against that
//   manifest before it is written; then the file is synced, hashed whole again, and committed under its new identity.
//   Volumes that have the file open read the repaired bytes at once: nothing is deleted under them.
// - without peers, without a manifest from before the damage, or when the repaired file still does not hash right, the
//   file is set aside as `backing.rejected` and fails; the controller then syncs it again like any failed copy.

import { open } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { SCRUB_REPAIRED as REPAIRED } from '../api/backing-image-manager.js';
import { abandonOnAbort } from '../util/abandon.js';
import { commitFile, setAsideBacking } from './commit.js';
import { BimError, messageOf } from './errors.js';
import { identityOf, sameIdentity, type FileIdentity } from './fsutil.js';
import { chunksNotMatching, hashFile, type HashResult } from './hashing.js';
import type { ChunkManifest } from './manifest.js';
import { readMeta, writeMeta, type BackingMeta } from './meta.js';
import { FILES } from './names.js';
import { Peer } from './peers.js';
import { loadManifest, saveManifest } from './sender.js';
import type { SyncContext } from './sync.js';
import type { FileRecord } from './table.js';

export interface ScrubRequest {
  name: string;
  uuid: string;
  /** Base URLs of managers holding ready copies: where damaged chunks are fetched again. May be empty. */
  sources: string[];
  /** Read no faster than this (bytes per second); default: as fast as the disk goes. */
  maxBytesPerSecond?: number;
  /**
   * The controller's token for this request (the image's `stratum.io/scrub-requested`), recorded when the scrub ends
   * with the file ready: how it knows the request was answered without comparing two machines' clocks.
   */
  request?: string;
}

/** What the reading half of a scrub found: nothing to judge, an unreadable file, or its hashes (and damaged chunks). */
type Examined =
  | { kind: 'changed' }
  | { kind: 'unreadable'; message: string }
  | { kind: 'read'; meta: BackingMeta; identity: FileIdentity; trusted: ChunkManifest | undefined; r: HashResult; bad: number[] | undefined };

export async function runScrub(ctx: SyncContext, rec: FileRecord, req: ScrubRequest, signal: AbortSignal): Promise<void> {
  // The stall deadline (states.ts) counts from here, and from each buffer read.
  ctx.table.touch(rec);
  // The reading half is not waited for past an abort: a read from a hung disk may never return.
  const seen = await abandonOnAbort(examine(ctx, rec, req, signal), signal);
  if (seen.kind === 'changed') return;
  // The disk cannot read the file back: neither can the volumes over it.
  if (seen.kind === 'unreadable') throw await setAside(ctx, rec, seen.message);
  const { meta, identity, trusted, r, bad } = seen;
  if (r.sha512 === meta.sha512) {
    const now = new Date().toISOString();
    await writeMeta(ctx.layout.path(rec.key, FILES.meta), { ...meta, verifiedAt: now, ...(req.request === undefined ? {} : { scrubRequest: req.request }) });
    rec.verifiedAt = now;
    if (req.request !== undefined) rec.scrubRequest = req.request;
    // The news of an earlier repair is old now: the copy is as verified as any.
    if (rec.message.startsWith(REPAIRED)) rec.message = '';
    if (!trusted && r.manifest) await saveManifest(ctx.layout, rec.key, identity, r.manifest).catch(() => undefined);
    ctx.table.changedNow(rec);
    return;
  }
  const backing = ctx.layout.path(rec.key, FILES.backing);
  const found = `the scrub found that ${rec.name} no longer hashes to its SHA-512 (now ${r.sha512}, recorded ${meta.sha512})`;
  const where = bad && trusted ? `: ${bad.length} of ${trusted.chunks.length} chunks of ${trusted.chunkSize} bytes changed, the first at offset ${trusted.chunks[bad[0]!]?.offset}` : '';
  if (!bad || !trusted || bad.length === 0 || req.sources.length === 0) {
    const why = !trusted ? 'no chunk manifest from before the damage says which chunks are wrong' : req.sources.length === 0 ? 'no other disk holds a ready copy to repair it from' : 'every chunk matches the manifest, which then does not describe the recorded file';
    throw await setAside(ctx, rec, `${found}${where}; ${why}`);
  }
  rec.identity = undefined;
  ctx.table.transition(rec, 'unknown', `${found}${where}; fetching them again from ${req.sources.join(', ')}`);
  ctx.table.transition(rec, 'in-progress', `repairing ${bad.length} chunk${bad.length === 1 ? '' : 's'} of ${rec.name} in place from ${req.sources.join(', ')}`);
  rec.processedSize = 0;
  rec.size = meta.size;
  try {
    await repairChunks(ctx, rec, backing, trusted, bad, req, signal);
  } catch (err) {
    if (signal.aborted) throw err;
    throw await setAside(ctx, rec, `${found}${where}; repairing failed: ${messageOf(err)}`);
  }
  const again = await abandonOnAbort(hashFile(backing, { signal, chunkSize: ctx.chunkSize, ids: { name: rec.name, uuid: rec.uuid }, onRead: (n) => (ctx.stats.hashedBytes += n), onProgress: () => ctx.table.touch(rec) }), signal);
  if (again.sha512 !== meta.sha512) throw await setAside(ctx, rec, `${found}${where}; after ${bad.length} chunks were repaired it hashes to ${again.sha512}, still not the recorded SHA-512`);
  const one = bad.length === 1;
  const repaired = `${REPAIRED}: ${bad.length} chunk${one ? '' : 's'} had changed on disk (the first at offset ${trusted.chunks[bad[0]!]?.offset}) and ${one ? 'was' : 'were'} fetched again from peers`;
  await commitFile(ctx, rec, { from: backing, sha512: again.sha512, manifest: again.manifest, signal, readyMessage: repaired, scrubRequest: req.request });
}

/** Reads the file once (and its damaged chunks when its SHA-512 is not the recorded one); writes nothing. */
async function examine(ctx: SyncContext, rec: FileRecord, req: ScrubRequest, signal: AbortSignal): Promise<Examined> {
  const backing = ctx.layout.path(rec.key, FILES.backing);
  const meta = await readMeta(ctx.layout.path(rec.key, FILES.meta));
  if (!meta || !rec.identity) throw new BimError('Internal', `the metadata of ${rec.name} is gone; delete the file and sync it again`);
  const identity = rec.identity;
  const trusted = await loadManifest(ctx.layout, rec, ctx.chunkSize, identity);
  rec.scrubbedSize = 0;
  let r: HashResult;
  try {
    r = await hashFile(backing, {
      signal,
      // Chunk hashes only to save a manifest where none vouches for the chunks yet; with one, damage is located in a
      // second pass, when there is damage.
      chunkSize: trusted ? undefined : ctx.chunkSize,
      ids: { name: rec.name, uuid: rec.uuid },
      maxBytesPerSecond: req.maxBytesPerSecond,
      onRead: (n) => (ctx.stats.hashedBytes += n),
      // Shown by GET /v1/files, not pushed: a background read is no state change worth a status write.
      onProgress: (n) => {
        rec.scrubbedSize = n;
        ctx.table.touch(rec);
      },
    });
  } catch (err) {
    if (signal.aborted) throw err;
    return { kind: 'unreadable', message: `the scrub of ${rec.name} could not read it back: ${messageOf(err)}` };
  } finally {
    rec.scrubbedSize = undefined;
  }
  // Written while it was read (an identity change): not the scrub's to judge; the identity check re-verifies it.
  if (!sameIdentity(await identityOf(backing), identity)) return { kind: 'changed' };
  const bad = r.sha512 !== meta.sha512 && trusted ? await damagedChunks(ctx, rec, backing, trusted, signal) : undefined;
  return { kind: 'read', meta, identity, trusted, r, bad };
}

/** The chunks of the file at `path` that no longer hash as the manifest says (all-zero ones included). */
async function damagedChunks(ctx: SyncContext, rec: FileRecord, path: string, manifest: ChunkManifest, signal: AbortSignal): Promise<number[]> {
  const fh = await open(path, 'r');
  try {
    const onRead = (n: number) => {
      ctx.stats.hashedBytes += n;
      ctx.table.touch(rec);
    };
    return await chunksNotMatching(fh, manifest, signal, onRead, { includeZero: true });
  } finally {
    await fh.close();
  }
}

/** Fetches chunks `bad` again into `path`, each from the first peer that sends it as `manifest` says, then syncs. */
async function repairChunks(ctx: SyncContext, rec: FileRecord, path: string, manifest: ChunkManifest, bad: number[], req: ScrubRequest, signal: AbortSignal): Promise<void> {
  const peers = req.sources.map((url) => new Peer(url, { name: req.name, uuid: req.uuid, session: `${ctx.diskUUID}/${rec.key}/scrub`, receiver: ctx.diskUUID, headers: ctx.peerHeaders }));
  const fh = await open(path, 'r+');
  try {
    let done = 0;
    for (const i of bad) {
      const c = manifest.chunks[i]!;
      const failures: string[] = [];
      let data: Buffer | undefined;
      for (const peer of peers) {
        const got = Buffer.alloc(c.length);
        let at = 0;
        try {
          await peer.fetchRange(c.offset, c.length, {
            signal,
            idleMs: ctx.chunkIdleMs,
            onPiece: (piece) => {
              piece.copy(got, at);
              at += piece.length;
              return true;
            },
            onPause: async () => undefined,
          });
        } catch (err) {
          if (signal.aborted) throw err;
          failures.push(messageOf(err));
          continue;
        }
        const sha256 = createHash('sha256').update(got).digest('hex');
        if (sha256 === c.sha256) {
          data = got;
          break;
        }
        failures.push(`${peer.url} sent chunk ${i} with SHA-256 ${sha256}, not ${c.sha256}`);
      }
      if (!data) throw new BimError('PeerFailed', `no peer sent chunk ${i} (offset ${c.offset}) as the manifest says: ${failures.join('; ')}`);
      for (let at = 0; at < data.length; ) at += (await fh.write(data, at, data.length - at, c.offset + at)).bytesWritten;
      ctx.stats.received.bytes += data.length;
      ctx.table.progress(rec, (done += c.length));
    }
    await fh.datasync();
  } finally {
    await fh.close();
    for (const p of peers) p.close();
  }
}

/** Takes the file out of `ready` and moves it aside (never served again); returns the error that fails it. */
async function setAside(ctx: SyncContext, rec: FileRecord, message: string): Promise<BimError> {
  if (rec.state === 'ready') {
    rec.identity = undefined;
    ctx.table.transition(rec, 'unknown', message);
  }
  await setAsideBacking(ctx, rec);
  return new BimError('ChecksumMismatch', `${message}; it was set aside as ${FILES.rejected} and is not served`);
}
