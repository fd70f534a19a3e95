// Taking over a finished file from the data source on the same disk: by rename, never by copy. When the caller
// vouches for the file (its SHA-512 plus the identity of the bytes it hashed) and the identity still matches, the
// file is not read at all (nor is its chunk manifest computed, when the data source left one beside it); otherwise it
// is read once, computing the SHA-512 and the chunk manifest in the same pass.
// The source is only renamed after it was accepted: a file that fails verification stays where it was.

import { lstat, mkdir, realpath } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { DATA_SOURCE_FINISHED_FILE, DATA_SOURCE_STAGING_DIR } from '../api/backing-image-data-source.js';
import { commitFile, type CommitContext } from './commit.js';
import { BimError } from './errors.js';
import { identityOf, parseIdentity, readIfExists, removeTempFiles, sameIdentity, type FileIdentity } from './fsutil.js';
import { hashFile } from './hashing.js';
import { checkManifest, DEFAULT_CHUNK_SIZE, type ChunkManifest } from './manifest.js';
import { isInside, manifestSidecarPath, type DiskLayout } from './names.js';
import type { BimStats } from './stats.js';
import type { FileRecord } from './table.js';

export interface FetchRequest {
  name: string;
  uuid: string;
  sourcePath: string;
  size: number;
  expectedChecksum: string | undefined;
  /** The data source's SHA-512 of the file, trusted only together with a matching identity. */
  sha512: string | undefined;
  identity: FileIdentity | undefined;
}

export interface FetchContext extends CommitContext {
  stats: BimStats;
  chunkSize?: number;
}

/**
 * Checks that `sourcePath` may be taken over: an absolute path to a regular file (not a symlink) inside the disk but
 * outside backing-images/, on the same file system, of the announced size. Runs before the request is accepted, so
 * a wrong path is a 400, not a failed file.
 */
export async function checkFetchSource(layout: DiskLayout, req: Pick<FetchRequest, 'sourcePath' | 'size'>): Promise<void> {
  const p = req.sourcePath;
  if (!p.startsWith('/')) throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} must be an absolute path`);
  if (p.includes('\0')) throw new BimError('InvalidArgument', 'sourcePath must not contain NUL');
  if (resolve(p) !== p) throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} must be a normalised path (no "..", "." or "//")`);
  let real: string;
  try {
    if ((await lstat(p)).isSymbolicLink()) throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} is a symbolic link`);
    real = await realpath(p);
  } catch (err) {
    if (err instanceof BimError) throw err;
    throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} does not exist`);
  }
  const images = await realpath(layout.images);
  // Only a data source's finished file, `<disk>/tmp/<name>-<uuid>/backing`: anything else on the disk (a
  // replica's head, another image's file, the disk config) must never be taken over.
  const staging = await realpath(join(layout.disk, DATA_SOURCE_STAGING_DIR)).catch(() => undefined);
  const rel = staging === undefined ? undefined : relative(staging, real).split(sep);
  if (rel?.length !== 2 || rel[0] === '..' || rel[0] === '' || rel[1] !== DATA_SOURCE_FINISHED_FILE || isInside(images, real)) {
    throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} must be a data source's finished file on this disk (${join(layout.disk, DATA_SOURCE_STAGING_DIR, '<name>-<uuid>', DATA_SOURCE_FINISHED_FILE)})`);
  }
  const [st, imagesSt] = await Promise.all([lstat(real), lstat(images)]);
  if (!st.isFile()) throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} is not a regular file`);
  if (st.dev !== imagesSt.dev) {
    throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} is on another file system than ${layout.images}; fetch takes files over by rename and never copies`);
  }
  if (st.size !== req.size) throw new BimError('InvalidArgument', `sourcePath ${JSON.stringify(p)} holds ${st.size} bytes, the request says ${req.size}`);
}

/**
 * The chunk manifest the data source computed while it wrote the file, when it describes exactly these bytes (same
 * identity, same SHA-512); undefined otherwise, and the first peer to ask has it computed then.
 */
async function vouchedManifest(req: FetchRequest, identity: FileIdentity, chunkSize: number): Promise<ChunkManifest | undefined> {
  const buf = await readIfExists(manifestSidecarPath(req.sourcePath, chunkSize)).catch(() => undefined);
  if (!buf) return undefined;
  try {
    const o = JSON.parse(buf.toString('utf8')) as { identity?: unknown; manifest?: unknown };
    const id = parseIdentity(o.identity);
    if (!id || !sameIdentity(id, identity)) return undefined;
    const m = checkManifest(o.manifest, { size: req.size, chunkSize }, manifestSidecarPath(req.sourcePath, chunkSize));
    return m.sha512 === req.sha512 ? m : undefined;
  } catch {
    return undefined;
  }
}

export async function runFetch(ctx: FetchContext, rec: FileRecord, req: FetchRequest, signal: AbortSignal): Promise<void> {
  ctx.table.transition(rec, 'starting', `checking ${req.sourcePath}`);
  await checkFetchSource(ctx.layout, req);
  const before = await identityOf(req.sourcePath, { signal });
  let sha512: string;
  let manifest: ChunkManifest | undefined;
  if (req.sha512 && req.identity && sameIdentity(req.identity, before)) {
    sha512 = req.sha512;
    ctx.table.transition(rec, 'in-progress', 'taking over the file: the data source vouched for its checksum and the file is unchanged since');
    manifest = await vouchedManifest(req, before, ctx.chunkSize ?? DEFAULT_CHUNK_SIZE);
    ctx.table.progress(rec, req.size);
  } else {
    ctx.table.transition(rec, 'in-progress', `computing the SHA-512 of ${req.sourcePath}`);
    const r = await hashFile(req.sourcePath, {
      signal,
      chunkSize: ctx.chunkSize ?? DEFAULT_CHUNK_SIZE,
      ids: { name: req.name, uuid: req.uuid },
      onRead: (n) => (ctx.stats.hashedBytes += n),
      onProgress: (n) => ctx.table.progress(rec, n),
    });
    const after = await identityOf(req.sourcePath, { signal });
    if (!sameIdentity(before, after)) {
      throw new BimError('Conflict', `${req.sourcePath} changed while it was being hashed; the data source must not write to a finished file`);
    }
    if (req.sha512 && req.sha512 !== r.sha512) {
      throw new BimError('ChecksumMismatch', `${req.sourcePath} hashes to SHA-512 ${r.sha512}, the data source reported ${req.sha512}; the file was left where it is`);
    }
    sha512 = r.sha512;
    manifest = r.manifest;
  }
  if (req.expectedChecksum && sha512 !== req.expectedChecksum) {
    throw new BimError('ChecksumMismatch', `${req.name}: the data source's file has SHA-512 ${sha512}, expected ${req.expectedChecksum}; the file was left where it is`);
  }
  rec.currentChecksum = sha512;
  const dir = ctx.layout.dirOf(rec.key);
  await mkdir(dir, { recursive: true });
  await removeTempFiles(dir);
  signal.throwIfAborted();
  await commitFile(ctx, rec, { from: req.sourcePath, sha512, manifest, signal });
}
