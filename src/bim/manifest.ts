// The chunk manifest that sync is built on: the file cut into fixed-size chunks (the last one shorter), each with its
// SHA-256 and a `zero` flag when every byte is 0. The receiver fetches it once, skips zero chunks (they stay holes),
// verifies every other chunk against it, and binds its persisted chunk map to the manifest's digest so a resumed
// sync never mixes chunks of two different files. Pure functions only; computing one from a file is in hashing.ts.

import { createHash } from 'node:crypto';
import { BimError } from './errors.js';

export interface ManifestChunk {
  offset: number;
  length: number;
  /** SHA-256 (hex) of the chunk's bytes. */
  sha256: string;
  /** Present (true) when every byte is zero: the receiver leaves a hole and transfers nothing. */
  zero?: true;
}

export interface ChunkManifest {
  name: string;
  uuid: string;
  size: number;
  chunkSize: number;
  /** SHA-512 of the whole file as recorded by the sender. */
  sha512: string;
  chunks: ManifestChunk[];
}

export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

/** Number of chunks of a file. */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

/** Length of chunk `i` (the last one may be shorter). */
export function chunkLength(size: number, chunkSize: number, i: number): number {
  return Math.min(chunkSize, size - i * chunkSize);
}

const zeroHashes = new Map<number, string>();
let zeroBlock = Buffer.alloc(0);

/** A buffer of at least `n` zero bytes, shared: never write into it. */
export function zeros(n: number): Buffer {
  if (zeroBlock.length < n) zeroBlock = Buffer.alloc(Math.max(n, 1024 * 1024));
  return zeroBlock.subarray(0, n);
}

/** SHA-256 of `length` zero bytes, memoised (zero chunks all have one of at most two lengths). */
export function zeroSha256(length: number): string {
  let h = zeroHashes.get(length);
  if (h === undefined) {
    const hash = createHash('sha256');
    const step = 1024 * 1024;
    for (let done = 0; done < length; done += step) hash.update(zeros(Math.min(step, length - done)));
    h = hash.digest('hex');
    zeroHashes.set(length, h);
  }
  return h;
}

/** True when every byte of `buf` is 0 (memcmp against a zero block). */
export function isAllZero(buf: Uint8Array): boolean {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).equals(zeros(buf.byteLength));
}

/**
 * SHA-256 over the manifest's layout and chunk hashes. Two manifests with the same digest describe the same bytes in
 * the same chunks; the persisted chunk map stores it.
 */
export function manifestDigest(m: Pick<ChunkManifest, 'size' | 'chunkSize' | 'chunks'>): Buffer {
  const h = createHash('sha256');
  h.update(`stratum-manifest-v1 ${m.size} ${m.chunkSize}\n`);
  for (const c of m.chunks) h.update(`${c.offset} ${c.length} ${c.zero ? 'z' : c.sha256}\n`);
  return h.digest();
}

/** Total bytes of the non-zero chunks: what a sync has to transfer. */
export function dataBytes(m: ChunkManifest): number {
  let n = 0;
  for (const c of m.chunks) if (!c.zero) n += c.length;
  return n;
}

/**
 * Validates a manifest received from a peer against what the receiver expects, so a malformed or foreign manifest
 * fails here, naming the peer, and not later as a mysterious checksum mismatch.
 */
export function checkManifest(v: unknown, want: { size: number; chunkSize: number }, from: string): ChunkManifest {
  const bad = (why: string) => new BimError('PeerFailed', `chunk manifest from ${from} is unusable: ${why}`);
  if (!v || typeof v !== 'object') throw bad('not a JSON object');
  const m = v as Record<string, unknown>;
  if (m.size !== want.size) throw bad(`it describes ${String(m.size)} bytes, the file has ${want.size}`);
  if (m.chunkSize !== want.chunkSize) throw bad(`chunk size ${String(m.chunkSize)}, asked for ${want.chunkSize}`);
  if (typeof m.sha512 !== 'string' || !/^[0-9a-f]{128}$/.test(m.sha512)) throw bad('no SHA-512 of the whole file');
  if (!Array.isArray(m.chunks)) throw bad('no chunk list');
  const n = chunkCount(want.size, want.chunkSize);
  if (m.chunks.length !== n) throw bad(`${m.chunks.length} chunks, expected ${n}`);
  const chunks: ManifestChunk[] = [];
  for (let i = 0; i < n; i++) {
    const c = m.chunks[i] as Record<string, unknown> | undefined;
    const offset = i * want.chunkSize;
    const length = chunkLength(want.size, want.chunkSize, i);
    if (!c || c.offset !== offset || c.length !== length) throw bad(`chunk ${i} is not at offset ${offset} with length ${length}`);
    if (typeof c.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(c.sha256)) throw bad(`chunk ${i} has no SHA-256`);
    if (c.zero === true) {
      if (c.sha256 !== zeroSha256(length)) throw bad(`chunk ${i} is flagged zero but its SHA-256 is not that of zeros`);
      chunks.push({ offset, length, sha256: c.sha256, zero: true });
    } else {
      chunks.push({ offset, length, sha256: c.sha256 });
    }
  }
  return {
    name: typeof m.name === 'string' ? m.name : '',
    uuid: typeof m.uuid === 'string' ? m.uuid : '',
    size: want.size,
    chunkSize: want.chunkSize,
    sha512: m.sha512,
    chunks,
  };
}

