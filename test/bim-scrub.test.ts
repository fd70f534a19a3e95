// End-to-end: scrubbing ready files between two real `stratum bim` processes. Bytes of a ready copy are changed on
// disk with its size, mtime and inode kept (what bit rot looks like): the manager's own identity check cannot see it,
// a scrub does. With a peer the damaged chunk alone is fetched again and written in place, so a reader that had the
// file open reads the repaired bytes; without one the copy is set aside and fails. A clean scrub only records when.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BimProcess, makeDisk, randomFile, sha512sum, stagedPath, type FileInfo } from './helpers/bim.js';
import { tempDir, waitFor } from './helpers/processes.js';

const MiB = 1024 * 1024;
const SIZE = 24 * MiB;
const root = tempDir('bim-scrub');
const a = new BimProcess(makeDisk(root.path, 'a'));
const b = new BimProcess(makeDisk(root.path, 'b'));
let sha = '';
const backingOf = (bim: BimProcess) => join(bim.disk.path, 'backing-images', 'img-u1', 'backing');

before(async () => {
  await a.start();
  await b.start();
  const src = stagedPath(a.disk, 'img');
  await randomFile(src, SIZE);
  sha = await sha512sum(src);
  await a.fetchReady('img', 'u1', src, SIZE, { expectedChecksum: sha });
  const r = await b.api('POST', '/v1/files/img/sync', { uuid: 'u1', size: SIZE, expectedChecksum: sha, sources: [a.url] });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  await b.waitState('img', ['ready']);
});

after(async () => {
  await Promise.all([a.stop(), b.stop()]);
  root.remove();
});

/** Overwrites `length` bytes at `offset` and puts the mtime back to the nanosecond: size, mtime and inode unchanged. */
function rot(path: string, offset: number, length: number): void {
  const before = statSync(path, { bigint: true });
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.alloc(length, 0xa5), 0, length, offset);
  } finally {
    closeSync(fd);
  }
  // touch takes the time to the nanosecond (utimes from Node takes a double of seconds and loses some).
  const ns = before.mtimeNs;
  const t = spawnSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, path]);
  assert.equal(t.status, 0, String(t.stderr));
  const now = statSync(path, { bigint: true });
  assert.deepEqual([now.ino, now.size, now.mtimeNs], [before.ino, before.size, before.mtimeNs], 'identity kept');
}

async function scrub(bim: BimProcess, body: Record<string, unknown>): Promise<{ status: number; body: FileInfo & { code?: string } }> {
  return bim.api('POST', '/v1/files/img/scrub', { uuid: 'u1', ...body });
}

