// The persisted map of received chunks of a partial file (`backing.partial.map`). A bit is set only after the
// chunk was completely written and the partial file fsynced, so after a crash a resumed sync transfers only the clear
// ones; the set ones are checked by the whole-file SHA-512 like every other byte (and, if that fails, one by one against
// the manifest). The map is bound to the manifest digest, the file size and the
// chunk size: if any differs on resume the partial file is started over.
//
// Layout (little-endian), written atomically (temp, fsync, rename) as a whole:
//
//   0        4        8          12                  20        24                              56
//   +--------+--------+----------+-------------------+---------+-------------------------------+
//   | "SBCM" | ver=1  | chunkSz  | fileSize (u64)    | count   | manifest digest (SHA-256, 32) |
//   +--------+--------+----------+-------------------+---------+-------------------------------+
//   56                          56+ceil(count/8)                 +32
//   +----------------------------+-------------------------------+
//   | bitmap, bit i = chunk i    | SHA-256 of all bytes before   |
//   +----------------------------+-------------------------------+

import { createHash } from 'node:crypto';
import { BimError } from './errors.js';
import { readIfExists, writeFileAtomic, type SignalOptions } from './fsutil.js';

const MAGIC = 0x4d434253; // "SBCM" read as little-endian u32
const VERSION = 1;
const HEADER = 56;
const TRAILER = 32;

export class ChunkMap {
  readonly chunkSize: number;
  readonly fileSize: number;
  readonly count: number;
  readonly digest: Buffer;
  readonly #bits: Uint8Array;
  #done = 0;

  constructor(opts: { chunkSize: number; fileSize: number; count: number; digest: Uint8Array; bits?: Uint8Array }) {
    if (opts.digest.length !== 32) throw new BimError('Internal', `chunk map digest must be 32 bytes, got ${opts.digest.length}`);
    this.chunkSize = opts.chunkSize;
    this.fileSize = opts.fileSize;
    this.count = opts.count;
    this.digest = Buffer.from(opts.digest);
    this.#bits = new Uint8Array(Math.ceil(opts.count / 8));
    if (opts.bits) {
      this.#bits.set(opts.bits.subarray(0, this.#bits.length));
      for (let i = 0; i < this.count; i++) if (this.has(i)) this.#done++;
    }
  }

  has(i: number): boolean {
    return ((this.#bits[i >> 3] ?? 0) & (1 << (i & 7))) !== 0;
  }

  set(i: number): void {
    if (i < 0 || i >= this.count) throw new BimError('Internal', `chunk ${i} is outside the map of ${this.count} chunks`);
    if (this.has(i)) return;
    this.#bits[i >> 3] = (this.#bits[i >> 3] ?? 0) | (1 << (i & 7));
    this.#done++;
  }

  /** Unmarks chunk `i` (its bytes turned out wrong). */
  clear(i: number): void {
    if (!this.has(i)) return;
    this.#bits[i >> 3] = (this.#bits[i >> 3] ?? 0) & ~(1 << (i & 7));
    this.#done--;
  }

  /** Number of chunks marked received. */
  get done(): number {
    return this.#done;
  }

  /** True when the map was made for this manifest, size and chunk size. */
  matches(opts: { chunkSize: number; fileSize: number; digest: Uint8Array }): boolean {
    return this.chunkSize === opts.chunkSize && this.fileSize === opts.fileSize && this.digest.equals(Buffer.from(opts.digest));
  }
}

export function encodeChunkMap(map: ChunkMap): Buffer {
  const bitBytes = Math.ceil(map.count / 8);
  const out = Buffer.alloc(HEADER + bitBytes + TRAILER);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(VERSION, 4);
  out.writeUInt32LE(map.chunkSize, 8);
  out.writeBigUInt64LE(BigInt(map.fileSize), 12);
  out.writeUInt32LE(map.count, 20);
  map.digest.copy(out, 24);
  for (let i = 0; i < map.count; i++) if (map.has(i)) out[HEADER + (i >> 3)] = (out[HEADER + (i >> 3)] ?? 0) | (1 << (i & 7));
  createHash('sha256').update(out.subarray(0, HEADER + bitBytes)).digest().copy(out, HEADER + bitBytes);
  return out;
}

/** Decodes a chunk map; throws InvalidArgument naming the byte offset of what is wrong (torn or foreign files). */
export function decodeChunkMap(buf: Uint8Array): ChunkMap {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const fail = (offset: number, why: string) => new BimError('InvalidArgument', `chunk map is unusable at byte ${offset}: ${why}`);
  if (b.length < HEADER + TRAILER) throw fail(b.length, `${b.length} bytes is shorter than the ${HEADER + TRAILER}-byte minimum`);
  if (b.readUInt32LE(0) !== MAGIC) throw fail(0, 'bad magic');
  if (b.readUInt32LE(4) !== VERSION) throw fail(4, `version ${b.readUInt32LE(4)}, only ${VERSION} is known`);
  const chunkSize = b.readUInt32LE(8);
  const fileSize = b.readBigUInt64LE(12);
  const count = b.readUInt32LE(20);
  if (chunkSize === 0) throw fail(8, 'chunk size 0');
  if (fileSize > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(12, `file size ${fileSize} is too large`);
  if (count !== Math.ceil(Number(fileSize) / chunkSize)) throw fail(20, `${count} chunks do not cover ${fileSize} bytes in chunks of ${chunkSize}`);
  const bitBytes = Math.ceil(count / 8);
  if (b.length !== HEADER + bitBytes + TRAILER) throw fail(b.length, `length ${b.length}, expected ${HEADER + bitBytes + TRAILER} for ${count} chunks`);
  const sum = createHash('sha256').update(b.subarray(0, HEADER + bitBytes)).digest();
  if (!sum.equals(b.subarray(HEADER + bitBytes))) throw fail(HEADER + bitBytes, 'checksum does not match the contents');
  // Bits past `count` in the last byte must be clear, else the file was not written by encodeChunkMap.
  if (count % 8 !== 0 && ((b[HEADER + bitBytes - 1] ?? 0) >> (count % 8)) !== 0) throw fail(HEADER + bitBytes - 1, 'bits set past the last chunk');
  return new ChunkMap({
    chunkSize,
    fileSize: Number(fileSize),
    count,
    digest: b.subarray(24, 56),
    bits: b.subarray(HEADER, HEADER + bitBytes),
  });
}

/** Reads a persisted map; undefined when absent or unusable (then the partial file is started over). */
export async function readChunkMap(path: string): Promise<ChunkMap | undefined> {
  const buf = await readIfExists(path);
  if (!buf) return undefined;
  try {
    return decodeChunkMap(buf);
  } catch {
    return undefined;
  }
}

export async function writeChunkMap(path: string, map: ChunkMap, opts: SignalOptions = {}): Promise<void> {
  await writeFileAtomic(path, encodeChunkMap(map), opts);
}
