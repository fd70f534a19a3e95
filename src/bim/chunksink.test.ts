// Tests of the chunk writer: holes stay holes for zero blocks, a dirty chunk's stale bytes are cleared, and the
// digest covers exactly the bytes pushed whatever the piece sizes.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ChunkSink } from './chunksink.js';

const MiB = 1024 * 1024;

async function withFile(size: number, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bim-sink-'));
  const path = join(dir, 'partial');
  const fh = await open(path, 'w');
  await fh.truncate(size);
  await fh.close();
  try {
    await fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function pushAll(sink: ChunkSink, data: Buffer): Promise<string> {
  let pos = 0;
  while (pos < data.length) {
    const n = Math.min(data.length - pos, 1 + Math.floor(Math.random() * 300_000));
    await sink.push(data.subarray(pos, pos + n));
    pos += n;
  }
  return sink.end();
}

test('zero blocks of a clean chunk are not written and stay holes', async () => {
  await withFile(4 * MiB, async (path) => {
    const data = Buffer.alloc(4 * MiB);
    randomBytes(64 * 1024).copy(data, 0);
    randomBytes(100).copy(data, 3 * MiB + 5);
    const fh = await open(path, 'r+');
    const sink = new ChunkSink(fh);
    sink.begin(0, false);
    const digest = await pushAll(sink, data);
    await fh.close();
    assert.equal(digest, createHash('sha256').update(data).digest('hex'));
    assert.deepEqual(readFileSync(path), data);
    assert.equal(sink.written, 128 * 1024, 'two 64 KiB blocks written');
    assert.ok(statSync(path).blocks * 512 <= 256 * 1024, `allocated ${statSync(path).blocks * 512} bytes`);
  });
});

test('a dirty chunk gets its stale bytes cleared where the new data is zero', async () => {
  await withFile(2 * MiB, async (path) => {
    const fh = await open(path, 'r+');
    await fh.write(randomBytes(2 * MiB), 0, 2 * MiB, 0); // a previous, unverified attempt
    const data = Buffer.alloc(2 * MiB);
    randomBytes(1000).copy(data, MiB);
    const sink = new ChunkSink(fh);
    sink.begin(0, true);
    await pushAll(sink, data);
    await fh.close();
    assert.deepEqual(readFileSync(path), data);
  });
});

test('chunks at an offset land at that offset', async () => {
  await withFile(3 * MiB, async (path) => {
    const fh = await open(path, 'r+');
    const data = randomBytes(MiB);
    const sink = new ChunkSink(fh);
    sink.begin(2 * MiB, false);
    await pushAll(sink, data);
    await fh.close();
    const all = readFileSync(path);
    assert.deepEqual(all.subarray(2 * MiB), data);
    assert.ok(all.subarray(0, 2 * MiB).every((b) => b === 0));
  });
});
