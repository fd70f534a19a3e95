// The readers against qemu-img: for raw and many qcow2 variants (v2, v3, 512 B to 2 MiB clusters, compressed,
// extended L2, zero clusters, subclusters) every byte read must equal `qemu-img convert -O raw`, for whole-image
// reads in random pieces, random reads across cluster boundaries and past the end, and concurrent reads.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isImageFormatError } from './errors.js';
import { fuzzSeed, QEMU_IMG_MISSING, QEMU_IO_MISSING, qemuImg, qemuIo, Rng, tempDir, writeScatteredRaw } from './fixtures.js';
import { pushExtent, type ImageExtent, type ImageReader } from './image-reader.js';
import type { Qcow2ImageReader } from './qcow2-reader.js';
import { openImageReader } from './reader.js';

const SIZE = 4 * 1024 * 1024 + 1536; // not a multiple of any cluster size: the last cluster is partial
const seed = fuzzSeed();

interface Case {
  name: string;
  make: (dir: string, src: string, out: string) => Promise<void>;
  needsQemuIo?: boolean;
}

const convert = (...opts: string[]) => (_dir: string, src: string, out: string) => qemuImg('convert', '-q', '-f', 'raw', ...opts, src, out).then(() => undefined);

const CASES: Case[] = [
  { name: 'raw', make: convert('-O', 'raw') },
  { name: 'qcow2 v3, 64 KiB clusters', make: convert('-O', 'qcow2', '-o', 'compat=1.1') },
  { name: 'qcow2 v2, 4 KiB clusters', make: convert('-O', 'qcow2', '-o', 'compat=0.10,cluster_size=4096') },
  { name: 'qcow2 v3, 512 B clusters', make: convert('-O', 'qcow2', '-o', 'cluster_size=512') },
  { name: 'qcow2 v3, 2 MiB clusters', make: convert('-O', 'qcow2', '-o', 'cluster_size=2M') },
  { name: 'qcow2 extended L2', make: convert('-O', 'qcow2', '-o', 'extended_l2=on') },
  { name: 'compressed, 64 KiB clusters', make: convert('-c', '-O', 'qcow2') },
  {
    // qemu-img takes over a second to compress 8 MiB into 512-byte clusters, so this one gets a 1 MiB source.
    name: 'compressed, 512 B clusters',
    make: async (dir, _src, out) => {
      const small = join(dir, 'small.raw');
      await writeScatteredRaw(small, 1024 * 1024 + 1536, new Rng(seed + 1), 20);
      await qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=512', small, out);
    },
  },
  { name: 'compressed, 2 MiB clusters', make: convert('-c', '-O', 'qcow2', '-o', 'cluster_size=2M') },
  { name: 'compressed v2, 16 KiB clusters', make: convert('-c', '-O', 'qcow2', '-o', 'compat=0.10,cluster_size=16k') },
  { name: 'compressed, extended L2', make: convert('-c', '-O', 'qcow2', '-o', 'extended_l2=on,cluster_size=32k') },
  {
    name: 'zero clusters (v3, written by qemu-io)',
    needsQemuIo: true,
    make: async (_dir, _src, out) => {
      await qemuImg('create', '-q', '-f', 'qcow2', out, String(SIZE));
      await qemuIo(out, 'qcow2', 'write -P 0xaa 0 1M', 'write -z 128k 256k', 'write -z -u 512k 64k', 'write -P 0x55 1000k 3k',
        `write -P 0x66 ${SIZE - 4096} 4096`);
    },
  },
  {
    name: 'subclusters (extended L2, written by qemu-io)',
    needsQemuIo: true,
    make: async (_dir, _src, out) => {
      await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', out, String(SIZE));
      await qemuIo(out, 'qcow2', 'write -P 0x11 4k 4k', 'write -P 0x22 66k 2k', 'write -z 128k 8k', 'write -P 0x33 200k 100k',
        'write -z 1M 64k', `write -P 0x44 ${SIZE - 1024} 1024`);
    },
  },
];

let setup: Promise<{ dir: string; src: string }> | undefined;
let cleanupDir: (() => Promise<void>) | undefined;
after(() => cleanupDir?.());

