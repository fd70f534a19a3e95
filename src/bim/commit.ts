// The explicit commit that makes a file ready, shared by fetch, sync and re-verification: only after the data is
// fsynced and its whole-file SHA-512 is known and accepted, write the metadata (with the identity of those bytes),
// rename the data to `backing`, fsync the directories, and only then report `ready`. A crash at any step leaves
// either no `backing` or one whose metadata matches it.

import { rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { inspectImage, isImageFormatError } from '../imagefmt/index.js';
import { allocatedBytes, identityOf } from './fsutil.js';
import { fsyncDir } from '../util/disk.js';
import type { ChunkManifest } from './manifest.js';
import { writeMeta, type BackingMeta, type ImageFormatName } from './meta.js';
import { FILES, type DiskLayout } from './names.js';
import { saveManifest } from './sender.js';
import type { FileRecord, FileTable } from './table.js';

export interface CommitContext {
  layout: DiskLayout;
  table: FileTable;
}

export interface ImageDescription {
  format: ImageFormatName;
  virtualSize: number;
  /** Why the file is not a usable image, when it is not (the checksum still holds; the data path will refuse it). */
  problem?: string;
}

/** Format and virtual size from the image header (reads a few bytes, never the whole file). */
export async function describeImage(path: string, signal?: AbortSignal): Promise<ImageDescription> {
  try {
    const info = await inspectImage(path, { signal });
    return { format: info.format, virtualSize: info.virtualSize };
  } catch (err) {
    if (isImageFormatError(err)) return { format: 'unknown', virtualSize: 0, problem: err.message };
    throw err;
  }
}

/** Copies a metadata record into the in-memory record. */
export function applyMeta(rec: FileRecord, m: BackingMeta): void {
  rec.size = m.size;
  rec.virtualSize = m.virtualSize;
  rec.format = m.format;
  rec.currentChecksum = m.sha512;
  rec.identity = m.identity;
  rec.processedSize = m.size;
  rec.verifiedAt = m.verifiedAt ?? m.readyAt;
  rec.scrubRequest = m.scrubRequest;
}

/**
 * Commits verified data at `from` (already fsynced, hashing to `sha512`) as the file's `backing`. `from` may be in
 * the file's own directory (a received partial) or elsewhere on the same file system (a data source's file).
 */
export async function commitFile(
  ctx: CommitContext,
  rec: FileRecord,
  opts: { from: string; sha512: string; manifest?: ChunkManifest | undefined; signal?: AbortSignal | undefined; readyMessage?: string; scrubRequest?: string | undefined },
): Promise<void> {
  const dir = ctx.layout.dirOf(rec.key);
  const target = ctx.layout.path(rec.key, FILES.backing);
  const image = await describeImage(opts.from, opts.signal);
  // Rename keeps the inode and mtime, so the identity taken here is the identity of `backing` after the rename.
  const identity = await identityOf(opts.from, { signal: opts.signal });
  const meta: BackingMeta = {
    version: 1,
    name: rec.name,
    uuid: rec.uuid,
    size: identity.size,
    virtualSize: image.virtualSize,
    format: image.format,
    sha512: opts.sha512,
    identity,
    readyAt: new Date().toISOString(),
    ...(opts.scrubRequest === undefined ? {} : { scrubRequest: opts.scrubRequest }),
  };
  opts.signal?.throwIfAborted();
  await writeMeta(ctx.layout.path(rec.key, FILES.meta), meta);
  if (opts.from !== target) {
    await rename(opts.from, target);
    await fsyncDir(dir);
    if (dirname(opts.from) !== dir) await fsyncDir(dirname(opts.from));
  }
  if (opts.manifest) {
    // A missing cache only costs a re-read when a peer first asks; never fail a verified file for it.
    await saveManifest(ctx.layout, rec.key, identity, { ...opts.manifest, name: rec.name, uuid: rec.uuid }).catch(() => undefined);
  }
  applyMeta(rec, meta);
  rec.realSize = await allocatedBytes(target);
  rec.lastError = undefined;
  rec.waitingFor = undefined;
  ctx.table.transition(rec, 'ready', image.problem ? `verified, but not usable as an image: ${image.problem}` : (opts.readyMessage ?? ''));
}

/** Moves a `backing` that failed verification aside as `backing.rejected`: kept for a human, never served. */
export async function setAsideBacking(ctx: CommitContext, rec: FileRecord): Promise<void> {
  await rename(ctx.layout.path(rec.key, FILES.backing), ctx.layout.path(rec.key, FILES.rejected));
  await fsyncDir(ctx.layout.dirOf(rec.key));
}
