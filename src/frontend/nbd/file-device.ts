// FileBlockDevice: a BlockDevice over one plain file with fs.promises (positional reads and writes, fdatasync for
// flush and FUA). It is the reference device for tests and a usable export of raw image files. Node has no
// fallocate, so holes cannot be punched: TRIM and WRITE_ZEROES write zeros in bounded chunks instead.

import { type FileHandle, open } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import type { BlockDevice } from './device.js';
import { NbdErrno } from './constants.js';
import { NbdError } from './errors.js';

export interface FileBlockDeviceOptions {
  /** Open the file read-only and advertise the export as read-only. */
  readOnly?: boolean;
  /** Device size in bytes; a shorter writable file is extended (sparsely) to it. Default: the file's size. */
  size?: number;
  /** Create the file if it does not exist (needs `size`). */
  create?: boolean;
  signal?: AbortSignal;
}

/** Zero writes go out in pieces of this size so a huge TRIM neither allocates nor blocks for long. */
const ZERO_CHUNK = 1024 * 1024;
const zeroes = new Uint8Array(ZERO_CHUNK);

export class FileBlockDevice implements BlockDevice {
  readonly path: string;
  readonly size: number;
  readonly readOnly: boolean;
  /** One file descriptor shared by every connection and no user-space cache: a flush anywhere covers all. */
  readonly multiConn = true;
  readonly #file: FileHandle;

  private constructor(path: string, file: FileHandle, size: number, readOnly: boolean) {
    this.path = path;
    this.#file = file;
    this.size = size;
    this.readOnly = readOnly;
  }

  static async open(path: string, opts: FileBlockDeviceOptions = {}): Promise<FileBlockDevice> {
    opts.signal?.throwIfAborted();
    const readOnly = opts.readOnly ?? false;
    if (opts.size !== undefined && (!Number.isSafeInteger(opts.size) || opts.size < 0)) {
      throw new NbdError('NbdInvalidArgument', `Cannot open ${path} as a block device: size ${opts.size} is invalid`);
    }
    if (opts.create && (readOnly || opts.size === undefined)) {
      throw new NbdError('NbdInvalidArgument', `Cannot create ${path}: creating needs a size and a writable device`);
    }
    const flags = readOnly
      ? fsConstants.O_RDONLY
      : fsConstants.O_RDWR | (opts.create ? fsConstants.O_CREAT : 0);
    const file = await open(path, flags, 0o644);
    try {
      const { size: fileSize } = await file.stat();
      const size = opts.size ?? fileSize;
      // A read-only file shorter than the device is fine: reads past its end return zeros.
      if (!readOnly && fileSize < size) await file.truncate(size);
      opts.signal?.throwIfAborted();
      return new FileBlockDevice(path, file, size, readOnly);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  async read(offset: number, length: number, opts: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    opts.signal?.throwIfAborted();
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.#file.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        buf.fill(0, done);
        break;
      }
      done += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Uint8Array, opts: { fua: boolean; signal?: AbortSignal }): Promise<void> {
    this.#checkWritable('write');
    opts.signal?.throwIfAborted();
    await this.#writeAll(offset, data);
    if (opts.fua) await this.#file.datasync();
  }

  async flush(opts: { signal?: AbortSignal } = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    if (!this.readOnly) await this.#file.datasync();
  }

  /** Zeroes the range: with no hole punching available, zeros keep reads after TRIM as a punched hole would. */
  async trim(offset: number, length: number, opts: { fua: boolean; signal?: AbortSignal }): Promise<void> {
    this.#checkWritable('trim');
    await this.#zero(offset, length, opts.fua, opts.signal);
  }

  async writeZeroes(
    offset: number,
    length: number,
    opts: { fua: boolean; noHole: boolean; signal?: AbortSignal },
  ): Promise<void> {
    this.#checkWritable('write zeroes');
    await this.#zero(offset, length, opts.fua, opts.signal);
  }

  async close(): Promise<void> {
    await this.#file.close();
  }

  async #zero(offset: number, length: number, fua: boolean, signal: AbortSignal | undefined): Promise<void> {
    for (let at = offset, end = offset + length; at < end; at += ZERO_CHUNK) {
      signal?.throwIfAborted();
      await this.#writeAll(at, zeroes.subarray(0, Math.min(ZERO_CHUNK, end - at)));
    }
    if (fua) await this.#file.datasync();
  }

  async #writeAll(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.byteLength) {
      const { bytesWritten } = await this.#file.write(data, done, data.byteLength - done, offset + done);
      done += bytesWritten;
    }
  }

  #checkWritable(what: string): void {
    if (this.readOnly) {
      throw new NbdError('NbdDeviceReadOnly', `Cannot ${what} ${this.path}: the device is read-only`, {
        nbdErrno: NbdErrno.EPERM,
      });
    }
  }
}
