// The data source's work directory, `<disk>/tmp/<name>-<uuid>/`: the partial file, the finished file and a
// checkpoint. The SHA-512 is updated as bytes are written, once, on a hashing thread (stream-hasher.ts) while the
// write runs; Node cannot serialise a hash state, so after a restart the durable prefix is re-hashed once
// (`ensureHash`) and hashing continues from there. The checkpoint
// records only what was fsynced, so a crash loses at most the bytes since the last `sync()`.
//
// Holes: an all-zero 64 KiB block past the end of what is on disk is not written; the file is extended with
// ftruncate before every sync instead, so the zeros stay holes and cost no space. The same pass that hashes the
// bytes builds the chunk manifest (SHA-256 per 4 MiB, zero chunks flagged) that peers sync from, so the manager
// that takes the file over never reads it to serve its first copy.
//
//   backing.part                  bytes received so far (download or upload target)
//   backing                       the complete, verified, fsynced file, until the manager renames it away
//   backing.chunks-4194304.json   its chunk manifest with its identity (the manager's manifest cache format)
//   checkpoint.json               { offset, source fingerprint, validator, declared size, completion, transfer }

import { DATA_SOURCE_FINISHED_FILE } from '../api/backing-image-data-source.js';
import { reserveFor } from '../api/disk-layout.js';
import { identityFromStat, type FileIdentity } from '../api/file-identity.js';
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, rmdir, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_CHUNK_SIZE, manifestSidecarPath, type ChunkManifest } from '../bim/index.js';
import { diskSpace, fsyncDir } from '../util/disk.js';
import { writeSparse } from '../util/sparse-write.js';
import { DataSourceError } from './errors.js';
import { StreamHasher } from './stream-hasher.js';
import type { SourceValidator } from './resume.js';

/** Large sequential buffers: one syscall and one hash update per 4 MiB. */
export const IO_CHUNK = 4 * 1024 * 1024;

export type { FileIdentity } from '../api/file-identity.js';

export interface CompleteInfo {
  checksum: string;
  size: number;
  format: string;
  virtualSize: number;
  identity: FileIdentity;
  /** The chunk manifest's anchor (BackingImage status.chunkManifestDigest); absent in checkpoints of older versions. */
  chunkManifestDigest?: string;
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
  /** The hash was current at the mark, and the hashing thread holds its state. */
  hashed: boolean;
}

export class WorkFile {
  #removed = false;
  readonly dir: string;
  readonly partPath: string;
  readonly filePath: string;
  /** The chunk manifest of `backing`, beside it, for the manager that takes it over. */
  readonly manifestPath: string;
  readonly #checkpointPath: string;
  #checkpoint: Checkpoint;
  #handle: FileHandle | undefined;
  /** The SHA-512 and the chunk manifest of the bytes written, started at first use. */
  #hasher: StreamHasher | undefined;
  /** Bytes covered by #hasher; -1 after a failed write left it out of step with the file. */
  #hashedTo = 0;
  #offset = 0;
  /** The part file's size on disk: zero blocks at or beyond it need not be written (they read as zeros). */
  #end = 0;
  #rehash: Promise<void> | undefined;

  private constructor(dir: string, checkpoint: Checkpoint) {
    this.dir = dir;
    this.partPath = join(dir, 'backing.part');
    this.filePath = join(dir, DATA_SOURCE_FINISHED_FILE);
    this.manifestPath = manifestSidecarPath(this.filePath, DEFAULT_CHUNK_SIZE);
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
      await rm(wf.manifestPath, { force: true });
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
    this.#end = offset;
    this.#checkpoint.offset = offset;
    this.#restartHash(offset === 0 ? 0 : -1);
  }

