import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from './buffer-pool.js';

const KiB = 1024;

test('a buffer given back is handed out again, for any length of its size class', () => {
  const pool = new BufferPool({ minBytes: 64 * KiB });
  const a = pool.take(100 * KiB);
  assert.equal(a.byteLength, 100 * KiB);
  a[0] = 7;
  pool.give(a);
  assert.equal(pool.keptBytes, 128 * KiB);
  const b = pool.take(128 * KiB);
  assert.equal(b.buffer, a.buffer, 'the same backing store');
  assert.equal(b.byteLength, 128 * KiB);
  assert.equal(pool.keptBytes, 0);
});

test('small and huge requests, foreign buffers and second gives are left to the collector', () => {
  const pool = new BufferPool({ minBytes: 64 * KiB, maxBytes: 1024 * KiB });
  const small = pool.take(4 * KiB);
  const huge = pool.take(2048 * KiB);
  pool.give(small);
  pool.give(huge);
  pool.give(Buffer.allocUnsafeSlow(128 * KiB));
  pool.give(undefined);
  assert.equal(pool.keptBytes, 0);
  const a = pool.take(64 * KiB);
  pool.give(a);
  pool.give(a);
  pool.give(a.subarray(10));
  assert.equal(pool.keptBytes, 64 * KiB, 'one give counts, the others are ignored');
  const b = pool.take(64 * KiB);
  const c = pool.take(64 * KiB);
  assert.notEqual(b.buffer, c.buffer, 'a buffer is never handed out twice');
});

test('what the pool keeps is bounded', () => {
  const pool = new BufferPool({ minBytes: 64 * KiB, keepBytes: 256 * KiB });
  const bufs = Array.from({ length: 8 }, () => pool.take(64 * KiB));
  for (const b of bufs) pool.give(b);
  assert.equal(pool.keptBytes, 256 * KiB);
});
