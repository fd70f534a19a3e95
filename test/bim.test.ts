// End-to-end tests of `stratum bim` (real processes, real files): the disk identity check, take-over by rename,
// path safety, downloads (Range, gzip), checksum failures, the watch stream, restart without re-reading, orphan
// directories, deadlines and the send limit. Big-file sync tests are in bim-sync.test.ts.

import { identityFromStat } from '../src/api/file-identity.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { manifestDigest, type ChunkManifest } from '../src/bim/manifest.js';
import { dataPlaneAuth } from './helpers/credentials.js';
import { BimProcess, bytesReadBy, exec as run, makeDisk, randomFile, sha512sum, stagedPath, type FileInfo, type Stats } from './helpers/bim.js';
import { freePort, hasTool, tempDir, waitFor } from './helpers/processes.js';

const CURL_AUTH = ['-H', `Authorization: ${dataPlaneAuth().authorization ?? ''}`];

const MiB = 1024 * 1024;
const root = tempDir('bim');
after(() => root.remove());

async function startSyncOn(to: BimProcess, name: string, body: { uuid: string; size: number; expectedChecksum: string; expectedManifestDigest?: string; sources: string[] }): Promise<void> {
  const r = await to.api('POST', `/v1/files/${name}/sync`, body);
  assert.equal(r.status, 202, JSON.stringify(r.body));
}

/** The anchor a BackingImage status carries for `m`. */
const anchorOf = (m: ChunkManifest) => `${m.chunkSize}:${manifestDigest(m).toString('hex')}`;

