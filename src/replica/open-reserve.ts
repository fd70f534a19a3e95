// The open reserve: space kept in every replica directory so that the replica can always be opened again, even on a
// disk that filled up (thin volumes over-provisioned past the disk, or something else writing there).
//
// Opening a replica writes: the block map is compacted into a new checkpoint (map-journal.ts, a whole new file beside
// the old one until the rename) and the pending map log starts a new epoch. On a full disk those writes fail with
// ENOSPC, and every volume on that disk would stay down at its next attach or restart until someone freed space,
// although its data is all there. So each replica keeps `space.reserve`, a file of allocated zeros as large as what
// an open writes. An open that fails for want of space removes it and tries once more, with the space it gave back;
// after an open the file is made again when the disk has room (best effort: a disk still full just leaves it out).
// Writes into the volume are not helped: a full disk fails them (EIO to the client) until space is freed.

import { isNoSpace } from '../util/disk.js';
import type { StorageDir } from './storage.js';

export const RESERVE_FILE = 'space.reserve';

/** Besides the checkpoint: the journal's and pending log's new headers and first records, with room to spare. */
const SLACK = 64 * 1024;
/** Zeros are written this much at a time. */
const STEP = 1024 * 1024;

/** The reserve for a volume of `blockCount` blocks: a checkpoint (64-byte header, 2 bits per block) and the slack. */
export function reserveBytes(blockCount: number): number {
  const bytes = 64 + Math.ceil(blockCount / 4) + SLACK;
  return Math.ceil(bytes / 4096) * 4096;
}

/** Makes the reserve `bytes` long (allocated, synced) unless it already is; false when the disk has no room for it. */
export async function keepReserve(storage: StorageDir, bytes: number): Promise<boolean> {
  const file = await storage.open(RESERVE_FILE, { create: true });
  try {
    if ((await file.size()) === bytes) return true;
    const zeros = new Uint8Array(Math.min(STEP, bytes));
    for (let at = 0; at < bytes; at += zeros.length) await file.write(zeros.subarray(0, Math.min(zeros.length, bytes - at)), at);
    await file.truncate(bytes);
    await file.datasync();
    return true;
  } catch (err) {
    if (!isNoSpace(err)) throw err;
    // Half a reserve would be taken for a whole one at the next open: none at all.
    await file.truncate(0).catch(() => undefined);
    return false;
  } finally {
    await file.close();
  }
}

/** Gives the reserve's space back; true when there was one to give. */
export async function dropReserve(storage: StorageDir): Promise<boolean> {
  let size: number;
  try {
    const file = await storage.open(RESERVE_FILE, { create: false });
    size = await file.size().finally(() => file.close());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  await storage.remove(RESERVE_FILE);
  await storage.syncDir();
  return size > 0;
}
