// The data source's work directory, `<disk>/tmp/<name>-<uuid>/`: the partial file, the finished file and a
// checkpoint. The SHA-512 is updated as bytes are written, once; Node cannot serialise a hash state, so after a
// restart the durable prefix is re-hashed once (`ensureHash`) and hashing continues from there. The checkpoint
// records only what was fsynced, so a crash loses at most the bytes since the last `sync()`.
//
//   backing.part     bytes received so far (download or upload target)
//   backing          the complete, verified, fsynced file, until the manager renames it away
//   checkpoint.json  { offset, source fingerprint, validator, declared size, completion, transfer }

import { DATA_SOURCE_FINISHED_FILE } from '../api/backing-image-data-source.js';
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, rmdir, stat, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DataSourceError } from './errors.js';
import type { SourceValidator } from './resume.js';

/** Large sequential buffers: one syscall and one hash update per 4 MiB. */
export const IO_CHUNK = 4 * 1024 * 1024;
/** Hashed in place of the bytes of a hole. */
const ZEROS = Buffer.alloc(1024 * 1024);

export interface FileIdentity {
  size: number;
  /** Nanosecond mtime as a decimal string (beyond 2^53). */
  mtimeNs: string;
  ino: string;
}

export interface CompleteInfo {
  checksum: string;
  size: number;
  format: string;
  virtualSize: number;
  identity: FileIdentity;
}

export interface Checkpoint {
  version: 1;
  /** A fingerprint of the source (a hash of the URL, never the URL, which may carry credentials). */
  sourceKey: string;
  /** Bytes of `backing.part` that were fsynced. */
  offset: number;
  validator?: SourceValidator;
  declaredSize?: number;
  declaredChecksum?: string;
  complete?: CompleteInfo;
  transferred?: boolean;
}

interface Opts {
  signal?: AbortSignal | undefined;
}

export interface HashMark {
  offset: number;
  hash: Hash | undefined;
}

export class WorkFile {
  #removed = false;
  readonly dir: string;
  readonly partPath: string;
  readonly filePath: string;
  readonly #checkpointPath: string;
  #checkpoint: Checkpoint;
  #handle: FileHandle | undefined;
  #hash: Hash = createHash('sha512');
  /** Bytes covered by #hash; -1 after a failed write left it out of step with the file. */
  #hashedTo = 0;
  #offset = 0;
  #rehash: Promise<void> | undefined;

  private constructor(dir: string, checkpoint: Checkpoint) {
    this.dir = dir;
    this.partPath = join(dir, 'backing.part');
    this.filePath = join(dir, DATA_SOURCE_FINISHED_FILE);
    this.#checkpointPath = join(dir, 'checkpoint.json');
    this.#checkpoint = checkpoint;
  }

  /** Opens (creating) the work dir; a checkpoint of another source is discarded with the data it describes. */
  static async open(dir: string, sourceKey: string, { signal }: Opts = {}): Promise<WorkFile> {
    await mkdir(dir, { recursive: true });
    signal?.throwIfAborted();
    const fresh: Checkpoint = { version: 1, sourceKey, offset: 0 };
    let cp = fresh;
    try {
      const parsed = JSON.parse(await readFile(join(dir, 'checkpoint.json'), 'utf8')) as Partial<Checkpoint>;
      if (parsed.version === 1 && parsed.sourceKey === sourceKey && Number.isSafeInteger(parsed.offset)) cp = parsed as Checkpoint;
    } catch {
      // Missing or torn checkpoint: start over, the data it described is untrusted.
    }
    const wf = new WorkFile(dir, cp);
    if (cp === fresh) {
      await rm(wf.partPath, { force: true });
      await rm(wf.filePath, { force: true });
    }
    return wf;
  }

  get checkpoint(): Readonly<Checkpoint> {
    return this.#checkpoint;
  }

  /** Bytes in the part file (written, not necessarily durable). */
  get offset(): number {
    return this.#offset;
  }

  get durableOffset(): number {
    return this.#checkpoint.offset;
  }

  /** Changes checkpoint fields in memory; `persist()` or `sync()` writes them. */
  patch(p: Partial<Omit<Checkpoint, 'version' | 'sourceKey'>>): void {
    this.#checkpoint = { ...this.#checkpoint, ...p };
  }