/** Not one of ours: a peer serving `manifest` and, for each chunk request, what `bytes` gives. */
async function fakePeer(bytes: (offset: number, length: number) => Buffer, manifest: unknown) {
  const ranges: Array<{ offset: number; length: number }> = [];
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname.endsWith('/chunks')) {
      const body = JSON.stringify(manifest);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    const off = Number(u.searchParams.get('offset'));
    const len = Number(u.searchParams.get('length'));
    ranges.push({ offset: off, length: len });
    res.writeHead(200, { 'content-length': len }).end(bytes(off, len));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return {
    url: `http://127.0.0.1:${addr && typeof addr === 'object' ? addr.port : 0}`,
    rangeRequests: () => ranges.length,
    ranges: () => [...ranges],
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** A random file of `size` bytes where a data source leaves its finished file, with its SHA-512 and identity. */
async function sourceFile(disk: { path: string }, name: string, size: number) {
  const path = stagedPath(disk, name);
  await randomFile(path, size);
  const st = statSync(path, { bigint: true });
  return { path, size, sha512: await sha512sum(path), identity: identityFromStat(st) };
}

test('refuses to start on a disk whose longhorn-disk.cfg names another disk', async () => {
  const disk = makeDisk(root.path, 'wrong-uuid');
  const bim = new BimProcess({ path: disk.path, uuid: 'not-this-disk' });
  const child = bim.spawn();
  const code = await new Promise<number | null>((res) => child.once('exit', res));
  assert.equal(code, 1);
  assert.match(bim.log, /names disk ".*", but this manager was started for disk not-this-disk/);
  assert.equal(existsSync(join(disk.path, 'backing-images')), false, 'nothing created on a disk it refused');
});

describe('one manager', () => {
  const disk = makeDisk(root.path, 'single');
  const bim = new BimProcess(disk, { env: { STRATUM_BIM_API_VERSION: '3', STRATUM_BIM_API_MIN_VERSION: '2' } });
  before(() => bim.start());
  after(() => bim.stop());

  test('reports the API version range from the environment', async () => {
    const v = await bim.api<{ apiVersion: number; apiMinVersion: number; diskUUID: string }>('GET', '/v1/version');
    assert.deepEqual(v.body, { apiVersion: 3, apiMinVersion: 2, diskUUID: disk.uuid });
  });

  test('fetch takes a vouched file over by rename without reading it', async () => {
    const src = await sourceFile(disk, 'vouched', 8 * MiB);
    const before = await bim.stats();
    const info = await bim.fetchReady('vouched', 'u1', src.path, src.size, { sha512: src.sha512, identity: src.identity, expectedChecksum: src.sha512 });
    assert.equal(info.currentChecksum, src.sha512);
    assert.equal(info.format, 'raw');
    assert.equal(info.virtualSize, src.size);
    assert.equal((await bim.stats()).hashedBytes, before.hashedBytes, 'not a byte hashed');
    const backing = join(disk.path, 'backing-images', 'vouched-u1', 'backing');
    assert.equal(statSync(backing, { bigint: true }).ino.toString(), src.identity.inode, 'same inode: renamed, not copied');
    assert.equal(existsSync(src.path), false);
    const meta = JSON.parse(readFileSync(join(disk.path, 'backing-images', 'vouched-u1', 'backing.meta.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(meta.sha512, src.sha512);
    assert.deepEqual(meta.identity, src.identity);
    // Asking again is idempotent.
    const again = await bim.api<FileInfo>('POST', '/v1/files/vouched/fetch', { uuid: 'u1', sourcePath: src.path, size: src.size });
    assert.equal(again.status, 200);
    assert.equal(again.body.state, 'ready');
  });

  test('fetch of an unvouched file hashes it exactly once', async () => {
    const src = await sourceFile(disk, 'plain', 8 * MiB + 512);
    const before = await bim.stats();
    const info = await bim.fetchReady('plain', 'u1', src.path, src.size, { expectedChecksum: src.sha512 });
    assert.equal(info.currentChecksum, src.sha512);
    assert.equal((await bim.stats()).hashedBytes - before.hashedBytes, src.size);
    // The manifest was computed in the same pass: serving it reads nothing more.
    const m = await bim.api<{ chunks: unknown[] }>('GET', '/v1/files/plain/chunks?size=4194304');
    assert.equal(m.status, 200);
    assert.equal(m.body.chunks.length, 3);
    assert.equal((await bim.stats()).hashedBytes - before.hashedBytes, src.size);
  });

  test('fetch with a wrong expected checksum fails naming both and leaves the source alone', async () => {
    const src = await sourceFile(disk, 'wrongsum', MiB);
    const wrong = 'f'.repeat(128);
    await bim.api('POST', '/v1/files/wrongsum/fetch', { uuid: 'u1', sourcePath: src.path, size: src.size, expectedChecksum: wrong });
    const f = await bim.waitState('wrongsum', ['failed']);
    assert.ok(f.message.includes(wrong) && f.message.includes(src.sha512), f.message);
    assert.equal(existsSync(join(disk.path, 'backing-images', 'wrongsum-u1', 'backing')), false);
    assert.equal(existsSync(src.path), true);
  });

  test('names, uuids and source paths that could leave the disk are refused with 400 naming the field', async () => {
    const cases: Array<[string, string, unknown, RegExp]> = [
      ['POST', '/v1/files/a..b/sync', {}, /^name "a..b" must not contain ".."/],
      ['GET', '/v1/files/a%2E%2E', undefined, /^name "a.." must not contain/],
      ['GET', '/v1/files/x%2Fy', undefined, /^name "x\/y" must not contain "\/"/],
      ['GET', '/v1/files/x%5Cy', undefined, /^name "x\\\\y" must not contain "\\"/],
      ['GET', '/v1/files/x%00y/download', undefined, /^name .* must not contain NUL/],
      ['POST', '/v1/files/ok/sync', { uuid: '../../etc', size: 1, expectedChecksum: 'a'.repeat(128), sources: ['http://x'] }, /^uuid "..\/..\/etc" must not contain "\/"/],
      ['POST', '/v1/files/ok/sync', { uuid: '', size: 1 }, /^uuid is required/],
      ['DELETE', '/v1/files/ok?uuid=..', undefined, /^uuid ".." must not contain/],
      ['POST', '/v1/files/ok/fetch', { uuid: 'u', sourcePath: '/etc/passwd', size: 1 }, /must be a data source's finished file on this disk/],
      ['POST', '/v1/files/ok/fetch', { uuid: 'u', sourcePath: `${disk.path}/tmp/../tmp/x`, size: 1 }, /normalised path/],
      ['POST', '/v1/files/ok/fetch', { uuid: 'u', sourcePath: join(disk.path, 'backing-images', 'vouched-u1', 'backing'), size: 1 }, /must be a data source's finished file/],
    ];
    for (const [method, path, body, re] of cases) {
      const r = await bim.api<{ code: string; message: string }>(method, path, body);
      assert.equal(r.status, 400, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'InvalidArgument');
      assert.match(r.body.message, re, `${method} ${path}`);
    }
    // fetch() would normalise "/files/.." away; curl can be told to send the path as it is.
    const dots = await run('curl', ['-sS', ...CURL_AUTH, '--path-as-is', `${bim.url}/v1/files/../download`, `${bim.url}/v1/files/%2e%2e/download`]);
    const answers = dots.stdout.replace('}{', '}\n{').split('\n').map((l) => JSON.parse(l) as { code: string; message: string });
    assert.deepEqual(answers.map((a) => a.code), ['InvalidArgument', 'InvalidArgument'], dots.stdout);
    for (const a of answers) assert.equal(a.message, 'name ".." must not contain ".."');
    assert.deepEqual(readdirSync(join(disk.path, 'backing-images')).filter((d) => d.startsWith('ok')), []);
  });

  test('download: Range gives 206 with the exact bytes, 416 outside, gzip round-trips', async () => {
    const src = await sourceFile(disk, 'dl', 3 * MiB);
    // Half of it compressible, so gzip is visibly smaller.
    const data = readFileSync(src.path);
    data.fill(7, 0, 1536 * 1024);
    writeFileSync(src.path, data);
    const sha = await sha512sum(src.path);
    await bim.fetchReady('dl', 'u1', src.path, src.size);
    const url = `${bim.url}/v1/files/dl/download`;

    const part = await fetch(url, { headers: { ...dataPlaneAuth(), range: 'bytes=1000000-1999999' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 1000000-1999999/${src.size}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(1000000, 2000000));

    const suffix = await fetch(url, { headers: { ...dataPlaneAuth(), range: 'bytes=-10' } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), data.subarray(data.length - 10));

    const outside = await fetch(url, { headers: { ...dataPlaneAuth(), range: `bytes=${src.size}-` } });
    assert.equal(outside.status, 416);
    assert.equal(outside.headers.get('content-range'), `bytes */${src.size}`);
    await outside.text();

    const plain = await fetch(url, { headers: { ...dataPlaneAuth(), 'accept-encoding': 'identity' } });
    assert.equal(plain.headers.get('content-length'), String(src.size));
    assert.equal(plain.headers.get('content-encoding'), null);
    assert.deepEqual(Buffer.from(await plain.arrayBuffer()), data);

    const head = await fetch(url, { method: 'HEAD', headers: { ...dataPlaneAuth(), 'accept-encoding': 'identity' } });
    assert.equal(head.headers.get('content-length'), String(src.size));
    assert.equal(head.headers.get('x-checksum-sha512'), sha);

    // fetch asks for gzip by default and inflates it itself.
    const auto = await fetch(url, { headers: dataPlaneAuth() });
    assert.equal(auto.headers.get('content-encoding'), 'gzip');
    assert.deepEqual(Buffer.from(await auto.arrayBuffer()), data);

    // curl is a client nobody here wrote: raw gzip bytes to a file, inflated by zlib.
    const gz = join(root.path, 'dl.gz');
    const c = await run('curl', ['-sS', ...CURL_AUTH, '-H', 'Accept-Encoding: gzip', '-o', gz, '-D', '-', url]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /content-encoding: gzip/i);
    const compressed = readFileSync(gz);
    assert.ok(compressed.length < data.length * 0.75, `gzip ${compressed.length} of ${data.length}`);
    assert.deepEqual(gunzipSync(compressed), data);

    const ranged = await run('curl', ['-sS', ...CURL_AUTH, '-r', '5-14', url]);
    assert.deepEqual(Buffer.from(ranged.stdout, 'latin1'), data.subarray(5, 15));
  });

  test('download of a file that is not ready is refused', async () => {
    const r = await bim.api<{ code: string; message: string }>('GET', '/v1/files/wrongsum/download');
    assert.equal(r.status, 409);
    assert.equal(r.body.code, 'NotReady');
    assert.match(r.body.message, /wrongsum is failed, not ready/);
  });

  test('the send limit refuses a new receiver with 429 while another holds the slot', async () => {
    const one = new BimProcess(makeDisk(root.path, 'limit'), { args: ['--max-concurrent-sends', '1'] });
    await one.start();
    try {
      const src = await sourceFile(one.disk, 'lim', MiB);
      await one.fetchReady('lim', 'u1', src.path, src.size);
      const data = (session: string) => fetch(`${one.url}/v1/files/lim/data?uuid=u1&offset=0&length=4096`, { headers: { ...dataPlaneAuth(), 'x-stratum-sync-session': session } });
      const a = await data('receiver-a');
      assert.equal(a.status, 200);
      await a.arrayBuffer();
      const b = await data('receiver-b');
      assert.equal(b.status, 429);
      assert.match(((await b.json()) as { message: string }).message, /already being sent to 1 receivers .* the limit is 1/);
      const a2 = await data('receiver-a');
      assert.equal(a2.status, 200, 'the same session keeps its slot');
      await a2.arrayBuffer();
      const f = await one.file('lim');
      assert.equal(f.senders.length, 1);
      assert.equal(f.senders[0]?.bytes, 8192);
      assert.equal((await one.stats()).sent.busyRejections, 1);
    } finally {
      await one.stop();
    }
  });
});

describe('two managers', () => {
  const a = new BimProcess(makeDisk(root.path, 'peer-a'));
  const b = new BimProcess(makeDisk(root.path, 'peer-b'), {
    env: { STRATUM_BIM_STARTING_TIMEOUT_MS: '2000', STRATUM_BIM_STALL_TIMEOUT_MS: '3000' },
  });
  let src: Awaited<ReturnType<typeof sourceFile>>;
  before(async () => {
    await Promise.all([a.start(), b.start()]);
    src = await sourceFile(a.disk, 'img', 16 * MiB);
    await a.fetchReady('img', 'u1', src.path, src.size);
  });
  after(() => Promise.all([a.stop(), b.stop()]));

  test('watch pushes a snapshot, then each state of a sync as it happens', async () => {
    const ac = new AbortController();
    const res = await fetch(`${b.url}/v1/watch`, { headers: dataPlaneAuth(), signal: ac.signal });
    assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
    const events: Array<{ type: string; files?: FileInfo[]; file?: FileInfo }> = [];
    const reading = (async () => {
      let buf = '';
      for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(piece).toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          events.push(JSON.parse(buf.slice(0, nl)) as (typeof events)[number]);
          buf = buf.slice(nl + 1);
        }
      }
    })().catch(() => undefined);
    await waitFor('snapshot', async () => events.length > 0);
    assert.equal(events[0]?.type, 'SNAPSHOT');
    // The same feed as server-sent events for browsers.
    const sse = await fetch(`${b.url}/v1/watch`, { headers: { ...dataPlaneAuth(), accept: 'text/event-stream' } });
    assert.equal(sse.headers.get('content-type'), 'text/event-stream');
    const reader = sse.body!.getReader();
    const first = await reader.read();
    assert.match(Buffer.from(first.value!).toString(), /^data: \{"type":"SNAPSHOT","files":\[/);
    await reader.cancel();
    const r = await b.api('POST', '/v1/files/img/sync', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, sources: [a.url] });
    assert.equal(r.status, 202);
    await waitFor('ready event', async () => events.some((e) => e.file?.name === 'img' && e.file.state === 'ready'));
    ac.abort();
    await reading;
    const states = events.filter((e) => e.file?.name === 'img').map((e) => e.file?.state);
    const seen = states.filter((s, i) => s !== states[i - 1]);
    assert.deepEqual(seen, ['pending', 'starting', 'in-progress', 'ready'], JSON.stringify(states));
    assert.equal(await sha512sum(join(b.disk.path, 'backing-images', 'img-u1', 'backing')), src.sha512);
    // Asking again for a ready file changes nothing.
    const again = await b.api<FileInfo>('POST', '/v1/files/img/sync', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, sources: [a.url] });
    assert.equal(again.status, 200);
    assert.equal(again.body.state, 'ready');
  });

  test('a wrong expected checksum fails the sync naming both checksums and leaves no backing file', async () => {
    const wrong = '0'.repeat(128);
    const chk = await sourceFile(a.disk, 'chk', 2 * MiB);
    await a.fetchReady('chk', 'u1', chk.path, chk.size);
    const r = await b.api('POST', '/v1/files/chk/sync', { uuid: 'u1', size: chk.size, expectedChecksum: wrong, sources: [a.url] });
    assert.equal(r.status, 202);
    const f = await waitFor('chk failed', async () => {
      const x = await b.api<FileInfo>('GET', '/v1/files/chk');
      return x.body.state === 'failed' ? x.body : undefined;
    });
    assert.ok(f.message.includes(wrong), f.message);
    assert.ok(f.message.includes(chk.sha512), f.message);
    const dir = join(b.disk.path, 'backing-images', 'chk-u1');
    assert.equal(existsSync(join(dir, 'backing')), false);
    assert.equal(existsSync(join(dir, 'backing.partial')), false);
  });

  test('a peer whose manifest lies about the whole-file checksum: every chunk verifies, the commit still fails', async (t) => {
    // Not one of ours: a peer that promises the expected SHA-512 but holds other bytes. Only the final check sees it.
    const data = randomBytes(8 * MiB);
    const claimed = createHash('sha512').update('something else').digest('hex');
    const chunks = [0, 1].map((i) => ({ offset: i * 4 * MiB, length: 4 * MiB, sha256: createHash('sha256').update(data.subarray(i * 4 * MiB, (i + 1) * 4 * MiB)).digest('hex') }));
    const liar = await fakePeer((off, len) => data.subarray(off, off + len), { name: 'lie', uuid: 'u1', size: data.length, chunkSize: 4 * MiB, sha512: claimed, chunks });
    const liarUrl = liar.url;
    try {
      await startSyncOn(b, 'lie', { uuid: 'u1', size: data.length, expectedChecksum: claimed, sources: [liarUrl] });
      const f = await waitFor('lie failed', async () => {
        const x = await b.file('lie');
        return x.state === 'failed' ? x : x.state === 'ready' ? assert.fail('a file that does not hash to its checksum became ready') : undefined;
      });
      const actual = createHash('sha512').update(data).digest('hex');
      t.diagnostic(f.message);
      assert.ok(f.message.includes(claimed) && f.message.includes(actual), f.message);
      const dir = join(b.disk.path, 'backing-images', 'lie-u1');
      assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('backing')), []);
    } finally {
      await liar.close();
    }
  });

  test('a peer that sends wrong bytes: the whole-file check fails, the wrong chunks are fetched again from the other peer', async (t) => {
    // Not one of ours: a peer with the true manifest that flips the last byte of every range it sends.
    const data = readFileSync(join(a.disk.path, 'backing-images', 'img-u1', 'backing'));
    const manifest = (await a.api('GET', '/v1/files/img/chunks?uuid=u1')).body;
    const flipper = await fakePeer((off, len) => {
      const out = Buffer.from(data.subarray(off, off + len));
      out[len - 1] = (out[len - 1] ?? 0) ^ 0xff;
      return out;
    }, manifest);
    const flipperUrl = flipper.url;
    try {
      // b may hold img from an earlier test: start over without it.
      assert.ok([204, 404].includes((await b.api('DELETE', '/v1/files/img?uuid=u1')).status));
      const before = await b.stats();
      await startSyncOn(b, 'img', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, sources: [flipperUrl, a.url] });
      const f = await b.waitState('img', ['ready']);
      const after = await b.stats();
      t.diagnostic(`chunks rejected ${after.received.chunksRejected - before.received.chunksRejected}, received ${after.received.chunks - before.received.chunks}`);
      assert.equal(f.currentChecksum, src.sha512);
      assert.ok(after.received.chunksRejected > before.received.chunksRejected, 'the wrong chunks were found');
      assert.equal(await sha512sum(join(b.disk.path, 'backing-images', 'img-u1', 'backing')), src.sha512);
    } finally {
      await flipper.close();
    }
  });

  test('with the manifest anchor: a peer flipping bytes is caught chunk by chunk, and no whole-file hash is made', async (t) => {
    // Not one of ours: a peer with the true manifest that flips the last byte of every range it sends.
    const data = readFileSync(join(a.disk.path, 'backing-images', 'img-u1', 'backing'));
    const manifest = (await a.api<ChunkManifest>('GET', '/v1/files/img/chunks?uuid=u1')).body;
    const peer = await fakePeer((off, len) => {
      const out = Buffer.from(data.subarray(off, off + len));
      out[len - 1] = (out[len - 1] ?? 0) ^ 0xff;
      return out;
    }, manifest);
    try {
      assert.ok([204, 404].includes((await b.api('DELETE', '/v1/files/img?uuid=u1')).status));
      const before = await b.stats();
      await startSyncOn(b, 'img', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, expectedManifestDigest: anchorOf(manifest), sources: [peer.url, a.url] });
      const f = await b.waitState('img', ['ready']);
      const after = await b.stats();
      const hashed = after.hashedBytes - before.hashedBytes;
      t.diagnostic(`chunks rejected ${after.received.chunksRejected - before.received.chunksRejected}, bytes received ${after.received.bytes - before.received.bytes}, hashed ${hashed}`);
      assert.equal(f.currentChecksum, src.sha512);
      assert.ok(after.received.chunksRejected > before.received.chunksRejected, 'the wrong chunks were found');
      // Each received chunk is read back once: nothing else (no whole-file pass, no repair pass) is hashed.
      assert.equal(hashed, after.received.bytes - before.received.bytes);
      assert.equal(await sha512sum(join(b.disk.path, 'backing-images', 'img-u1', 'backing')), src.sha512);
      // Nothing of the copy is held open once it is ready (the checking thread's descriptor went with the thread).
      const dir = join(b.disk.path, 'backing-images', 'img-u1');
      const held = readdirSync(`/proc/${b.pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${b.pid}/fd/${fd}`); } catch { return ''; } }).filter((l) => l.startsWith(dir));
      assert.deepEqual(held, []);
    } finally {
      await peer.close();
    }
  });

  test('with the manifest anchor: consecutive chunks travel in one request, each still checked on its own', async () => {
    const data = readFileSync(join(a.disk.path, 'backing-images', 'img-u1', 'backing'));
    const manifest = (await a.api<ChunkManifest>('GET', '/v1/files/img/chunks?uuid=u1')).body;
    assert.equal(manifest.chunks.length, 4);
    // Not one of ours: a peer with the true manifest and bytes, recording what it is asked for.
    const peer = await fakePeer((off, len) => Buffer.from(data.subarray(off, off + len)), manifest);
    try {
      assert.ok([204, 404].includes((await b.api('DELETE', '/v1/files/img?uuid=u1')).status));
      const before = await b.stats();
      await startSyncOn(b, 'img', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, expectedManifestDigest: anchorOf(manifest), sources: [peer.url] });
      const f = await b.waitState('img', ['ready']);
      const after = await b.stats();
      assert.equal(f.currentChecksum, src.sha512);
      assert.deepEqual(peer.ranges(), [{ offset: 0, length: src.size }], 'the four chunks in one request');
      assert.equal(after.received.chunks - before.received.chunks, 4, 'each chunk counted once it checked');
      assert.equal(after.hashedBytes - before.hashedBytes, src.size);
    } finally {
      await peer.close();
    }
  });

  test('with the manifest anchor: a peer whose manifest is another one is never asked for a chunk', async () => {
    // Not one of ours: it claims the expected SHA-512 with a manifest of its own (other) bytes, consistent in itself.
    const other = randomBytes(src.size);
    const own = (await a.api<ChunkManifest>('GET', '/v1/files/img/chunks?uuid=u1')).body;
    const chunks = own.chunks.map((c) => ({ ...c, sha256: createHash('sha256').update(other.subarray(c.offset, c.offset + c.length)).digest('hex') }));
    const peer = await fakePeer((off, len) => other.subarray(off, off + len), { ...own, chunks });
    try {
      assert.ok([204, 404].includes((await b.api('DELETE', '/v1/files/img?uuid=u1')).status));
      await startSyncOn(b, 'img', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, expectedManifestDigest: anchorOf(own), sources: [peer.url, a.url] });
      const f = await b.waitState('img', ['ready']);
      assert.equal(f.currentChecksum, src.sha512);
      assert.equal(peer.rangeRequests(), 0, 'no chunk was asked of it');
      // Alone, it is refused with the reason.
      await startSyncOn(b, 'alone', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, expectedManifestDigest: anchorOf(own), sources: [peer.url] });
      const g = await b.waitState('alone', ['failed']);
      assert.match(g.message, /serves a chunk manifest with digest [0-9a-f]{64}, not the image's [0-9a-f]{64}/);
      assert.equal(peer.rangeRequests(), 0);
    } finally {
      await peer.close();
    }
  });

  test('a manifest anchor that is malformed is refused; one cut with another chunk size leaves the whole-file check to decide', async () => {
    const bad = await b.api<{ code: string; message: string }>('POST', '/v1/files/img2/sync', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, expectedManifestDigest: '../x', sources: [a.url] });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /expectedManifestDigest must be/);
    const own = (await a.api<ChunkManifest>('GET', '/v1/files/img/chunks?uuid=u1')).body;
    assert.ok([204, 404].includes((await b.api('DELETE', '/v1/files/img?uuid=u1')).status));
    const before = await b.stats();
    await startSyncOn(b, 'img', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, expectedManifestDigest: `${1024 * 1024}:${anchorOf(own).split(':')[1]}`, sources: [a.url] });
    assert.equal((await b.waitState('img', ['ready'])).currentChecksum, src.sha512);
    assert.equal((await b.stats()).hashedBytes - before.hashedBytes, src.size, 'the whole file was hashed once');
  });

  test('a sync whose peers never answer fails with a message naming the peer and the reason', async (t) => {
    const t0 = Date.now();
    const dead = `http://127.0.0.1:${await freePort()}`;
    await b.api('POST', '/v1/files/lost/sync', { uuid: 'u1', size: src.size, expectedChecksum: src.sha512, sources: [dead] });
    const f = await waitFor('lost failed', async () => {
      const x = await b.file('lost');
      return x.state === 'failed' ? x : undefined;
    });
    assert.ok(Date.now() - t0 < 8000, 'failed by the 2 s starting deadline');
    t.diagnostic(`${f.message} (after ${Date.now() - t0} ms)`);
    assert.equal(f.message, `sync of lost from ${dead} did not start moving data within 2 s (last error: ${dead} is unreachable: ECONNREFUSED)`);
  });

  test('delete removes the directory with partial data', async () => {
    const r = await b.api('DELETE', '/v1/files/lost?uuid=u1');
    assert.equal(r.status, 204);
    assert.equal(existsSync(join(b.disk.path, 'backing-images', 'lost-u1')), false);
    assert.equal((await b.api('GET', '/v1/files/lost')).status, 404);
  });
});

