// The few file operations a replica directory needs, behind a small interface: positional reads and writes,
// fdatasync, and whole-file atomic replacement. The real implementation is plain fs.promises on a directory; tests
// substitute an in-memory directory that models what survives a power cut (testing.ts), which is how the map's
// crash consistency is checked without pulling plugs.
//
// Small positional reads and writes are done synchronously on the event-loop thread while the disk answers fast
// (util/sync-io-gate.ts): through the libuv thread pool, the hand-off each way was most of a replica's CPU per 4 KiB
// request. fdatasync is always asynchronous.

import { constants as fsConstants, readSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageFormatError, type ByteSource } from '../imagefmt/index.js';
import type { SyncIoGate } from '../util/sync-io-gate.js';

export interface StorageFile {
  /** Fill `buf` from `position`; returns the bytes read (fewer only at end of file). */
  read(buf: Uint8Array, position: number): Promise<number>;
  /** Write all of `data` at `position` (into the page cache: not durable until `datasync`). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Make every completed write durable (fdatasync). */
  datasync(): Promise<void>;
  size(): Promise<number>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface StorageDir {
  /** A name for messages (the directory path). */
  readonly location: string;
  /** Open an existing file read-write; `create` makes it (empty) when it does not exist. */
  open(name: string, opts: { create: boolean }): Promise<StorageFile>;
  /** The whole file, or undefined when it does not exist. */
  readFile(name: string): Promise<Uint8Array | undefined>;
  /**
   * Replace `name` with `data` atomically and durably: after a crash the file holds either its old content or
   * `data`, never a mix, and once this resolves it holds `data`.
   */
  writeFileAtomic(name: string, data: Uint8Array): Promise<void>;
  /** Make the directory entries durable (after creating files). */
  syncDir(): Promise<void>;
  remove(name: string): Promise<void>;
}

/** Positional read of all of `buf` (fewer bytes only at end of file), sync through `gate` when it allows. */
async function readFully(handle: FileHandle, gate: SyncIoGate | undefined, buf: Uint8Array, position: number): Promise<number> {
  const sync = gate?.run(buf.length, () => {
    let done = 0;
    while (done < buf.length) {
      const n = readSync(handle.fd, buf, done, buf.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  });
  if (sync !== undefined) return sync;
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

class FsFile implements StorageFile {
  readonly #handle: FileHandle;
  readonly #gate: SyncIoGate | undefined;

  constructor(handle: FileHandle, gate?: SyncIoGate) {
    this.#handle = handle;
    this.#gate = gate;
  }

  read(buf: Uint8Array, position: number): Promise<number> {
    return readFully(this.#handle, this.#gate, buf, position);
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    const handle = this.#handle;
    const synced = this.#gate?.run(data.byteLength, () => {
      let done = 0;
      while (done < data.byteLength) done += writeSync(handle.fd, data, done, data.byteLength - done, position + done);
      return true;
    });
    if (synced) return;
    let done = 0;
    while (done < data.byteLength) {
      const { bytesWritten } = await handle.write(data, done, data.byteLength - done, position + done);
      done += bytesWritten;
    }
  }

  datasync(): Promise<void> {
    return this.#handle.datasync();
  }

  async size(): Promise<number> {
    return (await this.#handle.stat()).size;
  }

  truncate(length: number): Promise<void> {
    return this.#handle.truncate(length);
  }

  close(): Promise<void> {
    return this.#handle.close();
  }
}

/**
 * The backing file at `path`, read-only, as the image readers' ByteSource, with small reads through `gate` (the
 * qcow2 reader's 4 KiB data reads and its cached L2-table loads are what unwritten blocks cost).
 */
export async function openBackingSource(path: string, gate: SyncIoGate | undefined): Promise<ByteSource> {
  const handle = await open(path, 'r');
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new ImageFormatError('NotAFile', `image ${JSON.stringify(path)} is not a regular file`);
    return { size: st.size, read: (buf, position) => readFully(handle, gate, buf, position), close: () => handle.close() };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** The directory at `path` (created if missing) as a StorageDir; small head and journal I/O goes through `gate`. */
export async function fsStorage(path: string, { gate }: { gate?: SyncIoGate } = {}): Promise<StorageDir> {
  await mkdir(path, { recursive: true });
  const syncDir = async (): Promise<void> => {
    // fsync on a directory descriptor is what makes a rename or a new entry survive a crash on Linux.
    const dir = await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  };
  return {
    location: path,
    async open(name, { create }) {
      const flags = fsConstants.O_RDWR | (create ? fsConstants.O_CREAT : 0);
      return new FsFile(await open(join(path, name), flags, 0o644), gate);
    },
    async readFile(name) {
      try {
        return await readFile(join(path, name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
    async writeFileAtomic(name, data) {
      const tmp = join(path, `${name}.tmp`);
      const file = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o644);
      try {
        await new FsFile(file).write(data, 0);
        await file.datasync();
      } finally {
        await file.close();
      }
      await rename(tmp, join(path, name));
      await syncDir();
    },
    syncDir,
    async remove(name) {
      await rm(join(path, name), { force: true });
    },
  };
}
