// Fuzz and targeted tests of the qcow2 reader on damaged images: corrupted L1/L2 entries (random values, offsets
// past the end of the file, misaligned offsets, flag bits), random bytes and truncated files, read from memory.
// The reader must answer with the image's bytes or an ImageFormatError, and must never ask the file for bytes
// that start outside it. Replay a failure with IMAGEFMT_FUZZ_SEED=<seed>.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isImageFormatError } from './errors.js';
import { detectFormat } from './inspect.js';
import { fuzzSeed, QEMU_IMG_MISSING, qemuImg, qemuIo, QEMU_IO_MISSING, Rng, tempDir, writeScatteredRaw } from './fixtures.js';
import { decodeL1Entry } from './qcow2-entries.js';
import { parseQcow2Header, type Qcow2Header } from './qcow2-header.js';
import { openImageReaderOnSource } from './reader.js';
import type { ByteSource } from './source.js';

const CASES_PER_IMAGE = 600; // × 4 images (3 without qemu-io)

interface Image {
  name: string;
  bytes: Uint8Array;
  header: Qcow2Header;
  /** File ranges of the L1 table and each L2 table, with their entry size. */
  tables: { offset: number; length: number; entrySize: number }[];
}

/** The damaged file: the original bytes with some bytes replaced and possibly cut short. */
class OverlaySource implements ByteSource {
  readonly size: number;
  readonly #base: Uint8Array;
  readonly #patches = new Map<number, number>();

  constructor(base: Uint8Array, size: number) {
    this.#base = base;
    this.size = size;
  }

