// The sender's chunk manifests: computed on the first request (503 until then), served from the cache file after;
// a computation that keeps ending without a manifest is tried a few times, each pending answer saying why the
// last one ended, and then refused with the reasons instead of keeping receivers waiting forever.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isBimError } from './errors.js';
import { identityOf } from './fsutil.js';
import { FILES, DiskLayout } from './names.js';
import { MANIFEST_ATTEMPTS, Sender } from './sender.js';
import { systemClock } from './states.js';
import { BimStats } from './stats.js';
import { FileRecord, FileTable } from './table.js';

const root = mkdtempSync(join(tmpdir(), 'bim-sender-'));
after(() => rmSync(root, { recursive: true, force: true }));

const CHUNK = 1 << 20;

async function readyFile(label: string, data: Buffer, recorded: string): Promise<{ sender: Sender; rec: FileRecord; suspects: string[] }> {
  const layout = new DiskLayout(join(root, label));
  const rec = new FileRecord('img-u1', 'img', 'u1', Date.now());
  mkdirSync(layout.dirOf(rec.key), { recursive: true });
  writeFileSync(layout.path(rec.key, FILES.backing), data);
  rec.state = 'ready';
  rec.size = data.length;
  rec.currentChecksum = recorded;
  rec.identity = await identityOf(layout.path(rec.key, FILES.backing));
  const suspects: string[] = [];
  const sender = new Sender({ layout, table: new FileTable({ clock: systemClock }), stats: new BimStats(), maxConcurrentSends: 4, bucket: undefined, onSuspect: (_r, why) => suspects.push(why) });
  return { sender, rec, suspects };
}

/** The manifest once computed: asks until it is no longer pending, returning every pending message seen. */
async function ask(sender: Sender, rec: FileRecord): Promise<{ pending: string[]; result: unknown }> {
  const pending: string[] = [];
  for (let i = 0; i < 200; i++) {
    try {
      return { pending, result: await sender.manifest(rec, CHUNK) };
    } catch (err) {
      if (!isBimError(err, 'ManifestPending')) return { pending, result: err };
      pending.push(err.message);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`still pending after 200 requests: ${pending.at(-1)}`);
}

test('a manifest is computed on the first request and served from the cache file after', async () => {
  const data = Buffer.alloc(3 * CHUNK + 5, 7);
  const { sender, rec } = await readyFile('good', data, createHash('sha512').update(data).digest('hex'));
  try {
    const first = await ask(sender, rec);
    assert.ok(first.pending.length > 0, 'the first request is answered 503 while it is computed');
    assert.equal((first.result as { chunks: unknown[] }).chunks.length, 4);
    const again = await ask(sender, rec);
    assert.equal(again.pending.length, 0, 'served from the cache file');
  } finally {
    await sender.close();
  }
});

test('a computation that keeps failing is refused after a few attempts, each pending answer saying why', async () => {
  const data = Buffer.alloc(2 * CHUNK, 1);
  const { sender, rec, suspects } = await readyFile('bad', data, 'f'.repeat(128));
  try {
    const { pending, result } = await ask(sender, rec);
    assert.ok(isBimError(result, 'Internal'), `refused, not pending forever: ${String(result)}`);
    assert.match((result as Error).message, new RegExp(`could not be computed ${MANIFEST_ATTEMPTS} times in a row: the file hashes to [0-9a-f]{128}, not to the recorded f{128}`));
    assert.ok(pending.some((m) => /attempt 2 of 3; the last one ended: the file hashes to/.test(m)), pending.join('\n'));
    assert.equal(suspects.length, MANIFEST_ATTEMPTS, 'every failed pass hands the file back for re-verification');
  } finally {
    await sender.close();
  }
});

test('a receiver whose peer keeps computing its manifest fails the copy after its wait, saying what the peer said', async () => {
  const { createServer } = await import('node:http');
  const { BackingImageManager } = await import('./manager.js');
  let n = 0;
  // A peer whose manifest is always "being computed", with progress that keeps moving (so the copy's starting
  // deadline keeps being pushed back): only the receiver's own bound on the wait ends it.
  const peer = createServer((_req, res) => {
    const body = JSON.stringify({ code: 'ManifestPending', message: `the chunk manifest of img is being computed: ${n++ % 100}% done; ask again shortly` });
    res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'retry-after': '1' });
    res.end(body);
  });
  await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
  const disk = join(root, 'receiver');
  mkdirSync(disk, { recursive: true });
  writeFileSync(join(disk, 'longhorn-disk.cfg'), JSON.stringify({ diskUUID: 'd1' }));
  const m = await BackingImageManager.open({ disk, diskUUID: 'd1', clusterSecret: 's', manifestWaitMs: 2500, tickMs: 100 });
  try {
    const port = (peer.address() as { port: number }).port;
    m.startSync({ name: 'img', uuid: 'u1', size: CHUNK, expectedChecksum: 'a'.repeat(128), sources: [`http://127.0.0.1:${port}`] });
    let f = await m.get('img', 'u1');
    for (let i = 0; i < 100 && f.state !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      f = await m.get('img', 'u1');
    }
    assert.equal(f.state, 'failed', JSON.stringify(f));
    assert.match(f.message, /no chunk manifest of img from http:\/\/127\.0\.0\.1:\d+ within 3 s; the last answer: the chunk manifest of img is being computed: \d+% done/);
  } finally {
    await m.close();
    await new Promise((r) => peer.close(r));
  }
});

test('a deleted file leaves no record of failed computations behind', async () => {
  const data = Buffer.alloc(2 * CHUNK, 1);
  const { sender, rec } = await readyFile('forgotten', data, 'f'.repeat(128));
  const pendingMessage = async () => {
    try {
      await sender.manifest(rec, CHUNK);
      return 'served';
    } catch (err) {
      return (err as Error).message;
    }
  };
  try {
    assert.doesNotMatch(await pendingMessage(), /attempt/);
    // The first computation (2 MiB) fails at once: its file does not hash to the recorded checksum.
    await new Promise((r) => setTimeout(r, 300));
    sender.forget(rec);
    assert.doesNotMatch(await pendingMessage(), /attempt/, 'counted from the start again');
    await new Promise((r) => setTimeout(r, 300));
    assert.match(await pendingMessage(), /attempt 2 of 3/, 'without forget, failures are counted');
  } finally {
    await sender.close();
  }
});