describe('restart', () => {
  const disk = makeDisk(root.path, 'restart');
  const bim = new BimProcess(disk);
  const files: Array<Awaited<ReturnType<typeof sourceFile>>> = [];
  after(() => bim.stop());

  test('three ready files are re-adopted as ready without being read', async (t) => {
    await bim.start();
    for (const n of ['r1', 'r2', 'r3']) {
      const src = await sourceFile(disk, n, 48 * MiB);
      files.push(src);
      await bim.fetchReady(n, 'u1', src.path, src.size, { sha512: src.sha512, identity: src.identity });
    }
    // An orphan: a directory nobody asked for, and a stray file.
    mkdirSync(join(disk.path, 'backing-images', 'mystery-dir'));
    writeFileSync(join(disk.path, 'backing-images', 'mystery-dir', 'data'), 'x');
    await bim.stop();
    await bim.start();
    const list = (await bim.api<{ files: FileInfo[] }>('GET', '/v1/files')).body.files;
    for (const [i, n] of ['r1', 'r2', 'r3'].entries()) {
      const f = list.find((x) => x.name === n);
      assert.equal(f?.state, 'ready', JSON.stringify(f));
      assert.equal(f?.currentChecksum, files[i]?.sha512);
    }
    const orphan = list.find((x) => x.name === 'mystery-dir');
    assert.equal(orphan?.state, 'unknown');
    assert.match(orphan?.message ?? '', /no metadata/);
    // Two independent witnesses that no file was read: the manager's own counter and the kernel's count of bytes
    // read by the process (rchar), which would be ≥ 48 MiB for a single re-hash.
    const stats: Stats = await bim.stats();
    assert.equal(stats.hashedBytes, 0);
    const rchar = bytesReadBy(bim.pid);
    t.diagnostic(`after restart over 3 × 48 MiB: hashedBytes ${stats.hashedBytes}, process rchar ${rchar} bytes`);
    assert.ok(rchar < 24 * MiB, `the process read ${rchar} bytes`);
  });

  test('a file modified on disk is failed with both checksums, never ready; the others stay ready', async (t) => {
    await bim.stop();
    const path = join(disk.path, 'backing-images', 'r2-u1', 'backing');
    const d = await run('dd', ['if=/dev/urandom', `of=${path}`, 'bs=4096', 'count=1', 'seek=100', 'conv=notrunc']);
    assert.equal(d.code, 0, d.stderr);
    const changed = await sha512sum(path);
    await bim.start();
    const f = await bim.waitState('r2', ['failed']);
    t.diagnostic(f.message);
    assert.ok(f.message.includes(changed) && f.message.includes(files[1]?.sha512 ?? '?'), f.message);
    assert.equal(existsSync(path), false, 'no backing file left to serve');
    assert.equal((await bim.file('r1')).state, 'ready');
    assert.equal((await bim.file('r3')).state, 'ready');
    assert.equal((await bim.stats()).hashedBytes, 48 * MiB, 'only the changed file was read');
    assert.ok(existsSync(join(disk.path, 'backing-images', 'mystery-dir', 'data')), 'the orphan is left alone');
    const del = await bim.api('DELETE', '/v1/files/mystery-dir');
    assert.equal(del.status, 204);
    assert.equal(existsSync(join(disk.path, 'backing-images', 'mystery-dir')), false);
  });
});

test('qemu-img images keep their format and virtual size', { skip: hasTool('qemu-img') ? false : 'qemu-img is not installed' }, async () => {
  const disk = makeDisk(root.path, 'qcow');
  const bim = new BimProcess(disk);
  await bim.start();
  try {
    const path = stagedPath(disk, 'q');
    const q = await run('qemu-img', ['create', '-f', 'qcow2', path, '1G']);
    assert.equal(q.code, 0, q.stderr);
    const size = statSync(path).size;
    const f = await bim.fetchReady('q', 'u1', path, size);
    assert.equal(f.format, 'qcow2');
    assert.equal(f.virtualSize, 1024 * MiB);
    assert.equal(f.currentChecksum, await sha512sum(join(disk.path, 'backing-images', 'q-u1', 'backing')));
  } finally {
    await bim.stop();
  }
});