test('a clean scrub reads every byte, keeps the file ready and records when it was verified', async () => {
  const before = await b.file('img');
  const hashed0 = (await b.stats()).hashedBytes;
  const r = await scrub(b, { sources: [a.url], request: '2026-12-07T10:00:00.000Z' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.equal(r.body.state, 'ready', 'the file stays ready while it is read');
  const after = await waitFor('the scrub to record its time', async () => {
    const f = await b.file('img');
    return f.verifiedAt > before.verifiedAt && f.scrubbedSize === undefined ? f : undefined;
  });
  assert.equal(after.state, 'ready');
  assert.equal(after.scrubRequest, '2026-12-07T10:00:00.000Z', 'the request it answered is recorded');
  assert.equal(after.lastStateTransitionTime, before.lastStateTransitionTime, 'no state change');
  assert.ok((await b.stats()).hashedBytes - hashed0 >= SIZE, 'every byte was read');
});

test('changed bytes with the identity kept: the scrub finds them and fetches only the damaged chunk again, in place', async () => {
  const path = backingOf(b);
  const reader = openSync(path, 'r'); // a volume's replica holding the file open
  try {
    const received0 = (await b.stats()).received.bytes;
    rot(path, 5 * MiB + 100, 300); // inside the second 4 MiB chunk; the identity check cannot see it
    assert.notEqual(await sha512sum(path), sha);

    const r = await scrub(b, { sources: [a.url] });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const done = await waitFor('the repair to end', async () => {
      const f = await b.file('img');
      return f.state === 'failed' || f.message.startsWith('repaired') ? f : undefined;
    });
    assert.equal(done.state, 'ready', done.message);
    assert.match(done.message, /^repaired by a scrub: 1 chunk had changed on disk \(the first at offset 4194304\) and was fetched again from peers$/);
    assert.equal(await sha512sum(path), sha);
    assert.equal((await b.stats()).received.bytes - received0, 4 * MiB, 'one chunk fetched, not the file');
    const seen = Buffer.alloc(300);
    readSync(reader, seen, 0, 300, 5 * MiB + 100);
    assert.ok(!seen.equals(Buffer.alloc(300, 0xa5)), 'the open file reads the repaired bytes');
  } finally {
    closeSync(reader);
  }
});

test('without a peer to repair from, a damaged copy is set aside and fails, saying why', async () => {
  rot(backingOf(b), 100, 10);
  const r = await scrub(b, { sources: [] });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const f = await b.waitState('img', ['failed'], 30_000);
  assert.match(f.message, /the scrub found that img no longer hashes to its SHA-512 .*: 1 of 6 chunks of 4194304 bytes changed, the first at offset 0; no other disk holds a ready copy to repair it from; it was set aside as backing.rejected and is not served$/);
  const dir = join(b.disk.path, 'backing-images', 'img-u1');
  assert.ok(existsSync(join(dir, 'backing.rejected')) && !existsSync(join(dir, 'backing')));
});

test('a scrub is refused for a file that is not ready, with a bad rate, or with a name that climbs out', async () => {
  const notReady = await scrub(b, {});
  assert.equal(notReady.status, 409);
  assert.match(notReady.body.message ?? '', /img \(uuid u1\) is failed; only a ready file is scrubbed/);
  const rate = await a.api<{ message: string }>('POST', '/v1/files/img/scrub', { uuid: 'u1', maxBytesPerSecond: -5 });
  assert.equal(rate.status, 400);
  assert.match(rate.body.message, /maxBytesPerSecond must be a positive whole number/);
  const token = await a.api<{ message: string }>('POST', '/v1/files/img/scrub', { uuid: 'u1', request: 'x'.repeat(65) });
  assert.equal(token.status, 400);
  assert.match(token.body.message, /request must be a string of at most 64 characters/);
  const climb = await a.api('POST', '/v1/files/..%2Fetc/scrub', { uuid: 'u1' });
  assert.equal(climb.status, 400);
});

test('a scrub reads at the rate asked for, and one file at a time per disk', async () => {
  const t0 = Date.now();
  const r = await scrub(a, { maxBytesPerSecond: 8 * MiB });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const mid = await waitFor('the scrub to be under way', async () => {
    const f = await a.file('img');
    return (f.scrubbedSize ?? 0) > 0 ? f : undefined;
  });
  assert.ok((mid.scrubbedSize ?? 0) < SIZE);
  const again = await scrub(a, {});
  assert.equal(again.status, 200, 'the same file: joins the scrub under way');
  await waitFor('the scrub to end', async () => ((await a.file('img')).scrubbedSize === undefined ? true : undefined), 30_000);
  const took = (Date.now() - t0) / 1000;
  assert.ok(took >= 2, `24 MiB at 8 MiB/s took ${took} s`);
  assert.equal((await a.file('img')).state, 'ready');
});

test('a failed copy synced again keeps the chunks of its set-aside file that still match: only the damaged one is fetched', async () => {
  // The scrub without a peer (above) set b's copy aside: chunk 0 of 6 changed.
  const dir = join(b.disk.path, 'backing-images', 'img-u1');
  assert.ok(existsSync(join(dir, 'backing.rejected')), 'the copy is set aside');
  const s0 = await b.stats();
  const r = await b.api('POST', '/v1/files/img/sync', { uuid: 'u1', size: SIZE, expectedChecksum: sha, sources: [a.url] });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const f = await b.waitState('img', ['ready', 'failed']);
  assert.equal(f.state, 'ready', f.message);
  assert.equal(await sha512sum(backingOf(b)), sha);
  const s1 = await b.stats();
  assert.equal(s1.received.bytes - s0.received.bytes, 4 * MiB, 'one chunk fetched, not the file');
  assert.equal(s1.received.reusedChunks - s0.received.reusedChunks, 5, 'the 5 good chunks kept');
  assert.ok(!existsSync(join(dir, 'backing.rejected')), 'the set-aside file became the copy');
});

test('a reused set-aside file: a chunk that should be zero but is not is zeroed, a damaged data chunk fetched', async () => {
  // 12 MiB: random, zeros (a hole on the receiver), random.
  const src = stagedPath(a.disk, 'zimg');
  await randomFile(src, 12 * MiB);
  const fd = openSync(src, 'r+');
  writeSync(fd, Buffer.alloc(4 * MiB), 0, 4 * MiB, 4 * MiB);
  closeSync(fd);
  const zsha = await sha512sum(src);
  await a.fetchReady('zimg', 'z1', src, 12 * MiB, { expectedChecksum: zsha });
  const sync = () => b.api('POST', '/v1/files/zimg/sync', { uuid: 'z1', size: 12 * MiB, expectedChecksum: zsha, sources: [a.url] });
  assert.equal((await sync()).status, 202);
  await b.waitState('zimg', ['ready']);
  const path = join(b.disk.path, 'backing-images', 'zimg-z1', 'backing');
  rot(path, 5 * MiB, 300); // the zero chunk
  rot(path, 9 * MiB, 300); // the last data chunk
  const failed = await b.api('POST', '/v1/files/zimg/scrub', { uuid: 'z1', sources: [] });
  assert.equal(failed.status, 202, JSON.stringify(failed.body));
  await b.waitState('zimg', ['failed'], 30_000);

  const s0 = await b.stats();
  assert.equal((await sync()).status, 202);
  const f = await b.waitState('zimg', ['ready', 'failed']);
  assert.equal(f.state, 'ready', f.message);
  assert.equal(await sha512sum(path), zsha, 'the zero chunk reads zeros again, the data chunk was fetched');
  const s1 = await b.stats();
  assert.equal(s1.received.bytes - s0.received.bytes, 4 * MiB, 'only the damaged data chunk fetched');
  assert.equal(s1.received.reusedChunks - s0.received.reusedChunks, 1, 'the first data chunk kept');
});