  patch(position: number, bytes: Uint8Array): void {
    bytes.forEach((b, k) => this.#patches.set(position + k, b));
  }

  read(buf: Uint8Array, position: number): Promise<number> {
    // A read starting outside the file means an offset from a table was used without being checked.
    if (!Number.isSafeInteger(position) || position < 0 || (position >= this.size && buf.length > 0)) {
      throw new Error(`OUT OF BOUNDS: read of ${buf.length} bytes at ${position}, file size ${this.size}`);
    }
    const n = Math.max(0, Math.min(buf.length, this.size - position));
    buf.set(this.#base.subarray(position, position + n));
    for (const [at, b] of this.#patches) if (at >= position && at < position + n) buf[at - position] = b;
    return Promise.resolve(n);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

let made: Promise<Image[]> | undefined;

/** The undamaged images, made once. */
function makeImages(): Promise<Image[]> {
  made ??= createImages();
  return made;
}

async function createImages(): Promise<Image[]> {
  const { dir, cleanup } = await tempDir();
  try {
    const raw = join(dir, 'src.raw');
    await writeScatteredRaw(raw, 192 * 1024, new Rng(7), 24);
    const specs: [string, string[]][] = [
      ['512 B clusters', ['-o', 'cluster_size=512']],
      ['compressed 1 KiB clusters', ['-c', '-o', 'cluster_size=1024']],
      ['v2 4 KiB clusters', ['-o', 'compat=0.10,cluster_size=4096']],
    ];
    const images: Image[] = [];
    for (const [name, opts] of specs) {
      const path = join(dir, `${images.length}.qcow2`);
      await qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', ...opts, raw, path);
      images.push(describeImage(name, new Uint8Array(await readFile(path))));
    }
    if (QEMU_IO_MISSING === false) {
      const path = join(dir, 'sub.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=16k', path, '192k');
      await qemuIo(path, 'qcow2', 'write -P 1 0 5k', 'write -z 20k 4k', 'write -P 2 70k 30k');
      images.push(describeImage('extended L2 subclusters', new Uint8Array(await readFile(path))));
    }
    return images;
  } finally {
    await cleanup();
  }
}

function describeImage(name: string, bytes: Uint8Array): Image {
  const header = parseQcow2Header(bytes.subarray(0, header0Length(bytes)));
  const geo = { ...header, fileSize: bytes.length };
  const l1 = new DataView(bytes.buffer, bytes.byteOffset + header.l1TableOffset, header.l1Size * 8);
  const tables = [{ offset: header.l1TableOffset, length: header.l1Size * 8, entrySize: 8 }];
  for (let i = 0; i < header.l1Size; i++) {
    const l2 = decodeL1Entry(l1, i, header.l1TableOffset, geo);
    if (l2 !== 0) tables.push({ offset: l2, length: header.clusterSize, entrySize: header.l2EntrySize });
  }
  assert.ok(tables.length >= 2, `${name}: has L2 tables`);
  return { name, bytes, header, tables };
}

function header0Length(bytes: Uint8Array): number {
  return Math.min(bytes.length, 2 ** new DataView(bytes.buffer, bytes.byteOffset).getUint32(20));
}

function be64(hi: number, lo: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setUint32(0, hi >>> 0);
  new DataView(out.buffer).setUint32(4, lo >>> 0);
  return out;
}

/** Damage one image at random; returns what was done, for the failure message. */
function damage(rng: Rng, img: Image, src: OverlaySource): string {
  const table = rng.pick(img.tables);
  const entry = table.offset + table.entrySize * rng.int(table.length / table.entrySize);
  const past = img.bytes.length + img.header.clusterSize * (1 + rng.int(4));
  switch (rng.int(8)) {
    case 0:
      src.patch(entry, rng.bytes(8));
      return `random entry at ${entry}`;
    case 1:
      src.patch(entry, be64(0x80000000 + Math.floor(past / 2 ** 32), past >>> 0));
      return `entry at ${entry} points past the end`;
    case 2: {
      const cur = new DataView(img.bytes.buffer, img.bytes.byteOffset).getUint32(entry + 4);
      src.patch(entry + 4, be64(0, (cur + 512) >>> 0).subarray(4));
      return `entry at ${entry} misaligned`;
    }
    case 3: {
      const at = entry + rng.int(table.entrySize);
      src.patch(at, new Uint8Array([(img.bytes[at] ?? 0) ^ (1 << rng.int(8))]));
      return `bit flip at ${at}`;
    }
    case 4:
      src.patch(entry, new Uint8Array([(img.bytes[entry] ?? 0) | 0x40])); // compressed flag
      return `compressed flag at ${entry}`;
    case 5: {
      const at = rng.int(img.bytes.length);
      src.patch(at, rng.bytes(1 + rng.int(16)));
      return `random bytes at ${at}`;
    }
    case 6:
      if (table.entrySize === 16) src.patch(entry + 8, rng.bytes(8)); // subcluster bitmaps
      else src.patch(entry + 7, new Uint8Array([(img.bytes[entry + 7] ?? 0) | 1])); // zero flag
      return `flags of entry at ${entry}`;
    default:
      return `file cut to ${src.size}`;
  }
}

async function readAll(src: OverlaySource, img: Image, rng: Rng): Promise<void> {
  const reader = await openImageReaderOnSource(src, { l2CacheBytes: 1, clusterCacheBytes: 1 });
  try {
    const buf = new Uint8Array(reader.virtualSize + 1024);
    for (let pos = 0; pos < buf.length; ) {
      const n = Math.min(buf.length - pos, 1 + rng.int(40 * 1024));
      await reader.read(buf.subarray(pos, pos + n), pos);
      pos += n;
    }
    await reader.zeroExtents();
    // The size the damaged file itself declares: damage to the magic makes it a raw file as long as the file is
    // (what any reader sees in a file without the qcow2 magic), damage to the header's size field another size.
    const file = new Uint8Array(src.size);
    if (src.size > 0) await src.read(file, 0);
    if (detectFormat(file.subarray(0, 4)) === 'raw') {
      assert.equal(reader.format, 'raw');
      assert.equal(reader.virtualSize, src.size);
    } else {
      assert.equal(reader.format, 'qcow2');
      assert.equal(reader.virtualSize, parseQcow2Header(file.subarray(0, header0Length(file))).virtualSize);
    }
  } finally {
    await reader.close();
  }
}

describe('qcow2 reader on damaged images', { skip: QEMU_IMG_MISSING }, () => {
  test('fuzz: corrupted tables, random bytes, cut files give ImageFormatError or data, never out-of-bounds reads', async (t) => {
    const seed = fuzzSeed();
    const rng = new Rng(seed);
    const images = await makeImages();
    const outcomes: Record<string, number> = {};
    for (const img of images) {
      for (let i = 0; i < CASES_PER_IMAGE; i++) {
        const cut = rng.int(10) === 0 ? rng.int(img.bytes.length + 1) : img.bytes.length;
        const src = new OverlaySource(img.bytes, cut);
        const what = damage(rng, img, src);
        try {
          await readAll(src, img, rng);
          outcomes['read'] = (outcomes['read'] ?? 0) + 1;
        } catch (err) {
          if (!isImageFormatError(err)) {
            assert.fail(`seed ${seed}, ${img.name}, case ${i} (${what}): ${err instanceof Error ? err.stack : String(err)}; replay with IMAGEFMT_FUZZ_SEED=${seed}`);
          }
          outcomes[err.code] = (outcomes[err.code] ?? 0) + 1;
        }
      }
    }
    t.diagnostic(`seed ${seed}: ${images.length} images × ${CASES_PER_IMAGE} cases: ${JSON.stringify(outcomes)}`);
    assert.ok((outcomes['Corrupt'] ?? 0) > 0 && (outcomes['read'] ?? 0) > 0, `seed ${seed}: ${JSON.stringify(outcomes)}`);
  });

  test('targeted: the error names the offset of the bad entry', async () => {
    const images = await makeImages();
    for (const img of images) {
      const [l1, firstL2] = img.tables;
      assert.ok(l1 !== undefined && firstL2 !== undefined);
      // An L1 entry pointing past the end of the file.
      let src = new OverlaySource(img.bytes, img.bytes.length);
      const cs = img.header.clusterSize;
      src.patch(l1.offset, be64(0, (Math.ceil(img.bytes.length / cs) + 2) * cs));
      await assert.rejects(readAll(src, img, new Rng(1)), (err) => isImageFormatError(err, 'Corrupt') && err.offset === l1.offset && /past the end/.test(err.message), img.name);
      // A misaligned L1 entry (not expressible with 512-byte clusters: bits 0..8 are not part of the offset).
      if (img.header.clusterSize > 512) {
        src = new OverlaySource(img.bytes, img.bytes.length);
        src.patch(l1.offset, be64(0, (firstL2.offset + 512) >>> 0));
        await assert.rejects(readAll(src, img, new Rng(1)), (err) => isImageFormatError(err, 'Corrupt') && err.offset === l1.offset && /not aligned/.test(err.message), img.name);
      }
      // The first allocated L2 entry pointing past the end of the file.
      const view = new DataView(img.bytes.buffer, img.bytes.byteOffset);
      let entry = firstL2.offset;
      while (view.getUint32(entry) === 0 && view.getUint32(entry + 4) === 0) entry += firstL2.entrySize;
      const compressed = (view.getUint32(entry) & 0x40000000) !== 0;
      src = new OverlaySource(img.bytes, img.bytes.length);
      const past = (Math.ceil(img.bytes.length / img.header.clusterSize) + 1) * img.header.clusterSize;
      src.patch(entry, be64((compressed ? 0x40000000 : 0x80000000) + Math.floor(past / 2 ** 32), past >>> 0));
      await assert.rejects(readAll(src, img, new Rng(1)), (err) => isImageFormatError(err, 'Corrupt') && err.offset === entry && /past the end of the file/.test(err.message), img.name);
    }
  });

  test('targeted: garbage deflate data is `Corrupt` at the compressed data offset', async () => {
    const img = (await makeImages()).find((i) => i.name.startsWith('compressed'));
    assert.ok(img !== undefined);
    const l2 = img.tables[1];
    assert.ok(l2 !== undefined);
    const view = new DataView(img.bytes.buffer, img.bytes.byteOffset);
    let entry = l2.offset;
    while ((view.getUint32(entry) & 0x40000000) === 0) entry += 8;
    const x = 70 - img.header.clusterBits;
    const dataOffset = (view.getUint32(entry) & ((1 << (x - 32)) - 1)) * 2 ** 32 + view.getUint32(entry + 4);
    const src = new OverlaySource(img.bytes, img.bytes.length);
    src.patch(dataOffset, new Uint8Array(64).fill(0xff));
    await assert.rejects(readAll(src, img, new Rng(1)), (err) => isImageFormatError(err, 'Corrupt') && err.offset === dataOffset && /deflate|decompresses/.test(err.message));
  });
});
