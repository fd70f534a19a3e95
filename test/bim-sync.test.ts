// End-to-end tests of peer sync between real `stratum bim` processes on big files: kill -9 of the receiver halfway
// through 1 GiB and resume (bytes re-sent counted by the sender), memory of the receiver during a 1 GiB sync,
// a 4 GiB sparse image holding 256 MiB that stays sparse, and fan-out over several peers with one dead and one
// killed mid-transfer. Files are random data (head -c) or qemu-img images; checksums are checked with sha512sum.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { manifestDigest, type ChunkManifest } from '../src/bim/manifest.js';
import { BimProcess, exec, makeDisk, memoryOf, randomFile, sha512sum, stagedPath, type FileInfo } from './helpers/bim.js';
import { freePort, hasTool, tempDir, waitFor } from './helpers/processes.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const root = tempDir('bim-sync');
after(() => root.remove());

async function startSync(to: BimProcess, name: string, body: { uuid: string; size: number; expectedChecksum: string; expectedManifestDigest?: string; sources: string[] }): Promise<void> {
  const r = await to.api('POST', `/v1/files/${name}/sync`, body);
  assert.ok(r.status === 202 || r.status === 200, `sync ${name}: ${r.status} ${JSON.stringify(r.body)}`);
}

async function waitProgress(bim: BimProcess, name: string, atLeast: number): Promise<FileInfo> {
  return waitFor(
    `${name} at ${atLeast} bytes`,
    async () => {
      const f = await bim.file(name);
      if (f.state === 'failed') throw new Error(f.message);
      return f.processedSize >= atLeast ? f : undefined;
    },
    120_000,
  );
}

describe('1 GiB sync', () => {
  // The cap makes "halfway" last long enough to hit it reliably (1 GiB takes about 6 s).
  const a = new BimProcess(makeDisk(root.path, 'big-a'), { args: ['--bandwidth-limit', '160Mi'] });
  const b = new BimProcess(makeDisk(root.path, 'big-b'));
  const c = new BimProcess(makeDisk(root.path, 'big-c'));
  let sha = '';
  before(async () => {
    await a.start();
    const src = stagedPath(a.disk, 'big');
    await randomFile(src, GiB);
    sha = await sha512sum(src);
    await a.fetchReady('big', 'u1', src, GiB, { expectedChecksum: sha });
  });
  after(() => Promise.all([a.stop(), b.stop(), c.stop()]));

  test('kill -9 of the receiver halfway: the next sync re-sends under 20% and the copy verifies', async (t) => {
    await b.start();
    const t0 = Date.now();
    await startSync(b, 'big', { uuid: 'u1', size: GiB, expectedChecksum: sha, sources: [a.url] });
    const atKill = await waitProgress(b, 'big', GiB / 2);
    await b.kill9();
    const sentAtKill = (await a.stats()).sent.dataBytes;
    const dir = join(b.disk.path, 'backing-images', 'big-u1');
    assert.ok(existsSync(join(dir, 'backing.partial')) && existsSync(join(dir, 'backing.partial.map')));

    await b.start();
    const back = await b.file('big');
    assert.equal(back.state, 'pending');
    assert.match(back.message, /interrupted by a restart with \d+ of 1073741824 bytes received/);
    assert.ok(back.processedSize > 0, 'the persisted map keeps the chunks received before the kill');
    // Resumed with the image's manifest anchor: the chunks the first attempt marked (it had none) are read back and
    // checked, the rest checked as they land.
    const manifest = (await a.api<ChunkManifest>('GET', '/v1/files/big/chunks?uuid=u1')).body;
    const hashed0 = (await b.stats()).hashedBytes;
    await startSync(b, 'big', { uuid: 'u1', size: GiB, expectedChecksum: sha, expectedManifestDigest: `${manifest.chunkSize}:${manifestDigest(manifest).toString('hex')}`, sources: [a.url] });
    const done = await b.waitState('big', ['ready'], 180_000);
    const sent = (await a.stats()).sent.dataBytes;
    const resent = sent - GiB;
    t.diagnostic(
      `killed at ${atKill.processedSize} bytes received (${(sentAtKill / MiB).toFixed(0)} MiB sent); persisted ${back.processedSize}; ` +
        `sender total ${sent} bytes, re-sent ${resent} (${((resent / GiB) * 100).toFixed(1)}%); ${(Date.now() - t0) / 1000} s`,
    );
    assert.ok(resent >= 0);
    assert.ok(resent < 0.2 * GiB, `re-sent ${resent} bytes`);
    assert.ok(sent - sentAtKill < 0.7 * GiB, 'the second sync sent only what was missing');
    assert.equal(done.currentChecksum, sha);
    assert.equal((await b.stats()).hashedBytes - hashed0, GiB, 'every byte checked once: the persisted chunks read back, the others as they landed');
    assert.equal(await sha512sum(join(dir, 'backing')), sha);
    assert.deepEqual(readdirSync(dir).sort(), ['backing', 'backing.chunks-4194304.json', 'backing.meta.json']);
  });

  test('the receiver\'s memory grows by at most 64 MiB during a 1 GiB sync', async (t) => {
    await c.start();
    await new Promise((r) => setTimeout(r, 500));
    const before = memoryOf(c.pid);
    const t0 = Date.now();
    await startSync(c, 'big', { uuid: 'u1', size: GiB, expectedChecksum: sha, sources: [a.url] });
    await c.waitState('big', ['ready'], 180_000);
    const after = memoryOf(c.pid);
    const growth = after.hwm - before.rss;
    t.diagnostic(`RSS before ${(before.rss / MiB).toFixed(1)} MiB, peak after ${(after.hwm / MiB).toFixed(1)} MiB, growth ${(growth / MiB).toFixed(1)} MiB; sync took ${(Date.now() - t0) / 1000} s`);
    assert.ok(growth <= 64 * MiB, `grew by ${growth} bytes`);
  });
});