  #restartHash(hashedTo: number): void {
    void this.#hasher?.close();
    this.#hasher = undefined;
    this.#hashedTo = hashedTo;
  }

  #hash(): StreamHasher {
    return (this.#hasher ??= new StreamHasher(DEFAULT_CHUNK_SIZE));
  }

  /** Drops every byte: the next pass starts at 0 and so does the hash. */
  async reset({ signal }: Opts = {}): Promise<void> {
    await this.#part().truncate(0);
    this.#offset = 0;
    this.#end = 0;
    this.#restartHash(0);
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
    const end = this.#offset;
    // Holes past the last written byte read as zeros only once the file is extended over them.
    if (this.#end < end) await this.#extend();
    this.#restartHash(-1);
    await this.#hash().rehash(this.partPath, end, signal);
    this.#hashedTo = end;
  }

  /** Appends `buf` at the current offset, hashing it while the write runs on the thread pool; all-zero blocks beyond
   *  the file's end are not written (holes). The caller must not touch `buf` until this resolves. */
  async write(buf: Buffer): Promise<void> {
    const pos = this.#offset;
    const hashed = this.#hashedTo === pos;
    const handle = this.#part();
    // The hasher first: starting its thread can throw, and must not leave the write below unawaited.
    const hasher = hashed ? this.#hash() : undefined;
    const pending = writeSparse(handle, buf, pos, this.#end);
    const hashing = hasher?.update(buf);
    try {
      const end = await pending;
      if (end > this.#end) this.#end = end;
    } catch (err) {
      await hashing?.catch(() => undefined);
      // Part of `buf` may be on disk and all of it is in the hash: re-read before trusting the hash again, and write
      // zero blocks over that range from now on.
      if (hashed) this.#hashedTo = -1;
      this.#end = Math.max(this.#end, pos + buf.length);
      throw new DataSourceError('Internal', `writing ${buf.length} bytes at offset ${pos} of ${this.partPath} failed: ${(err as Error).message}`, { cause: err });
    }
    // A hash that failed leaves the bytes out of it: ensureHash starts over from the file.
    try {
      await hashing;
    } catch (err) {
      this.#offset = pos + buf.length;
      this.#restartHash(-1);
      throw err;
    }
    this.#offset = pos + buf.length;
    if (hashed) this.#hashedTo = this.#offset;
  }

  /** Extends the file over trailing holes, fdatasync, then records the offset as durable. */
  async sync({ signal }: Opts = {}): Promise<void> {
    if (this.#end < this.#offset) await this.#extend();
    await this.#part().datasync();
    this.patch({ offset: this.#offset });
    await this.persist({ signal });
  }

  /** A point to come back to with `rollback` (an upload chunk that turned out too large). */
  async mark(): Promise<HashMark> {
    const hashed = this.hashCurrent;
    if (hashed) await this.#hash().mark();
    return { offset: this.#offset, hashed };
  }

  async rollback(m: HashMark): Promise<void> {
    await this.#part().truncate(m.offset);
    this.#offset = m.offset;
    this.#end = m.offset;
    if (m.hashed && this.#hasher) {
      await this.#hasher.rollback();
      this.#hashedTo = m.offset;
    } else this.#restartHash(-1);
    if (this.#checkpoint.offset > m.offset) this.patch({ offset: m.offset });
  }

  /** The SHA-512 of the written bytes (requires a current hash). */
  async digest(): Promise<string> {
    if (!this.hashCurrent) throw new DataSourceError('Internal', 'the checksum was asked for before the hash caught up with the file');
    return this.#hash().digest();
  }

  /** The chunk manifest of the written bytes (requires a current hash; call once, at the end). */
  async manifest(ids: { name: string; uuid: string; sha512: string }): Promise<ChunkManifest> {
    if (!this.hashCurrent) throw new DataSourceError('Internal', 'the chunk manifest was asked for before the hash caught up with the file');
    return this.#hash().manifest(ids, this.#offset);
  }

  /** Writes the finished file's manifest beside it, tied to its identity (the manager's manifest cache format). */
  async saveManifest(identity: FileIdentity, manifest: ChunkManifest): Promise<void> {
    const tmp = `${this.manifestPath}.tmp`;
    await writeFile(tmp, JSON.stringify({ identity, manifest }), { flush: true });
    await rename(tmp, this.manifestPath);
  }

  /** fsync, rename the part file to its final name, fsync the directory; returns the final file's identity. */
  async finish({ signal }: Opts = {}): Promise<FileIdentity> {
    const handle = this.#part();
    if (this.#end < this.#offset) await this.#extend();
    await handle.sync();
    await handle.close();
    this.#handle = undefined;
    signal?.throwIfAborted();
    await rename(this.partPath, this.filePath);
    await fsyncDir(this.dir);
    return identityOf(this.filePath);
  }

  /** Deletes the data (part and final file) and forgets the progress; the directory stays. */
  async removeData(): Promise<void> {
    await this.close();
    await rm(this.partPath, { force: true });
    await rm(this.filePath, { force: true });
    await rm(this.manifestPath, { force: true });
    this.#offset = 0;
    this.#end = 0;
    this.#restartHash(0);
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
    await rm(this.manifestPath, { force: true });
    await rm(this.#checkpointPath, { force: true });
    await rmdir(this.dir).catch(() => undefined);
  }

  /** Closes the partial file and stops the hashing thread (the hash is rebuilt from the file if writing resumes). */
  async close(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    this.#restartHash(this.#offset === 0 ? 0 : -1);
    await h?.close();
  }

  /** ftruncate over the trailing holes: the file's size becomes the offset, its zeros allocate nothing. */
  async #extend(): Promise<void> {
    await this.#part().truncate(this.#offset);
    this.#end = this.#offset;
  }

  #part(): FileHandle {
    if (!this.#handle) throw new DataSourceError('Internal', 'the partial file is not open');
    return this.#handle;
  }
}

export async function identityOf(path: string): Promise<FileIdentity> {
  return identityFromStat(await stat(path, { bigint: true }));
}

/**
 * Refuses a transfer that cannot fit with the disk's reserve left free for the volumes on it (reserveFor): better
 * now than ENOSPC at 90%, or a disk full under live replicas.
 */
export async function ensureSpace(dir: string, needed: number): Promise<void> {
  const { free, total } = await diskSpace(dir);
  const reserve = reserveFor(total);
  if (needed + reserve > free) {
    throw new DataSourceError('InsufficientStorage', `the file needs ${needed} more bytes and ${reserve} must stay free for the volumes on this disk, but the disk has ${free} free`);
  }
}