/** The scattered random source image, made once for all cases. */
function source(): Promise<{ dir: string; src: string }> {
  setup ??= (async () => {
    const { dir, cleanup } = await tempDir();
    cleanupDir = cleanup;
    const src = join(dir, 'source.raw');
    await writeScatteredRaw(src, SIZE, new Rng(seed), 50);
    return { dir, src };
  })();
  return setup;
}

const prepared = new Map<number, Promise<{ image: string; expected: Uint8Array }>>();

/** Case `i`'s image and its content according to qemu-img, made once. */
function prepare(c: Case, i: number): Promise<{ image: string; expected: Uint8Array }> {
  let p = prepared.get(i);
  if (p === undefined) {
    p = make(c, i);
    prepared.set(i, p);
  }
  return p;
}

async function make(c: Case, i: number): Promise<{ image: string; expected: Uint8Array }> {
  const { dir, src } = await source();
  const image = join(dir, `case-${i}.img`);
  await c.make(dir, src, image);
  const raw = join(dir, `case-${i}.expected.raw`);
  await qemuImg('convert', '-q', '-O', 'raw', image, raw);
  if (c.name.startsWith('compressed')) {
    const check = JSON.parse(await qemuImg('check', '--output=json', image)) as { 'compressed-clusters'?: number };
    assert.ok((check['compressed-clusters'] ?? 0) > 0, `${c.name}: qemu-img made no compressed clusters`);
  }
  return { image, expected: new Uint8Array(await readFile(raw)) };
}

/** The ranges `qemu-img map` reports without data, merged like zeroExtents() merges them. */
async function qemuZeroExtents(image: string): Promise<ImageExtent[]> {
  const map = JSON.parse(await qemuImg('map', '--output=json', image)) as { start: number; length: number; data: boolean }[];
  const out: ImageExtent[] = [];
  for (const m of map) if (!m.data) pushExtent(out, m.start, m.length);
  return out;
}

/** What a read of `length` bytes at `offset` must return: the image bytes, zeros past its end. */
function expectedAt(expected: Uint8Array, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  if (offset < expected.length) out.set(expected.subarray(offset, Math.min(expected.length, offset + length)));
  return out;
}

async function readChecked(reader: ImageReader, expected: Uint8Array, offset: number, length: number, what: string): Promise<void> {
  const buf = new Uint8Array(length).fill(0xee); // stale bytes must be overwritten, zeros included
  await reader.read(buf, offset);
  const want = expectedAt(expected, offset, length);
  if (Buffer.compare(buf, want) !== 0) {
    const bad = buf.findIndex((b, k) => b !== want[k]);
    assert.fail(`${what}: read(${length} @ ${offset}) differs from qemu-img at guest offset ${offset + bad} (seed ${seed})`);
  }
}

for (const [i, c] of CASES.entries()) {
  const skip = QEMU_IMG_MISSING || (c.needsQemuIo === true && QEMU_IO_MISSING);
  describe(`reader vs qemu-img convert -O raw: ${c.name}`, { skip }, () => {
    test('whole image in random pieces, random reads across clusters and past the end, zero extents', async () => {
      const { image, expected } = await prepare(c, i);
      const rng = new Rng(seed + i);
      const reader = await openImageReader(image);
      try {
        assert.equal(reader.format, c.name === 'raw' ? 'raw' : 'qcow2');
        assert.equal(reader.virtualSize, expected.length);
        for (let pos = 0; pos < expected.length; ) {
          const length = 1 + rng.int(rng.int(4) === 0 ? 3 * 1024 * 1024 : 200 * 1024);
          await readChecked(reader, expected, pos, length, 'sequential');
          pos += length;
        }
        for (let k = 0; k < 60; k++) {
          const offset = rng.int(expected.length + 70 * 1024);
          await readChecked(reader, expected, offset, rng.int(200 * 1024), 'random');
        }
        await readChecked(reader, expected, expected.length - 700, 5000, 'across the end');
        await readChecked(reader, expected, expected.length + 4096, 4096, 'past the end');

        const zeros = await reader.zeroExtents();
        let last = -1;
        for (const z of zeros) {
          assert.ok(z.offset > last && z.length > 0 && z.offset + z.length <= expected.length, `zero extent ${JSON.stringify(z)}`);
          assert.ok(expected.subarray(z.offset, z.offset + z.length).every((b) => b === 0), `zero extent ${JSON.stringify(z)} has data`);
          last = z.offset + z.length;
        }
        // For qcow2 the metadata says exactly what qemu-img map reports as "data": false.
        if (reader.format === 'qcow2') assert.deepEqual(zeros, await qemuZeroExtents(image));
        const window = await reader.zeroExtents({ offset: 1000 * 512, length: 3 * 1024 * 1024 });
        assert.ok(window.every((z) => z.offset >= 1000 * 512 && z.offset + z.length <= 1000 * 512 + 3 * 1024 * 1024));
      } finally {
        await reader.close();
      }
    });

    test('concurrent random reads with the smallest caches', async () => {
      const { image, expected } = await prepare(c, i);
      const rng = new Rng(seed ^ (0x9e3779b9 + i));
      const reader = await openImageReader(image, { l2CacheBytes: 1, clusterCacheBytes: 1 });
      try {
        if (reader.format === 'qcow2') {
          const q = reader as Qcow2ImageReader;
          assert.equal(q.l2CacheEntries, 1);
          assert.equal(q.clusterCacheEntries, 1);
        }
        const reads = Array.from({ length: 32 }, () => {
          const offset = rng.int(expected.length + 8192);
          return readChecked(reader, expected, offset, 1 + rng.int(100 * 1024), 'concurrent');
        });
        await Promise.all(reads);
      } finally {
        await reader.close();
      }
    });
  });
}

