// The few file operations a replica directory needs, behind a small interface: positional reads and writes,
// fdatasync, and whole-file atomic replacement. The real implementation is plain fs.promises on a directory; tests
// substitute an in-memory directory that models what survives a power cut (testing.ts), which is how the map's
// crash consistency is checked without pulling plugs.

import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

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

class FsFile implements StorageFile {
  readonly #handle: FileHandle;

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  async read(buf: Uint8Array, position: number): Promise<number> {
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.#handle.read(buf, done, buf.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.byteLength) {
      const { bytesWritten } = await this.#handle.write(data, done, data.byteLength - done, position + done);
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

/** The directory at `path` (created if missing) as a StorageDir. */
export async function fsStorage(path: string): Promise<StorageDir> {
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
      return new FsFile(await open(join(path, name), flags, 0o644));
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
