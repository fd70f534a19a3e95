// Durable file-system steps: atomic small-file writes (temp, fsync, rename, fsync dir), a file's identity (size,
// mtime in ns, inode) that lets a restart trust a file without reading it, and allocated size.

import { randomBytes } from 'node:crypto';
import { lstat, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { identityFromStat, type FileIdentity } from '../api/file-identity.js';

export interface SignalOptions {
  signal?: AbortSignal | undefined;
}

export { parseIdentity, sameIdentity, type FileIdentity } from '../api/file-identity.js';
import { fsyncDir } from '../util/disk.js';

export async function identityOf(path: string, { signal }: SignalOptions = {}): Promise<FileIdentity> {
  signal?.throwIfAborted();
  return identityFromStat(await stat(path, { bigint: true }));
}

/** Bytes the file really occupies on disk (st_blocks × 512); 0 when it does not exist. */
export async function allocatedBytes(path: string): Promise<number> {
  try {
    const st = await stat(path, { bigint: true });
    return Number(st.blocks * 512n);
  } catch {
    return 0;
  }
}

/** Suffix of temporary files of atomic writes; the start-up scan removes leftovers of a crash. */
export const TEMP_MARK = '.tmp-';

/**
 * Writes `data` to `path` so that after a crash the file holds either the old or the new content, never a mix:
 * temp file in the same directory, fsync, rename over, fsync the directory.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, { signal }: SignalOptions = {}): Promise<void> {
  signal?.throwIfAborted();
  const tmp = join(dirname(path), `${basename(path)}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}

/** Reads a file as UTF-8, or undefined when it does not exist. */
export async function readIfExists(path: string): Promise<Buffer | undefined> {
  const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!fh) return undefined;
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

export async function removeIfExists(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** Removes leftovers of interrupted atomic writes in `dir`. */
export async function removeTempFiles(dir: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    if (entry.includes(TEMP_MARK)) await rm(join(dir, entry), { force: true });
  }
}
