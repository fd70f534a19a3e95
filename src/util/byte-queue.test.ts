import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { ByteQueue } from './byte-queue.js';

/** A stand-in for a socket's reusable read buffer: every push overwrites the same memory. */
function reader(size: number): (src: Uint8Array) => Uint8Array {
  const buf = Buffer.alloc(size);
  return (src) => {
    buf.fill(0xee);
    buf.set(src);
    return buf.subarray(0, src.byteLength);
  };
}

test('bytes taken from transient chunks stay intact after the read buffer is reused', () => {
  const q = new ByteQueue();
  const read = reader(64);
  const data = randomBytes(200);
  const taken: Uint8Array[] = [];
  // Random-sized reads; the consumer takes 10-byte records whenever it can, then settles (as parsers do).
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = Math.min(data.length - at, 1 + ((i * 37) % 64));
    q.push(read(data.subarray(at, at + n)), true);
    at += n;
    while (q.length >= 10) taken.push(q.take(10));
    q.settle();
  }
  assert.deepEqual(Buffer.concat(taken), data.subarray(0, 200));
  assert.equal(q.offset, 200);
});

test('settle(want) gathers a payload split over many reads into one buffer, and what follows it is kept', () => {
  const q = new ByteQueue();
  const read = reader(1000);
  const payload = randomBytes(10_000);
  const next = randomBytes(30);
  const stream = Buffer.concat([payload, next]);
  q.push(read(stream.subarray(0, 700)), true);
  q.settle(payload.length);
  for (let at = 700; at < stream.length; at += 1000) {
    q.push(read(stream.subarray(at, Math.min(stream.length, at + 1000))), true);
    if (q.length >= payload.length) break;
    q.settle(payload.length);
  }
  assert.equal(q.length, stream.length);
  const got = q.take(payload.length);
  assert.deepEqual(Buffer.from(got), payload);
  q.settle();
  assert.deepEqual(Buffer.from(q.take(30)), next);
});

test('reads placed in fillSpace() are taken without a copy; a short remainder is not offered', () => {
  const q = new ByteQueue();
  const read = reader(4096);
  const payload = randomBytes(300_000);
  const next = randomBytes(20);
  assert.equal(q.fillSpace(), undefined, 'no fill target yet');
  q.push(read(payload.subarray(0, 1000)), true);
  q.settle(payload.length);
  let at = 1000;
  let direct = 0;
  for (;;) {
    const space = q.fillSpace();
    if (!space) break;
    assert.ok(space.byteLength >= 64 * 1024);
    // A socket read of at most 100 000 bytes straight into the space, as socket-reads.ts does.
    const n = Math.min(100_000, space.byteLength);
    space.set(payload.subarray(at, at + n));
    q.push(space.subarray(0, n), true);
    at += n;
    direct++;
  }
  assert.equal(direct, 3, 'three reads landed in place; the last 0 < n < 64 KiB are not offered');
  const tail = Buffer.concat([payload.subarray(at), next]);
  q.push(read(tail), true);
  const got = q.take(payload.length);
  assert.equal(got.byteLength, payload.length);
  assert.deepEqual(Buffer.from(got), payload);
  q.settle();
  assert.deepEqual(Buffer.from(q.take(20)), next);
  assert.equal(q.fillSpace(), undefined);
});

test('skip and takeAll work while a fill target is open', () => {
  const q = new ByteQueue();
  const read = reader(100);
  const data = randomBytes(8192);
  q.push(read(data.subarray(0, 100)), true);
  q.settle(8192);
  q.push(read(data.subarray(100, 200)), true);
  assert.equal(q.skip(50), 50);
  const rest = q.takeAll();
  assert.deepEqual(Buffer.concat(rest), data.subarray(50, 200));
  assert.equal(q.offset, 200);
  assert.equal(q.length, 0);
});

test('owned chunks are still handed out as views (no copy)', () => {
  const q = new ByteQueue();
  const chunk = randomBytes(100);
  q.push(chunk);
  const v = q.take(40);
  assert.equal(v.buffer, chunk.buffer);
});