describe('reader lifecycle and arguments', { skip: QEMU_IMG_MISSING }, () => {
  test('close waits for reads in flight; later reads fail with `Closed`; close is idempotent', async () => {
    const { dir } = await source();
    const image = join(dir, 'lifecycle.qcow2');
    const raw = join(dir, 'lifecycle.raw');
    await writeScatteredRaw(raw, 4 * 1024 * 1024, new Rng(seed), 40);
    await qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4k', raw, image);
    const expected = new Uint8Array(await readFile(raw));
    const reader = await openImageReader(image);
    const reads = Array.from({ length: 16 }, (_, k) => readChecked(reader, expected, k * 200_000, 300_000, 'in flight'));
    const closing = reader.close();
    const settled = await Promise.allSettled(reads);
    await closing;
    for (const s of settled) {
      if (s.status === 'rejected') assert.ok(isImageFormatError(s.reason, 'Closed'), String(s.reason));
    }
    await assert.rejects(reader.read(new Uint8Array(512), 0), (err) => isImageFormatError(err, 'Closed'));
    await reader.close();
  });

  test('an aborted signal stops a read; bad arguments are RangeErrors', async () => {
    const { dir } = await source();
    const image = join(dir, 'args.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', image, '1M');
    await assert.rejects(openImageReader(image, { signal: AbortSignal.abort() }), { name: 'AbortError' });
    const reader = await openImageReader(image);
    try {
      await assert.rejects(reader.read(new Uint8Array(4096), 0, { signal: AbortSignal.abort() }), { name: 'AbortError' });
      assert.throws(() => reader.read(new Uint8Array(1), -1), RangeError);
      assert.throws(() => reader.read(new Uint8Array(1), 0.5), RangeError);
      const empty = new Uint8Array(0);
      await reader.read(empty, 0);
    } finally {
      await reader.close();
    }
  });

  test('refusals: raw of 1000 bytes, qcow2 with a backing file', async () => {
    const { dir } = await source();
    const odd = join(dir, 'odd.raw');
    await writeFile(odd, new Uint8Array(1000));
    await assert.rejects(openImageReader(odd), (err) => isImageFormatError(err, 'BadSize'));
    const base = join(dir, 'refuse-base.qcow2');
    const top = join(dir, 'refuse-top.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', base, '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
    await assert.rejects(openImageReader(top), (err) => isImageFormatError(err, 'BackingFile'));
  });

  test('default cache bounds in entries', async () => {
    const { dir } = await source();
    const image = join(dir, 'bounds.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', image, '1G');
    const reader = (await openImageReader(image)) as Qcow2ImageReader;
    try {
      assert.equal(reader.l2CacheEntries, 4); // 8 MiB of 2 MiB tables
      assert.equal(reader.clusterCacheEntries, 2); // 4 MiB of 2 MiB clusters
    } finally {
      await reader.close();
    }
  });
});
