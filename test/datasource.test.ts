// End-to-end: `stratum data-source --source-type download` as a real process against a real origin HTTP server
// that drops, stalls, redirects, refuses ranges and requires headers; files checked with the real sha512sum and
// images made with the real qemu-img.

import { dataPlaneAuth } from './helpers/credentials.js';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DataSourceProcess, OriginServer, sha512, testBytes, type OriginOptions } from './helpers/http-fixtures.js';
import { hasTool, run, tempDir, waitFor } from './helpers/processes.js';

const MiB = 1024 * 1024;
const dir = tempDir('datasource');
const cleanups: (() => Promise<void>)[] = [];
let seq = 0;

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  dir.remove();
});

async function origin(o: OriginOptions, files: Record<string, Buffer>): Promise<OriginServer> {
  const s = new OriginServer(o);
  for (const [p, d] of Object.entries(files)) s.files.set(p, d);
  await s.start();
  cleanups.push(() => s.close());
  return s;
}

async function download(url: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<DataSourceProcess & { disk: string; workDir: string }> {
  const n = ++seq;
  const disk = join(dir.path, `disk-${n}`);
  const args = ['--disk', disk, '--name', 'bi', '--uuid', `u${n}`, '--source-type', 'download', '--parameters', `url=${url}`, '--retry-delay', '0.05', '--stall-timeout', '2', ...extra];
  const p = Object.assign(new DataSourceProcess(args, env), { disk, workDir: join(disk, 'tmp', `bi-u${n}`) });
  cleanups.push(() => p.stop());
  return p.start();
}

async function sha512sum(path: string): Promise<string> {
  const r = await run('sha512sum', [path]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split(' ')[0] ?? '';
}

test('a download with the right expected checksum becomes ready-for-transfer, and sha512sum agrees; transfer makes it ready', async () => {
  const data = testBytes(3 * MiB);
  const o = await origin({}, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--checksum', sha512(data)]);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(f.currentChecksum, sha512(data));
  assert.equal(f.size, data.length);
  assert.equal(f.progress, 100);
  assert.equal(f.format, 'raw');
  assert.equal(f.virtualSize, data.length);
  assert.equal(f.filePath, join(ds.workDir, 'backing'));
  assert.equal((f.identity as { size: number }).size, data.length);
  assert.equal(await sha512sum(f.filePath as string), sha512(data));
  const ac = new AbortController();
  const sse = await fetch(`${ds.url}/v1/watch`, { headers: { ...dataPlaneAuth(), accept: 'text/event-stream' }, signal: ac.signal });
  assert.equal(sse.headers.get('content-type'), 'text/event-stream');
  const first = await (sse.body as ReadableStream<Uint8Array>).getReader().read();
  assert.match(new TextDecoder().decode(first.value), /^event: file\ndata: \{.*"state":"ready-for-transfer"/);
  ac.abort();
  const res = await fetch(`${ds.url}/v1/transfer`, { method: 'POST', headers: dataPlaneAuth() });
  assert.equal(res.status, 200);
  const t = (await res.json()) as { state: string; filePath: string | null };
  assert.equal(t.state, 'ready');
  assert.equal(t.filePath, null);
});

test('a wrong expected checksum fails, the message names both checksums, and no file is left', async () => {
  const data = testBytes(MiB);
  const wrong = sha512(Buffer.from('something else'));
  const o = await origin({}, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--checksum', wrong]);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'failed');
  assert.match(f.message, new RegExp(`expected sha512 ${wrong} but the file has ${sha512(data)}`));
  // A wrong file is not worth resuming: its whole work directory (data and checkpoint) is gone.
  assert.equal(existsSync(ds.workDir), false, `${ds.workDir} was left: ${existsSync(ds.workDir) ? readdirSync(ds.workDir).join(', ') : ''}`);
});

test('SIGTERM ends a failed data source at once although a client holds a connection that never sent a request', async () => {
  const data = testBytes(MiB);
  const o = await origin({}, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--checksum', sha512(Buffer.from('not this'))]);
  assert.equal((await ds.waitState(['ready-for-transfer', 'failed'])).state, 'failed');
  // What a fetch aborted right after its connect leaves in the client's pool (the controller's monitor did that).
  const { hostname, port } = new URL(ds.url);
  const silent = connect(Number(port), hostname);
  try {
    await new Promise((r, j) => silent.once('connect', r).once('error', j));
    await ds.stop('SIGTERM');
    assert.match(ds.log, /stopped/, `the process did not finish its graceful close (SIGKILLed after 5 s): ${ds.log}`);
  } finally {
    silent.destroy();
  }
});

test('a connection dropped at 50% resumes with Range/If-Range near 50% and finishes with the right checksum', async () => {
  const data = testBytes(8 * MiB, 2);
  const o = await origin({ dropAt: 4 * MiB }, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--checksum', sha512(data)]);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(o.requests.length, 2);
  const range = /^bytes=(\d+)-$/.exec(o.requests[1]?.headers.range ?? '');
  assert.ok(range, `second request has no Range: ${JSON.stringify(o.requests[1]?.headers)}`);
  const start = Number(range[1]);
  assert.ok(start > 3 * MiB && start <= 4 * MiB, `resumed at ${start}`);
  assert.ok(o.requests[1]?.headers['if-range'], 'If-Range is sent');
  assert.equal(await sha512sum(f.filePath as string), sha512(data));
});

test('against a server without Range support, a dropped download restarts from 0 and finishes', async () => {
  const data = testBytes(6 * MiB, 3);
  const o = await origin({ ranges: false, dropAt: 3 * MiB }, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--checksum', sha512(data)]);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(o.requests.length, 2);
  assert.equal(o.requests[1]?.headers.range, undefined, 'no Range without Accept-Ranges');
  assert.match(ds.log, /restarting the download from byte 0: the server does not accept ranges/);
  assert.equal(await sha512sum(f.filePath as string), sha512(data));
});

test('a server that answers a Range request with 200 makes the download (and its hash) start over from that answer', async () => {
  const data = testBytes(4 * MiB, 4);
  const o = await origin({ ranges: 'ignore', dropAt: 2 * MiB }, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--checksum', sha512(data)]);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.match(o.requests[1]?.headers.range ?? '', /^bytes=\d+-$/);
  assert.match(ds.log, /sent the whole file \(200\) instead of the bytes from/);
});

test('a stalled connection is given up after the stall timeout and resumed', async () => {
  const data = testBytes(4 * MiB, 5);
  const o = await origin({ stallAt: 2 * MiB }, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--stall-timeout', '1', '--checksum', sha512(data)]);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.match(ds.log, /download stalled: no bytes received for 1 s at byte \d+ of 4194304/);
  assert.match(o.requests[1]?.headers.range ?? '', /^bytes=\d+-$/);
});

test('a source that keeps stalling fails with a message saying so', async () => {
  const data = testBytes(2 * MiB, 6);
  const o = await origin({ stallAt: MiB, stallTimes: 100 }, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--stall-timeout', '0.5', '--retries', '1']);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'failed');
  assert.match(f.message, /download stalled: no bytes received for 0\.5 s at byte 1048576 of 2097152 \(gave up after \d+ attempts/);
});

test('redirects are followed; a redirect loop fails naming the loop', async () => {
  const data = testBytes(MiB, 7);
  const o = await origin({ redirects: { '/r1': '/r2', '/r2': '/img.raw', '/a': '/b', '/b': '/a' } }, { '/img.raw': data });
  const ok = await download(`${o.url}/r1`);
  const f = await ok.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(f.currentChecksum, sha512(data));
  const loop = await download(`${o.url}/a`);
  const g = await loop.waitState(['ready-for-transfer', 'failed']);
  assert.equal(g.state, 'failed');
  assert.equal(g.message, `redirect loop at ${o.url}/a: ${o.url}/a → ${o.url}/b → ${o.url}/a`);
});

test('a URL that is not http or https is refused with a clear message', async () => {
  for (const [url, scheme] of [['ftp://example.com/img.raw', 'ftp'], ['file:///etc/hostname', 'file']] as const) {
    const ds = await download(url);
    const f = await ds.waitState(['failed']);
    assert.match(f.message, new RegExp(`the download URL must be http or https, not "${scheme}"`));
  }
});

test('a name or uuid that could leave the tmp directory is refused at start (exit status 1)', async () => {
  const p = new DataSourceProcess(['--disk', join(dir.path, 'disk-bad'), '--name', '../escape', '--uuid', 'u', '--source-type', 'upload']);
  await assert.rejects(p.start(), /exited with 1: error: the backing image name "\.\.\/escape" must not contain/);
  assert.equal(existsSync(join(dir.path, 'escape-u')), false);
});

test("the header file's header reaches the server and appears neither in GET /v1/file nor in the log", async () => {
  const token = 'Bearer s3cret-token-do-not-show';
  const data = testBytes(MiB, 8);
  const o = await origin({ requireHeader: ['Authorization', token] }, { '/img.raw': data });
  const headerFile = join(dir.path, 'headers');
  writeFileSync(headerFile, `# credentials\nAuthorization: ${token}\nX-Extra: 1\n`);
  const ds = await download(`${o.url}/img.raw`, ['--header-file', headerFile]);
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(o.requests[0]?.headers.authorization, token);
  assert.equal(o.requests[0]?.headers['x-extra'], '1');
  assert.ok(!JSON.stringify(f).includes('s3cret'), 'token in GET /v1/file');
  assert.ok(!ds.log.includes('s3cret'), 'token in the log');
  const without = await download(`${o.url}/img.raw`);
  const g = await without.waitState(['ready-for-transfer', 'failed']);
  assert.equal(g.state, 'failed');
  assert.match(g.message, /answered 401 Unauthorized \(check the credentials in the header file\)/);
});

test('progress moves during a slow download: bytes, percent, rate and ETA, pushed on /v1/watch', async () => {
  const data = testBytes(2 * MiB, 9);
  const o = await origin({ bytesPerSecond: 640 * 1024 }, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`);
  const watch = await fetch(`${ds.url}/v1/watch`, { headers: dataPlaneAuth() });
  assert.equal(watch.headers.get('content-type'), 'application/x-ndjson');
  const events: { state: string; processedSize: number; rate: number; etaSeconds: number | null; progress: number }[] = [];
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of watch.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buf.slice(0, nl)) as (typeof events)[number]);
      buf = buf.slice(nl + 1);
    }
    if (events.at(-1)?.state === 'ready-for-transfer' || events.at(-1)?.state === 'failed') break;
  }
  assert.equal(events.at(-1)?.state, 'ready-for-transfer');
  const moving = events.filter((e) => e.state === 'in-progress' && e.rate > 0 && e.etaSeconds !== null && e.progress > 0 && e.progress < 100);
  assert.ok(moving.length >= 3, `in-progress events with rate and ETA: ${JSON.stringify(events.slice(0, 8))}`);
  for (let i = 1; i < events.length; i++) assert.ok((events[i]?.processedSize ?? 0) >= (events[i - 1]?.processedSize ?? 0), 'processedSize never goes back');
  const mid = moving[Math.floor(moving.length / 2)];
  assert.ok(mid && mid.rate > 200_000 && mid.rate < 2_000_000, `rate ${mid?.rate} near 640 KiB/s`);
});

test('a restarted data source resumes its partial download (prefix re-hashed, rest by Range)', async () => {
  const data = testBytes(4 * MiB, 10);
  const o = await origin({ bytesPerSecond: 2 * MiB }, { '/img.raw': data });
  const ds = await download(`${o.url}/img.raw`, ['--checksum', sha512(data)]);
  await waitFor('a third of the bytes', async () => ((await ds.file()).processedSize as number) > 1.3 * MiB);
  await ds.stop();
  await ds.start();
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  const range = /^bytes=(\d+)-$/.exec(o.requests[1]?.headers.range ?? '');
  assert.ok(range && Number(range[1]) > MiB, `restart resumed by Range: ${o.requests[1]?.headers.range}`);
  assert.match(ds.log, /resuming at byte \d+/);
  assert.equal(await sha512sum(f.filePath as string), sha512(data));
});

test('http_proxy is used for http URLs and no_proxy bypasses it', async () => {
  const data = testBytes(MiB, 11);
  const o = await origin({}, { '/img.raw': data });
  const seen: string[] = [];
  const proxy: Server = createServer((req, res) => {
    seen.push(req.url ?? '');
    const up = httpRequest(req.url ?? '', { method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => proxy.close(() => r())));
  const addr = proxy.address();
  const proxyUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const via = await download(`${o.url}/img.raw`, [], { http_proxy: proxyUrl });
  assert.equal((await via.waitState(['ready-for-transfer', 'failed'])).state, 'ready-for-transfer');
  assert.deepEqual(seen, [`${o.url}/img.raw`], 'absolute-form request through the proxy');
  const direct = await download(`${o.url}/img.raw`, [], { http_proxy: proxyUrl, no_proxy: 'localhost,127.0.0.1' });
  assert.equal((await direct.waitState(['ready-for-transfer', 'failed'])).state, 'ready-for-transfer');
  assert.equal(seen.length, 1, 'no_proxy bypassed the proxy');
});

const noQemu = hasTool('qemu-img') ? false : 'qemu-img is not installed';

test('qcow2 images: one with a backing file or cut short is failed with the reason; a self-contained one is accepted with its virtual size', { skip: noQemu }, async () => {
  const base = join(dir.path, 'base.qcow2');
  const child = join(dir.path, 'child.qcow2');
  assert.equal((await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M'])).code, 0);
  assert.equal((await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', base])).code, 0);
  assert.equal((await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', child])).code, 0);
  const { readFileSync } = await import('node:fs');
  const whole = readFileSync(base);
  // The header and tables are all there; the data clusters they map are not (a download or upload cut short).
  const cut = whole.subarray(0, whole.length - 512 * 1024);
  const o = await origin({}, { '/base.qcow2': whole, '/child.qcow2': readFileSync(child), '/cut.qcow2': cut });
  const bad = await download(`${o.url}/child.qcow2`);
  const f = await bad.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'failed');
  assert.match(f.message, /not a usable backing image: .*backing file/);
  assert.equal(existsSync(join(bad.workDir, 'backing')) || existsSync(join(bad.workDir, 'backing.part')), false, 'refused file removed');
  const short = await download(`${o.url}/cut.qcow2`);
  const s = await short.waitState(['ready-for-transfer', 'failed']);
  assert.equal(s.state, 'failed', 'a qcow2 whose clusters lie past its end is never offered');
  assert.match(s.message, /not a usable backing image: qcow2 .*L2 entry at offset \d+: host cluster \d+ .*runs past the end of the file \(\d+ bytes\)/);
  assert.equal(existsSync(join(short.workDir, 'backing')) || existsSync(join(short.workDir, 'backing.part')), false, 'refused file removed');
  const good = await download(`${o.url}/base.qcow2`);
  const g = await good.waitState(['ready-for-transfer', 'failed']);
  assert.equal(g.state, 'ready-for-transfer', g.message);
  assert.equal(g.format, 'qcow2');
  assert.equal(g.virtualSize, 16 * MiB);
});

const noOpenssl = hasTool('openssl') ? false : 'openssl is not installed';

test('https: a private CA is trusted through NODE_EXTRA_CA_CERTS, refused clearly without it, and https_proxy tunnels with CONNECT', { skip: noOpenssl }, async () => {
  const key = join(dir.path, 'tls.key');
  const cert = join(dir.path, 'tls.crt');
  const made = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
  assert.equal(made.code, 0, made.stderr);
  const { readFileSync } = await import('node:fs');
  const { createServer: createHttpsServer } = await import('node:https');
  const { connect } = await import('node:net');
  const data = testBytes(2 * MiB, 12);
  const tls = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    res.writeHead(200, { 'content-length': String(data.length), 'accept-ranges': 'bytes' }).end(data);
  });
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => { tls.closeAllConnections(); tls.close(() => r()); }));
  const tlsAddr = tls.address();
  const url = `https://127.0.0.1:${typeof tlsAddr === 'object' && tlsAddr ? tlsAddr.port : 0}/img.raw`;

  const untrusted = await download(url);
  const u = await untrusted.waitState(['ready-for-transfer', 'failed']);
  assert.equal(u.state, 'failed');
  assert.match(u.message, /TLS verification of 127\.0\.0\.1:\d+ failed \(\w+\); for a private CA set NODE_EXTRA_CA_CERTS/);

  const tunnels: string[] = [];
  const sockets = new Set<{ destroy(): void }>();
  const proxy: Server = createServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req, client) => {
    tunnels.push(req.url ?? '');
    sockets.add(client);
    const [host, port] = (req.url ?? '').split(':');
    const up = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.pipe(client);
      client.pipe(up);
    });
    sockets.add(up);
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  // Tunnelled sockets are no longer the HTTP server's to close.
  cleanups.push(() => new Promise((r) => { for (const s of sockets) s.destroy(); proxy.close(() => r()); }));
  const pAddr = proxy.address();
  const proxyUrl = `http://127.0.0.1:${typeof pAddr === 'object' && pAddr ? pAddr.port : 0}`;
  const trusted = await download(url, ['--checksum', sha512(data)], { NODE_EXTRA_CA_CERTS: cert, https_proxy: proxyUrl });
  const t = await trusted.waitState(['ready-for-transfer', 'failed']);
  assert.equal(t.state, 'ready-for-transfer', t.message);
  assert.deepEqual(tunnels, [new URL(url).host], 'one CONNECT tunnel to the origin');
});