describe('4 GiB sparse image', { skip: hasTool('qemu-img') ? false : 'qemu-img is not installed' }, () => {
  const a = new BimProcess(makeDisk(root.path, 'sparse-a'));
  const b = new BimProcess(makeDisk(root.path, 'sparse-b'));
  before(() => Promise.all([a.start(), b.start()]));
  after(() => Promise.all([a.stop(), b.stop()]));

  test('holding 256 MiB of data, it stays sparse on the receiver and verifies', async (t) => {
    const src = stagedPath(a.disk, 'sparse');
    const q = await exec('qemu-img', ['create', '-f', 'raw', src, '4G']);
    assert.equal(q.code, 0, q.stderr);
    // 16 runs of 16 MiB, starting 3 MiB into every 256 MiB, so runs begin and end inside 4 MiB chunks.
    for (let k = 0; k < 16; k++) {
      const d = await exec('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', 'count=16', `seek=${k * 256 + 3}`, 'conv=notrunc', 'status=none']);
      assert.equal(d.code, 0, d.stderr);
    }
    const size = statSync(src).size;
    assert.equal(size, 4 * GiB);
    const sha = await sha512sum(src);
    await a.fetchReady('sparse', 'u1', src, size, { expectedChecksum: sha });
    const t0 = Date.now();
    await startSync(b, 'sparse', { uuid: 'u1', size, expectedChecksum: sha, sources: [a.url] });
    const f = await b.waitState('sparse', ['ready'], 180_000);
    const copy = join(b.disk.path, 'backing-images', 'sparse-u1', 'backing');
    const allocated = statSync(copy).blocks * 512;
    const du = await exec('du', ['-B1', copy]);
    const sent = (await a.stats()).sent.dataBytes;
    t.diagnostic(`copy allocates ${(allocated / MiB).toFixed(1)} MiB (du: ${du.stdout.split('\t')[0]}), realSize ${f.realSize}; sender sent ${(sent / MiB).toFixed(1)} MiB; ${(Date.now() - t0) / 1000} s`);
    assert.ok(allocated < 300 * MiB, `allocated ${allocated}`);
    assert.equal(f.realSize, allocated);
    assert.ok(sent <= 16 * 5 * 4 * MiB, 'only chunks holding data were sent');
    assert.equal(f.virtualSize, 4 * GiB);
    assert.equal(await sha512sum(copy), sha);
  });
});

describe('several peers', () => {
  const a = new BimProcess(makeDisk(root.path, 'fan-a'), { args: ['--bandwidth-limit', '24Mi'] });
  const b = new BimProcess(makeDisk(root.path, 'fan-b'), { args: ['--bandwidth-limit', '24Mi'] });
  const c = new BimProcess(makeDisk(root.path, 'fan-c'));
  const size = 96 * MiB;
  let sha = '';
  before(async () => {
    await Promise.all([a.start(), b.start(), c.start()]);
    const src = stagedPath(a.disk, 'fan');
    await randomFile(src, size);
    sha = await sha512sum(src);
    await a.fetchReady('fan', 'u1', src, size);
    await startSync(b, 'fan', { uuid: 'u1', size, expectedChecksum: sha, sources: [a.url] });
    await b.waitState('fan', ['ready'], 60_000);
  });
  after(() => Promise.all([a.stop(), b.stop(), c.stop()]));

  test('chunks are spread over the live peers, a dead one is skipped, a peer killed mid-sync is replaced', async (t) => {
    const aBefore = (await a.stats()).sent.dataBytes;
    const dead = `http://127.0.0.1:${await freePort()}`;
    await startSync(c, 'fan', { uuid: 'u1', size, expectedChecksum: sha, sources: [dead, a.url, b.url] });
    await waitProgress(c, 'fan', size / 3);
    const fromB = (await b.stats()).sent.dataBytes;
    await b.kill9();
    const f = await c.waitState('fan', ['ready'], 60_000);
    const fromA = (await a.stats()).sent.dataBytes - aBefore;
    t.diagnostic(`from a ${(fromA / MiB).toFixed(1)} MiB, from b ${(fromB / MiB).toFixed(1)} MiB before it was killed`);
    assert.ok(fromB > 8 * MiB, 'b served a share');
    assert.ok(fromA > 8 * MiB, 'a served a share');
    assert.ok(fromA + fromB >= size);
    assert.equal(f.currentChecksum, sha);
    assert.equal(await sha512sum(join(c.disk.path, 'backing-images', 'fan-u1', 'backing')), sha);
  });
});