/**
 * Builds manifests incrementally while a file is read or written front to back (the same pass that computes the
 * SHA-512). Bytes are fed in order; a chunk's SHA-256 is only computed once a non-zero byte shows up, so holes cost a
 * memcmp. The size may be unknown while bytes stream in (a download without Content-Length): `finish` then takes it.
 */
export class ManifestBuilder {
  readonly chunkSize: number;
  readonly size: number | undefined;
  readonly chunks: ManifestChunk[] = [];
  #hash: ReturnType<typeof createHash> | undefined;
  #inChunk = 0;

  constructor(size: number | undefined, chunkSize: number) {
    this.size = size;
    this.chunkSize = chunkSize;
  }

  /** Bytes fed so far. */
  get fed(): number {
    return this.chunks.length * this.chunkSize + this.#inChunk;
  }

  /** An independent builder at the same point (a mark to roll back to). */
  copy(): ManifestBuilder {
    const b = new ManifestBuilder(this.size, this.chunkSize);
    b.chunks.push(...this.chunks);
    b.#hash = this.#hash?.copy();
    b.#inChunk = this.#inChunk;
    return b;
  }

  update(buf: Uint8Array): void {
    let pos = 0;
    while (pos < buf.length) {
      const i = this.chunks.length;
      const length = this.size === undefined ? this.chunkSize : chunkLength(this.size, this.chunkSize, i);
      if (this.size !== undefined && i >= chunkCount(this.size, this.chunkSize)) throw new BimError('Internal', `more than ${this.size} bytes fed to a manifest`);
      const want = length - this.#inChunk;
      const take = Math.min(want, buf.length - pos);
      const piece = buf.subarray(pos, pos + take);
      if (this.#hash) {
        this.#hash.update(piece);
      } else if (!isAllZero(piece)) {
        // The first non-zero byte of this chunk: account for the zeros before it, then hash normally.
        this.#hash = createHash('sha256');
        for (let done = 0; done < this.#inChunk; done += 1024 * 1024) this.#hash.update(zeros(Math.min(1024 * 1024, this.#inChunk - done)));
        this.#hash.update(piece);
      }
      this.#inChunk += take;
      pos += take;
      if (take === want) this.#finishChunk(length);
    }
  }

  #finishChunk(length: number): void {
    const offset = this.chunks.length * this.chunkSize;
    if (this.#hash) this.chunks.push({ offset, length, sha256: this.#hash.digest('hex') });
    else this.chunks.push({ offset, length, sha256: zeroSha256(length), zero: true });
    this.#hash = undefined;
    this.#inChunk = 0;
  }

  /** The manifest, once exactly `size` bytes were fed (the size given here when the constructor had none). */
  finish(ids: { name: string; uuid: string; sha512: string }, finalSize?: number): ChunkManifest {
    const size = this.size ?? finalSize ?? this.fed;
    if (this.size === undefined && this.#inChunk > 0 && this.fed === size) this.#finishChunk(this.#inChunk);
    if (this.chunks.length !== chunkCount(size, this.chunkSize) || this.#inChunk !== 0) {
      throw new BimError('Internal', `manifest of ${ids.name} is incomplete: ${this.chunks.length} chunks built of ${chunkCount(size, this.chunkSize)}`);
    }
    return { ...ids, size, chunkSize: this.chunkSize, chunks: this.chunks };
  }
}
