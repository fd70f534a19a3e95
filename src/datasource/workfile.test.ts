// The work file with real files: one-pass hashing through the chunk writer, the durable offset, re-hashing the
// prefix after a reopen, rolling back a refused chunk with its hash, and zero ranges left as holes.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hashFile } from '../bim/hashing.js';
import { ChunkWriter } from './chunk-writer.js';
import { WorkFile } from './workfile.js';

const sha = (b: Uint8Array): string => createHash('sha512').update(b).digest('hex');

function bytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 9)) & 0xff;
  return b;
}

test('chunks of any size hash in one pass; after a reopen the durable prefix is re-hashed once and continued', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-workfile-'));
  try {
    const data = bytes(9 * 1024 * 1024 + 123);
    let wf = await WorkFile.open(dir, 'k');
    await wf.openPart();
    const w = new ChunkWriter(wf, 1024 * 1024);
    for (let at = 0; at < 5_000_000; at += 65_536) await w.push(data.subarray(at, Math.min(5_000_000, at + 65_536)));
    await w.flush();
    assert.equal(wf.offset, 5_000_000);
    assert.equal(wf.hashCurrent, true);
    await wf.sync();
    await wf.close();

    wf = await WorkFile.open(dir, 'k');
    assert.equal(wf.checkpoint.offset, 5_000_000);
    await wf.openPart();
    assert.equal(wf.hashCurrent, false);
    await Promise.all([wf.ensureHash(), wf.ensureHash()]);
    const w2 = new ChunkWriter(wf, 1024 * 1024);
    await w2.push(data.subarray(5_000_000));
    await w2.flush();
    assert.equal((await wf.digest()), sha(data));
    await wf.sync();
    await wf.finish();
    assert.equal(statSync(wf.filePath).size, data.length);

    const other = await WorkFile.open(dir, 'another source');
    assert.equal(other.checkpoint.offset, 0, 'a checkpoint of another source is discarded');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rollback restores the offset, the file length and the hash', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-workfile-'));
  try {
    const data = bytes(300_000);
    const wf = await WorkFile.open(dir, 'k');
    await wf.openPart();
    await wf.write(data.subarray(0, 100_000));
    const mark = await wf.mark();
    await wf.write(data.subarray(100_000, 250_000));
    await wf.rollback(mark);
    assert.equal(wf.offset, 100_000);
    assert.equal(statSync(wf.partPath).size, 100_000);
    await wf.write(data.subarray(100_000));
    assert.equal((await wf.digest()), sha(data));
    await wf.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('zero blocks stay holes (du), trailing zeros included; hash and chunk manifest cover every byte, across a reopen', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-workfile-'));
  const MiB = 1024 * 1024;
  try {
    // [4 MiB data][8 MiB zeros][1 MiB + 5 data][zeros to the end]: the last chunk is 5 bytes, all zero.
    const data = Buffer.alloc(16 * MiB + 5);
    bytes(4 * MiB).copy(data, 0);
    bytes(MiB + 5).copy(data, 12 * MiB);
    let wf = await WorkFile.open(dir, 'k');
    await wf.openPart();
    const w = new ChunkWriter(wf, MiB);
    for (let at = 0; at < 6 * MiB; at += 65_536) await w.push(data.subarray(at, Math.min(6 * MiB, at + 65_536)));
    await w.flush();
    await wf.sync();
    assert.equal(statSync(wf.partPath).size, 6 * MiB, 'extended over the trailing hole at the sync');
    await wf.close();

    wf = await WorkFile.open(dir, 'k');
    await wf.openPart();
    await wf.ensureHash();
    const w2 = new ChunkWriter(wf, 3 * MiB);
    await w2.push(data.subarray(6 * MiB));
    await w2.flush();
    const sha512 = (await wf.digest());
    assert.equal(sha512, sha(data));
    const manifest = await wf.manifest({ name: 'n', uuid: 'u', sha512 });
    const identity = await wf.finish();
    await wf.saveManifest(identity, manifest);
    const st = statSync(wf.filePath);
    assert.equal(st.size, data.length);
    assert.ok(st.blocks * 512 <= 5 * MiB + 64 * 1024, `allocated ${st.blocks * 512} bytes for 5 MiB of data`);
    const read = await hashFile(wf.filePath, { chunkSize: 4 * MiB, ids: { name: 'n', uuid: 'u' } });
    assert.equal(read.sha512, sha512);
    assert.deepEqual(manifest, read.manifest);
    assert.deepEqual(manifest.chunks.map((c) => c.zero === true), [false, true, true, false, true]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
