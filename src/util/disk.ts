// File-system helpers the data-plane components share: a disk's free space, whether an error means it is full, and
// making a rename durable.

import { constants } from 'node:fs';
import { open, statfs } from 'node:fs/promises';

/** Free bytes of the file system holding `path` (for unprivileged writers), and its size. */
export async function diskSpace(path: string): Promise<{ free: number; total: number }> {
  const st = await statfs(path);
  return { free: st.bavail * st.bsize, total: st.blocks * st.bsize };
}

/** fsync a directory, so that a file created, renamed or removed in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The error is, or was caused by, a full disk. */
export function isNoSpace(err: unknown): boolean {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) if ((e as NodeJS.ErrnoException).code === 'ENOSPC') return true;
  return false;
}
