// Tests of the chunk writer: holes stay holes for zero blocks, a dirty chunk's stale bytes are cleared, and the
// digest covers exactly the bytes pushed whatever the piece sizes; written through or staged, or switching between
// the two midway, the file ends up the same.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ChunkSink } from './chunksink.js';
import { READ_BUFFER } from './httpclient.js';
import { SyncIoGate } from '../util/sync-io-gate.js';

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

/** Feeds `data` the way the HTTP client does: pieces of up to READ_BUFFER bytes, draining when asked to. */
async function acceptAll(sink: ChunkSink, data: Buffer, pieceSize: () => number): Promise<string> {
  for (let pos = 0; pos < data.length; ) {
    const n = Math.min(data.length - pos, pieceSize());
    // The piece is valid only during the call, as the client's read buffer is: scribble over it afterwards.
    const piece = Buffer.from(data.subarray(pos, pos + n));
    const more = sink.accept(piece);
    piece.fill(0xee);
    if (!more) await sink.drain();
    pos += n;
  }
  return sink.end();
}

/** 4 MiB of random runs and zero runs, at offsets that are not block-aligned. */
function patchy(): Buffer {
  const data = Buffer.alloc(4 * MiB);
  for (const [at, len] of [[0, 70_000], [200_001, 300_000], [MiB + 12_345, 64 * 1024], [2 * MiB - 1, 2], [3 * MiB + 65_536, 65_536]] as const) {
    randomBytes(len).copy(data, at);
  }
  return data;
}

/** Non-zero 64 KiB blocks of `data`: what a sink must write. */
function dataBlocks(data: Buffer): number {
  let n = 0;
  for (let b = 0; b < data.length; b += 64 * 1024) if (data.subarray(b, b + 64 * 1024).some((x) => x !== 0)) n++;
  return n;
}

test('write-through: pieces of any size land in place, zero blocks stay holes', async () => {
  for (const sizes of [() => READ_BUFFER, () => 1 + Math.floor(Math.random() * READ_BUFFER), () => 65_535]) {
    await withFile(5 * MiB, async (path) => {
      const data = patchy();
      const fh = await open(path, 'r+');
      const sink = new ChunkSink(fh, new SyncIoGate({ maxBytes: READ_BUFFER }));
      sink.begin(MiB, false);
      const digest = await acceptAll(sink, data, sizes);
      await fh.close();
      assert.equal(digest, createHash('sha256').update(data).digest('hex'));
      const all = readFileSync(path);
      assert.deepEqual(all.subarray(MiB), data);
      assert.ok(all.subarray(0, MiB).every((b) => b === 0));
      assert.equal(sink.written, dataBlocks(data) * 64 * 1024);
      assert.ok(statSync(path).blocks * 512 <= sink.written, `allocated ${statSync(path).blocks * 512} bytes for ${sink.written} written`);
    });
  }
});

test('a gate that closes midway (slow writes) sends the rest through the stage, in order', async () => {
  await withFile(4 * MiB, async (path) => {
    const data = patchy();
    randomBytes(MiB).copy(data, 2 * MiB + 7);
    // Every sync call takes 5 ms on this clock: the gate closes after three of them.
    let t = 0;
    const gate = new SyncIoGate({ maxBytes: READ_BUFFER, now: () => (t += 2.5) });
    const fh = await open(path, 'r+');
    const sink = new ChunkSink(fh, gate);
    sink.begin(0, false);
    await acceptAll(sink, data, () => 100_000);
    await fh.close();
    assert.deepEqual(readFileSync(path), data);
    assert.equal(gate.run(1, () => true), undefined, 'the gate closed');
  });
});

test('a dirty chunk is staged even with a gate, and its stale bytes are cleared', async () => {
  await withFile(4 * MiB, async (path) => {
    const fh = await open(path, 'r+');
    await fh.write(randomBytes(4 * MiB), 0, 4 * MiB, 0);
    const data = patchy();
    const sink = new ChunkSink(fh, new SyncIoGate({ maxBytes: READ_BUFFER }));
    sink.begin(0, true);
    await acceptAll(sink, data, () => READ_BUFFER);
    await fh.close();
    assert.deepEqual(readFileSync(path), data);
  });
});
