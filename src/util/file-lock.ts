// Exclusive OS locks on files: Linux open-file-description locks (fcntl F_OFD_SETLK, through fs-native-extensions).
// The kernel holds the lock for as long as the file descriptor is open and drops it when the holder exits, however
// it exits (kill -9, OOM): no stale lock to clean up, no pid guessing. A second open of the same file conflicts
// even inside the same process, so one process cannot open a replica twice either.
//
// The file's content names the holder (pid, what it is, since when) so a refused opener can say who holds it;
// the content of a dead holder stays behind but means nothing once the lock is free, and the next holder
// overwrites it.

import { open, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';

interface NativeLocks {
  tryLock(fd: number, offset?: number, length?: number, opts?: { shared?: boolean }): boolean;
  unlock(fd: number): void;
}
const native = createRequire(import.meta.url)('fs-native-extensions') as NativeLocks;

export interface LockHolder {
  pid: number;
  /** What holds it, in words ("instance manager instance-manager-abc on node-1, replica vol-r-1"). */
  holder: string;
  since: string;
}

export class FileLock {
  readonly path: string;
  readonly #fh: FileHandle;
  #released = false;

  private constructor(path: string, fh: FileHandle) {
    this.path = path;
    this.#fh = fh;
  }

  /** Takes the lock on `path` (created if missing) or says who holds it. Never waits. */
  static async tryAcquire(path: string, holder: string): Promise<FileLock | { heldBy: LockHolder | undefined }> {
    const fh = await open(path, 'a+', 0o600);
    let locked: boolean;
    try {
      locked = native.tryLock(fh.fd);
    } catch (err) {
      await fh.close();
      throw err;
    }
    if (!locked) {
      let heldBy: LockHolder | undefined;
      try {
        heldBy = JSON.parse(await fh.readFile('utf8')) as LockHolder;
      } catch {
        heldBy = undefined; // written by nobody yet, or cut short: the lock itself is what counts
      }
      await fh.close();
      return { heldBy };
    }
    const record: LockHolder = { pid: process.pid, holder, since: new Date().toISOString() };
    await fh.truncate(0);
    await fh.write(`${JSON.stringify(record)}\n`, 0);
    return new FileLock(path, fh);
  }

  /** Drops the lock (closing the descriptor is what releases it). Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#fh.close();
  }
}

/** "pid 123 (instance manager … on node-1) since …", or a plain statement when the holder left no record. */
export function describeHolder(h: LockHolder | undefined): string {
  return h ? `pid ${h.pid} (${h.holder}) since ${h.since}` : 'another process';
}
