// Reading a whole file once: SHA-512 of every byte and, in the same pass, the chunk manifest. Two 4 MiB buffers
// alternate so the next read runs in the thread pool while the current one is hashed; memory stays at 8 MiB
// whatever the file size. Holes read as zeros (the kernel does not touch the disk for them).

import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { BimError } from './errors.js';
import { ManifestBuilder, type ChunkManifest } from './manifest.js';

const BUFFER = 4 * 1024 * 1024;

export interface HashResult {
  sha512: string;
  size: number;
  /** Present when a chunk size was asked for. */
  manifest?: ChunkManifest;
}

export interface HashOptions {
  signal?: AbortSignal | undefined;
  /** Also build the chunk manifest with this chunk size. */
  chunkSize?: number | undefined;
  /** Names for the manifest. */
  ids?: { name: string; uuid: string };
  /** Called after each buffer with the bytes hashed so far. */
  onProgress?: (bytes: number) => void;
  /** Counts every byte read (the manager's `hashedBytes` statistic). */
  onRead?: (bytes: number) => void;
  /** Read no faster than this (a scrub shares the disk with the volumes over the file); default: as fast as it goes. */
  maxBytesPerSecond?: number | undefined;
}

export async function hashFile(path: string, opts: HashOptions = {}): Promise<HashResult> {
  const { signal } = opts;
  signal?.throwIfAborted();
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const sha = createHash('sha512');
    const builder = opts.chunkSize ? new ManifestBuilder(size, opts.chunkSize) : undefined;
    const bufs = [Buffer.allocUnsafe(Math.min(BUFFER, Math.max(size, 1))), Buffer.allocUnsafe(Math.min(BUFFER, Math.max(size, 1)))] as const;
    const readAt = async (buf: Buffer, pos: number): Promise<number> => {
      let got = 0;
      while (got < buf.length && pos + got < size) {
        const { bytesRead } = await fh.read(buf, got, Math.min(buf.length - got, size - pos - got), pos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got;
    };
    let pos = 0;
    let turn = 0;
    const started = performance.now();
    let pending = size > 0 ? readAt(bufs[0], 0) : Promise.resolve(0);
    while (pos < size) {
      const got = await pending;
      signal?.throwIfAborted();
      if (got === 0) throw new BimError('Internal', `${path} ended at ${pos} bytes while reading ${size}; was it truncated meanwhile?`);
      const cur = bufs[turn]!.subarray(0, got);
      const nextPos = pos + got;
      turn ^= 1;
      pending = nextPos < size ? readAt(bufs[turn]!, nextPos) : Promise.resolve(0);
      sha.update(cur);
      builder?.update(cur);
      pos = nextPos;
      opts.onRead?.(got);
      opts.onProgress?.(pos);
      if (opts.maxBytesPerSecond) {
        const ahead = (pos / opts.maxBytesPerSecond) * 1000 - (performance.now() - started);
        if (ahead > 0) {
          try {
            await sleep(ahead, undefined, { signal });
          } catch (err) {
            await pending.catch(() => 0); // the next read is under way: let it end before the file is closed
            throw err;
          }
        }
      }
    }
    await pending;
    const sha512 = sha.digest('hex');
    const result: HashResult = { sha512, size };
    if (builder) result.manifest = builder.finish({ name: opts.ids?.name ?? '', uuid: opts.ids?.uuid ?? '', sha512 });
    return result;
  } finally {
    await fh.close();
  }
}

/**
 * Indices of the chunks whose bytes in the file do not hash to the manifest's SHA-256. All-zero chunks are skipped
 * unless `includeZero` (a file received from peers leaves them as holes; a ready file's may have been written over).
 */
export async function chunksNotMatching(fh: FileHandle, manifest: ChunkManifest, signal: AbortSignal, onRead: (n: number) => void, { includeZero = false } = {}): Promise<number[]> {
  const bad: number[] = [];
  const buf = Buffer.allocUnsafe(Math.min(manifest.chunkSize, 4 * 1024 * 1024));
  for (const [i, c] of manifest.chunks.entries()) {
    if (c.zero && !includeZero) continue;
    const h = createHash('sha256');
    for (let pos = c.offset, end = c.offset + c.length; pos < end; ) {
      signal.throwIfAborted();
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos);
      if (bytesRead === 0) throw new BimError('Internal', `the file ended at ${pos} while checking chunk ${i}`);
      h.update(buf.subarray(0, bytesRead));
      onRead(bytesRead);
      pos += bytesRead;
    }
    if (h.digest('hex') !== c.sha256) bad.push(i);
  }
  return bad;
}
