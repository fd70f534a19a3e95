// Tests of the chunk manifest: the incremental builder agrees with hashing each chunk directly however the input is
// split, zero chunks are flagged (and only those), and peer manifests are validated before use.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hashFile } from './hashing.js';
import { checkManifest, chunkCount, ManifestBuilder, manifestDigest, zeroSha256, type ChunkManifest } from './manifest.js';

const CS = 65536;

/** 5.5 chunks: data, zeros, zeros-then-data, data-then-zeros, zeros, short data tail. */
function sampleBytes(): Buffer {
  const b = Buffer.alloc(5 * CS + CS / 2);
  randomBytes(CS).copy(b, 0);
  randomBytes(100).copy(b, 2 * CS + CS - 100);
  randomBytes(100).copy(b, 3 * CS);
  randomBytes(10).copy(b, 5 * CS);
  return b;
}

function direct(b: Buffer): ChunkManifest['chunks'] {
  const out: ChunkManifest['chunks'] = [];
  for (let off = 0; off < b.length; off += CS) {
    const c = b.subarray(off, Math.min(off + CS, b.length));
    const sha256 = createHash('sha256').update(c).digest('hex');
    out.push(c.every((x) => x === 0) ? { offset: off, length: c.length, sha256, zero: true } : { offset: off, length: c.length, sha256 });
  }
  return out;
}

test('builder matches direct hashing for random splits of the input', () => {
  const b = sampleBytes();
  const want = direct(b);
  assert.deepEqual(want.map((c) => c.zero === true), [false, true, false, false, true, false]);
  for (let round = 0; round < 50; round++) {
    const m = new ManifestBuilder(b.length, CS);
    let pos = 0;
    while (pos < b.length) {
      const n = Math.min(b.length - pos, 1 + Math.floor(Math.random() * CS * 1.5));
      m.update(b.subarray(pos, pos + n));
      pos += n;
    }
    assert.deepEqual(m.finish({ name: 'n', uuid: 'u', sha512: 's' }).chunks, want);
  }
});

test('builder refuses too many or too few bytes', () => {
  const m = new ManifestBuilder(10, CS);
  assert.throws(() => m.update(Buffer.alloc(11)), /more than 10 bytes/);
  const short = new ManifestBuilder(CS + 1, CS);
  short.update(Buffer.alloc(CS));
  assert.throws(() => short.finish({ name: 'n', uuid: 'u', sha512: 's' }), /incomplete/);
});

test('hashFile computes SHA-512 and the manifest in one pass', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bim-manifest-'));
  try {
    const b = sampleBytes();
    const path = join(dir, 'f');
    writeFileSync(path, b);
    let read = 0;
    const r = await hashFile(path, { chunkSize: CS, ids: { name: 'n', uuid: 'u' }, onRead: (n) => (read += n) });
    assert.equal(r.sha512, createHash('sha512').update(b).digest('hex'));
    assert.deepEqual(r.manifest?.chunks, direct(b));
    assert.equal(r.manifest?.sha512, r.sha512);
    assert.equal(read, b.length, 'every byte read exactly once');
    writeFileSync(path, '');
    assert.equal((await hashFile(path)).sha512, createHash('sha512').digest('hex'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkManifest accepts a good manifest and refuses foreign or malformed ones', () => {
  const b = sampleBytes();
  const good = { name: 'n', uuid: 'u', size: b.length, chunkSize: CS, sha512: 'a'.repeat(128), chunks: direct(b) };
  assert.deepEqual(checkManifest(JSON.parse(JSON.stringify(good)), { size: b.length, chunkSize: CS }, 'peer').chunks, good.chunks);
  const cases: Array<[unknown, RegExp]> = [
    [null, /not a JSON object/],
    [{ ...good, size: 1 }, /describes 1 bytes/],
    [{ ...good, chunkSize: CS * 2 }, /chunk size/],
    [{ ...good, sha512: 'x' }, /SHA-512/],
    [{ ...good, chunks: good.chunks.slice(1) }, /5 chunks, expected 6/],
    [{ ...good, chunks: good.chunks.map((c, i) => (i === 2 ? { ...c, offset: 1 } : c)) }, /chunk 2 is not at offset/],
    [{ ...good, chunks: good.chunks.map((c, i) => (i === 0 ? { ...c, zero: true } : c)) }, /chunk 0 is flagged zero/],
  ];
  for (const [m, re] of cases) assert.throws(() => checkManifest(m, { size: b.length, chunkSize: CS }, 'http://peer'), re);
});

test('the digest changes with any chunk hash and binds the layout', () => {
  const b = sampleBytes();
  const m = { size: b.length, chunkSize: CS, chunks: direct(b) };
  const d = manifestDigest(m);
  assert.equal(d.length, 32);
  const changed = { ...m, chunks: m.chunks.map((c, i) => (i === 3 ? { ...c, sha256: zeroSha256(1) } : c)) };
  assert.notDeepEqual(manifestDigest(changed), d);
  assert.notDeepEqual(manifestDigest({ ...m, size: m.size + 1 }), d);
  assert.equal(chunkCount(m.size, CS), 6);
});