  /** Writes the checkpoint atomically (tmp, fsync, rename). */
  async persist({ signal }: Opts = {}): Promise<void> {
    signal?.throwIfAborted();
    // After removeAll nothing may bring the directory back.
    if (this.#removed) return;
    const tmp = `${this.#checkpointPath}.tmp`;
    await writeFile(tmp, JSON.stringify(this.#checkpoint), { flush: true });
    await rename(tmp, this.#checkpointPath);
  }

  /** Opens the part file at the durable offset, cutting off anything written after the last sync. */
  async openPart({ signal }: Opts = {}): Promise<void> {
    if (this.#handle) return;
    // O_RDWR|O_CREAT rather than 'a+': positional writes on an O_APPEND descriptor go to the end on Linux.
    const handle = await open(this.partPath, constants.O_RDWR | constants.O_CREAT, 0o644);
    this.#handle = handle;
    const { size } = await handle.stat();
    const offset = Math.min(size, this.#checkpoint.offset);
    await handle.truncate(offset);
    signal?.throwIfAborted();
    this.#offset = offset;
    this.#checkpoint.offset = offset;
    this.#hash = createHash('sha512');
    this.#hashedTo = offset === 0 ? 0 : -1;
  }

  /** Drops every byte: the next pass starts at 0 and so does the hash. */
  async reset({ signal }: Opts = {}): Promise<void> {
    await this.#part().truncate(0);
    this.#offset = 0;
    this.#hash = createHash('sha512');
    this.#hashedTo = 0;
    this.patch({ offset: 0 });
    const { validator: _v, ...rest } = this.#checkpoint;
    this.#checkpoint = rest;
    await this.persist({ signal });
  }

  /** Whether the hash covers every written byte (else `ensureHash` reads the prefix once). */
  get hashCurrent(): boolean {
    return this.#hashedTo === this.#offset;
  }

  /** Brings the hash up to the written offset by reading the prefix from disk, once even if called concurrently. */
  ensureHash({ signal }: Opts = {}): Promise<void> {
    if (this.hashCurrent) return Promise.resolve();
    this.#rehash ??= this.#hashPrefix(signal).finally(() => (this.#rehash = undefined));
    return this.#rehash;
  }

  async #hashPrefix(signal: AbortSignal | undefined): Promise<void> {
    const hash = createHash('sha512');
    const buf = Buffer.allocUnsafe(IO_CHUNK);
    const end = this.#offset;
    for (let pos = 0; pos < end; ) {
      signal?.throwIfAborted();
      const { bytesRead } = await this.#part().read(buf, 0, Math.min(buf.length, end - pos), pos);
      if (bytesRead === 0) throw new DataSourceError('Internal', `the partial file ended at ${pos} while re-hashing ${end} bytes`);
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    this.#hash = hash;
    this.#hashedTo = end;
  }

  /** Appends `buf` at the current offset, hashing it while the write runs on the thread pool. The caller must not
   *  touch `buf` until this resolves. */
  async write(buf: Buffer): Promise<void> {
    const pos = this.#offset;
    const hashed = this.#hashedTo === pos;
    const handle = this.#part();
    const pending = writeAll(handle, buf, pos);
    if (hashed) this.#hash.update(buf);
    try {
      await pending;
    } catch (err) {
      // Part of `buf` may be on disk and all of it is in the hash: re-read before trusting the hash again.
      if (hashed) this.#hashedTo = -1;
      throw new DataSourceError('Internal', `writing ${buf.length} bytes at offset ${pos} of ${this.partPath} failed: ${(err as Error).message}`, { cause: err });
    }
    this.#offset = pos + buf.length;
    if (hashed) this.#hashedTo = this.#offset;
  }

  /**
   * Appends `length` zero bytes as a hole: hashed as zeros, never written (the file is extended, which leaves the
   * range unallocated). An export's unallocated and all-zero ranges cost nothing on disk this way.
   */
  async writeHole(length: number): Promise<void> {
    if (length <= 0) return;
    const pos = this.#offset;
    if (this.#hashedTo === pos) {
      for (let done = 0; done < length; done += ZEROS.length) this.#hash.update(ZEROS.subarray(0, Math.min(ZEROS.length, length - done)));
      this.#hashedTo = pos + length;
    }
    try {
      await this.#part().truncate(pos + length);
    } catch (err) {
      this.#hashedTo = -1;
      throw new DataSourceError('Internal', `extending ${this.partPath} to ${pos + length} bytes failed: ${(err as Error).message}`, { cause: err });
    }
    this.#offset = pos + length;
  }

  /** fdatasync, then record the offset as durable. */
  async sync({ signal }: Opts = {}): Promise<void> {
    await this.#part().datasync();
    this.patch({ offset: this.#offset });
    await this.persist({ signal });
  }

  /** A point to come back to with `rollback` (an upload chunk that turned out too large). */
  mark(): HashMark {
    return { offset: this.#offset, hash: this.hashCurrent ? this.#hash.copy() : undefined };
  }

  async rollback(m: HashMark): Promise<void> {
    await this.#part().truncate(m.offset);
    this.#offset = m.offset;
    if (m.hash) {
      this.#hash = m.hash;
      this.#hashedTo = m.offset;
    } else this.#hashedTo = -1;
    if (this.#checkpoint.offset > m.offset) this.patch({ offset: m.offset });
  }

  /** The SHA-512 of the written bytes (requires a current hash). */
  digest(): string {
    if (!this.hashCurrent) throw new DataSourceError('Internal', 'the checksum was asked for before the hash caught up with the file');
    return this.#hash.copy().digest('hex');
  }

  /** fsync, rename the part file to its final name, fsync the directory; returns the final file's identity. */
  async finish({ signal }: Opts = {}): Promise<FileIdentity> {
    const handle = this.#part();
    await handle.sync();
    await handle.close();
    this.#handle = undefined;
    signal?.throwIfAborted();
    await rename(this.partPath, this.filePath);
    await syncDir(this.dir);
    return identityOf(this.filePath);
  }

  /** Deletes the data (part and final file) and forgets the progress; the directory stays. */
  async removeData(): Promise<void> {
    await this.close();
    await rm(this.partPath, { force: true });
    await rm(this.filePath, { force: true });
    this.#offset = 0;
    this.#hash = createHash('sha512');
    this.#hashedTo = 0;
    this.#checkpoint = { version: 1, sourceKey: this.#checkpoint.sourceKey, offset: 0 };
    await this.persist();
  }

  /**
   * A file that failed verification is wrong, not incomplete: nothing is worth keeping for a resume, so the
   * whole work directory goes (data and checkpoint) and no later persist recreates it.
   */
  async removeAll(): Promise<void> {
    await this.close();
    this.#removed = true;
    await rm(this.dir, { recursive: true, force: true });
  }

  /** After the manager took the file: drop our metadata and the directory if nothing else is left in it. */
  async cleanupAfterTransfer(): Promise<void> {
    await this.close();
    await rm(this.partPath, { force: true });
    await rm(this.#checkpointPath, { force: true });
    await rmdir(this.dir).catch(() => undefined);
  }

  async close(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    await h?.close();
  }

  #part(): FileHandle {
    if (!this.#handle) throw new DataSourceError('Internal', 'the partial file is not open');
    return this.#handle;
  }
}

async function writeAll(handle: FileHandle, buf: Buffer, pos: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done, pos + done);
    done += bytesWritten;
  }
}

export async function identityOf(path: string): Promise<FileIdentity> {
  const st = await stat(path, { bigint: true });
  return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: st.ino.toString() };
}

/** Refuses a transfer that cannot fit: better now than ENOSPC at 90%. */
export async function ensureSpace(dir: string, needed: number): Promise<void> {
  const st = await statfs(dir);
  const free = st.bavail * st.bsize;
  if (needed > free) {
    throw new DataSourceError('InsufficientStorage', `the file needs ${needed} more bytes but the disk has ${free} free`);
  }
}

/** Bytes free for this file system's non-root users: a download of unknown length must stay below it. */
export async function freeSpace(dir: string): Promise<number> {
  const st = await statfs(dir);
  return st.bavail * st.bsize;
}

/** fsync a directory so a rename in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
