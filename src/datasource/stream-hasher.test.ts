import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_CHUNK_SIZE, ManifestBuilder } from '../bim/manifest.js';
import { StreamHasher } from './stream-hasher.js';

const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');
const MiB = 1024 * 1024;

test('hashes in call order on its thread, and a buffer may be reused once update resolves', async () => {
  const h = new StreamHasher(DEFAULT_CHUNK_SIZE);
  try {
    const data = randomBytes(11 * MiB + 5);
    const reused = Buffer.alloc(3 * MiB);
    // More than the slots at once, pieces larger than a slot, and a buffer overwritten right after each update.
    for (let at = 0; at < data.length; at += reused.length) {
      const n = Math.min(reused.length, data.length - at);
      data.copy(reused, 0, at, at + n);
      await h.update(reused.subarray(0, n));
      reused.fill(0xee);
    }
    assert.equal(await h.digest(), sha512(data));
    const expected = new ManifestBuilder(undefined, DEFAULT_CHUNK_SIZE);
    expected.update(data);
    const ids = { name: 'n', uuid: 'u', sha512: sha512(data) };
    assert.deepEqual(await h.manifest(ids, data.length), expected.finish(ids, data.length));
  } finally {
    await h.close();
  }
});

test('a mark and a rollback return to the bytes hashed at the mark', async () => {
  const h = new StreamHasher(DEFAULT_CHUNK_SIZE);
  try {
    await h.update(Buffer.from('kept'));
    await h.mark();
    await h.update(Buffer.from(' and dropped'));
    await h.rollback();
    await h.update(Buffer.from(' then more'));
    assert.equal(await h.digest(), sha512(Buffer.from('kept then more')));
  } finally {
    await h.close();
  }
});

test('rehash starts over from a file; a file shorter than asked fails naming it, and every later call fails too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stream-hasher-'));
  const h = new StreamHasher(DEFAULT_CHUNK_SIZE);
  try {
    const data = randomBytes(5 * MiB);
    const path = join(dir, 'part');
    writeFileSync(path, data);
    await h.update(Buffer.from('forgotten'));
    await h.rehash(path, 4 * MiB);
    assert.equal(await h.digest(), sha512(data.subarray(0, 4 * MiB)));
    await assert.rejects(h.rehash(path, 6 * MiB), (err: Error) => err.message.includes(`${path} ended at ${5 * MiB}`));
    const other = new StreamHasher(DEFAULT_CHUNK_SIZE);
    await other.close();
    await assert.rejects(other.digest(), /hashing the data failed: the hashing thread was stopped/);
    await assert.rejects(other.update(Buffer.alloc(1)), /hashing the data failed/);
  } finally {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an aborted rehash stops the thread and rejects with the abort reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stream-hasher-'));
  const h = new StreamHasher(DEFAULT_CHUNK_SIZE);
  try {
    const path = join(dir, 'part');
    writeFileSync(path, Buffer.alloc(64 * MiB, 1));
    const ac = new AbortController();
    const p = h.rehash(path, 64 * MiB, ac.signal);
    ac.abort(new Error('stop now'));
    await assert.rejects(p, /stop now/);
    await assert.rejects(h.digest(), /hashing the data failed/);
  } finally {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
