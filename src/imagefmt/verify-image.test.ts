// verifyImage on real images: whole qcow2 images (plain, compressed, small clusters, large and sparse) pass; the
// same images cut short, with an L1 entry pointed past the end of the file, or with a compressed cluster's bytes
// overwritten, are refused with the reader's error naming the entry or cluster; raw files of any content pass.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { verifyImage } from './verify-image.js';
import { isImageFormatError } from './errors.js';
import { QEMU_IMG_MISSING, QEMU_IO_MISSING, qemuImg, qemuIo, tempDir } from './fixtures.js';
import { parseQcow2Header } from './qcow2-header.js';

describe('verifyImage', { skip: QEMU_IMG_MISSING || QEMU_IO_MISSING }, () => {
  let dir = '';
  let cleanup: () => Promise<void> = async () => {};
  before(async () => ({ dir, cleanup } = await tempDir()));
  after(() => cleanup());

  /** A qcow2 with data at the start, in the middle and at the end of `size`. */
  async function image(name: string, size: string, ...createOpts: string[]): Promise<string> {
    const path = join(dir, name);
    await qemuImg('create', '-f', 'qcow2', ...createOpts, path, size);
    await qemuIo(path, 'qcow2', 'write -P 0xab 0 1M', 'write -P 0xcd 2M 64k', 'write -P 0xef 4M 64k');
    return path;
  }

  async function refusedAsCorrupt(path: string, pattern: RegExp): Promise<void> {
    await assert.rejects(verifyImage(path), (err) => {
      assert.ok(isImageFormatError(err, 'Corrupt'), `expected Corrupt, got ${String(err)}`);
      assert.match(err.message, pattern);
      return true;
    });
  }

  test('whole images pass: plain, 4 KiB clusters, compressed, and a large sparse one', async () => {
    await verifyImage(await image('plain.qcow2', '64M'));
    await verifyImage(await image('small-clusters.qcow2', '64M', '-o', 'cluster_size=4096'));
    const raw = join(dir, 'source.raw');
    await qemuImg('create', '-f', 'raw', raw, '8M');
    await qemuIo(raw, 'raw', 'write -P 0x5a 0 2M');
    const compressed = join(dir, 'compressed.qcow2');
    await qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, compressed);
    await verifyImage(compressed);
    const big = join(dir, 'big.qcow2');
    await qemuImg('create', '-f', 'qcow2', big, '9G');
    await qemuIo(big, 'qcow2', 'write -P 1 0 64k', 'write -P 2 5G 64k', 'write -P 3 8G 64k');
    const seen: number[] = [];
    await verifyImage(big, { onProgress: (done, total) => seen.push(done / total) });
    assert.equal(seen.at(-1), 1, 'progress ends at the whole virtual size');
    assert.ok(seen.every((f, i) => f > (seen[i - 1] ?? 0)), 'progress only moves forward');
  });

  test('a qcow2 cut short is refused, naming the entry that points past the end', async () => {
    const path = await image('cut.qcow2', '64M');
    const { size } = await stat(path);
    await truncate(path, size - 65536);
    await refusedAsCorrupt(path, /L2 entry at offset \d+: host cluster \d+ .*runs past the end of the file \(\d+ bytes\)/);
  });

  test('a cut at the end of a large sparse image is found too', async () => {
    const path = join(dir, 'big-cut.qcow2');
    await qemuImg('create', '-f', 'qcow2', path, '9G');
    await qemuIo(path, 'qcow2', 'write -P 1 0 64k', 'write -P 3 8G 64k');
    const { size } = await stat(path);
    await truncate(path, size - 65536);
    await refusedAsCorrupt(path, /runs past the end of the file/);
  });

  test('an L1 entry pointing past the end of the file is refused', async () => {
    const path = await image('bad-l1.qcow2', '64M');
    const fh = await open(path, 'r+');
    try {
      const head = Buffer.alloc(512);
      await fh.read(head, 0, 512, 0);
      const h = parseQcow2Header(head);
      const entry = Buffer.alloc(8);
      entry.writeBigUInt64BE((1n << 63n) | (1n << 40n)); // copied flag, an offset at 1 TiB
      await fh.write(entry, 0, 8, h.l1TableOffset);
    } finally {
      await fh.close();
    }
    await refusedAsCorrupt(path, /L1 entry 0 at offset \d+: L2 table at 1099511627776 runs past the end of the file/);
  });

  test('a compressed cluster that does not inflate is refused', async () => {
    const raw = join(dir, 'random.raw');
    // Random nibbles: compressible, so every cluster is stored compressed, and no two clusters alike.
    await writeFile(raw, randomBytes(4 * 65536).map((b) => b & 0x0f));
    const path = join(dir, 'bad-deflate.qcow2');
    await qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, path);
    await verifyImage(path);
    // qemu-img packs the compressed clusters at the end of the file: overwrite the middle of the last ones.
    const { size } = await stat(path);
    const fh = await open(path, 'r+');
    try {
      await fh.write(Buffer.alloc(8192, 0xff), 0, 8192, size - 3 * 8192);
    } finally {
      await fh.close();
    }
    await refusedAsCorrupt(path, /qcow2 compressed cluster at offset \d+: (the deflate data is invalid|decompresses to \d+ bytes)/);
  });

  test('raw files pass whatever they hold', async () => {
    const path = join(dir, 'any.raw');
    await writeFile(path, Buffer.alloc(4096, 0x51));
    await verifyImage(path);
  });
});
