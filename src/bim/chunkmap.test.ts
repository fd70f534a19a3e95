// Tests of the chunk map encoding: round trips, and every torn or corrupted file is refused with the byte offset.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { ChunkMap, decodeChunkMap, encodeChunkMap } from './chunkmap.js';
import { isBimError } from './errors.js';

function sample(count: number, chunkSize = 4096): ChunkMap {
  const fileSize = count * chunkSize - (count > 0 ? 100 : 0);
  return new ChunkMap({ chunkSize, fileSize, count, digest: randomBytes(32) });
}

test('round-trips the bits, size, chunk size and digest', () => {
  for (const count of [0, 1, 7, 8, 9, 1000]) {
    const m = sample(count);
    for (let i = 0; i < count; i += 3) m.set(i);
    const back = decodeChunkMap(encodeChunkMap(m));
    assert.equal(back.count, count);
    assert.equal(back.done, m.done);
    assert.equal(back.fileSize, m.fileSize);
    assert.ok(back.matches({ chunkSize: m.chunkSize, fileSize: m.fileSize, digest: m.digest }));
    for (let i = 0; i < count; i++) assert.equal(back.has(i), i % 3 === 0, `chunk ${i} of ${count}`);
  }
});

test('set is idempotent and bounded', () => {
  const m = sample(10);
  m.set(3);
  m.set(3);
  assert.equal(m.done, 1);
  assert.throws(() => m.set(10), /outside/);
  assert.throws(() => m.set(-1), /outside/);
});

test('matches() is false for another manifest, size or chunk size', () => {
  const m = sample(4);
  assert.equal(m.matches({ chunkSize: m.chunkSize, fileSize: m.fileSize, digest: randomBytes(32) }), false);
  assert.equal(m.matches({ chunkSize: m.chunkSize * 2, fileSize: m.fileSize, digest: m.digest }), false);
  assert.equal(m.matches({ chunkSize: m.chunkSize, fileSize: m.fileSize + 1, digest: m.digest }), false);
});

test('every single-byte corruption and every truncation is refused', () => {
  const m = sample(20);
  m.set(5);
  const good = encodeChunkMap(m);
  for (let i = 0; i < good.length; i++) {
    const bad = Buffer.from(good);
    bad[i] = (bad[i] ?? 0) ^ 0x40;
    assert.throws(() => decodeChunkMap(bad), (err: unknown) => isBimError(err, 'InvalidArgument') && /at byte \d+/.test(err.message), `flip at ${i}`);
  }
  for (let n = 0; n < good.length; n++) {
    assert.throws(() => decodeChunkMap(good.subarray(0, n)), /chunk map is unusable at byte/, `cut at ${n}`);
  }
});

test('names the offset of the field that is wrong', () => {
  const good = encodeChunkMap(sample(3));
  const wrongMagic = Buffer.from(good);
  wrongMagic[0] = 0;
  assert.throws(() => decodeChunkMap(wrongMagic), /at byte 0: bad magic/);
});
