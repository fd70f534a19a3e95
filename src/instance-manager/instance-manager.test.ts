// Tests of the instance manager with real listeners, real files and real NBD clients (nbdinfo, nbdcopy): replicas
// and engines hosted in-process, the shared replica and NBD listeners, the locks that keep two openers apart, a
// failure inside one instance staying inside it, and a corrupt backing image failing reads, not replicas.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, existsSync, readdirSync, readlinkSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { blockdevUnavailable } from '../frontend/blockdev/index.js';
import { NbdClient } from '../frontend/nbd/index.js';
import { startInstanceManager, type Instance, type RunningInstanceManager } from './index.js';

const run = promisify(execFile);
const SIZE = 8 * 1024 * 1024;
const noBlockdev = await blockdevUnavailable();
const noNbdTools = await run('nbdinfo', ['--version']).then(() => false, () => 'nbdinfo/nbdcopy (libnbd-bin) not installed');

let root: string;
let disk: string;
let lockDir: string;
let im: RunningInstanceManager;
const events: Record<string, unknown>[] = [];
const watchAbort = new AbortController();
let pattern: Buffer;

async function api(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const text = await res.text();
  return { status: res.status, json: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : { text } };
}
const call = (method: string, path: string, body?: unknown) => api(im.url, method, path, body);

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const inState = (name: string, state: string, base = im.url) =>
  until(`${name} ${state}`, async () => {
    const r = await api(base, 'GET', `/v1/instances/${name}`);
    return (r.json as unknown as Instance).state === state ? (r.json as unknown as Instance) : undefined;
  });

const backingPath = () => join(disk, 'backing-images', 'bi-1-u1', 'backing');
const replicaBody = (name: string, size = SIZE) => ({
  name,
  type: 'replica',
  replica: { dir: join(disk, 'replicas', name), size, backing: { name: 'bi-1', uuid: 'u-1', path: backingPath() } },
});
const engineBody = (name: string, volume: string, replicas: { name: string; address: string }[]) => ({ name, type: 'engine', engine: { volume, size: SIZE, replicas, frontend: 'nbd' } });

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'stratum-im-'));
  disk = join(root, 'disk-1');
  lockDir = join(root, 'locks');
  await mkdir(join(disk, 'backing-images', 'bi-1-u1'), { recursive: true });
  await writeFile(join(disk, 'longhorn-disk.cfg'), JSON.stringify({ diskName: 'disk-1', diskUUID: 'd1' }));
  pattern = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4096) pattern.write(`block ${i / 4096} of the backing image`, i);
  await writeFile(backingPath(), pattern);
  im = await startInstanceManager({ node: 'node-1', name: 'im-a', host: '127.0.0.1', port: 0, dataRoots: [root], lockDir, heartbeatMs: 200, log: () => {} });
  const res = await fetch(`${im.url}/v1/instances?watch=true`, { signal: watchAbort.signal });
  void (async () => {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
          buf = buf.slice(nl + 1);
        }
      }
    } catch {
      // aborted at the end
    }
  })();
});

after(async () => {
  watchAbort.abort();
  await im.close();
  await rm(root, { recursive: true, force: true });
});

test('version names the one replica listener and the one NBD listener', async () => {
  const v = (await call('GET', '/v1/version')).json;
  assert.deepEqual(v, { apiVersion: 2, apiMinVersion: 2, node: 'node-1', listeners: { replica: im.replicaAddress, nbd: im.nbdAddress } });
  assert.equal((await call('GET', '/healthz')).status, 200);
});

test('a replica and an engine over it, in this process, serve the backing image through NBD; watch, log, delete with cleanup', { skip: noNbdTools }, async () => {
  const created = await call('POST', '/v1/instances', replicaBody('r1'));
  assert.equal(created.status, 201);
  const r1 = await inState('r1', 'running');
  assert.equal(r1.address, im.replicaAddress, 'every replica is served on the node listener');
  assert.equal(r1.pid, process.pid, 'hosted in the instance manager, no process of its own');

  assert.equal((await call('POST', '/v1/instances', replicaBody('r1'))).status, 200, 'idempotent create');
  const other = await call('POST', '/v1/instances', replicaBody('r1', SIZE * 2));
  assert.equal(other.status, 409);

  assert.equal((await call('POST', '/v1/instances', engineBody('e1', 'vol-1', [{ name: 'r1', address: r1.address! }]))).status, 201);
  const e1 = await inState('e1', 'running');
  assert.equal(e1.nbd, `nbd://${im.nbdAddress}/vol-1`);
  const status = (await call('GET', '/v1/engines/e1')).json as { replicas: { name: string; mode: string; address: string }[] };
  assert.deepEqual(status.replicas.map((r) => [r.name, r.mode]), [['r1', 'RW']]);

  const info = JSON.parse((await run('nbdinfo', ['--json', e1.nbd!])).stdout) as { exports: { 'export-size': number }[] };
  assert.equal(info.exports[0]?.['export-size'], SIZE);
  const copy = join(root, 'copy.raw');
  await run('nbdcopy', [e1.nbd!, copy]);
  assert.ok((await readFile(copy)).equals(pattern), 'nbdcopy read what the backing file holds');
  assert.match(String((await call('GET', '/v1/instances/r1/log?lines=50')).json.text), /serving .* as "r1"/);

  assert.equal((await call('DELETE', '/v1/instances/e1')).json.state, 'stopped');
  assert.ok(events.some((ev) => ev.type === 'ADDED' && (ev.instance as Instance).name === 'e1'));
  // Heartbeats come every 200 ms; the steps above may all finish sooner than that.
  for (let i = 0; i < 50 && !events.some((ev) => ev.type === 'HEARTBEAT'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(events.some((ev) => ev.type === 'HEARTBEAT'), 'heartbeat lines on the watch stream');
  const gone = await call('DELETE', '/v1/instances/r1?cleanup=true');
  assert.equal(gone.json.state, 'stopped');
  assert.ok(!existsSync(join(disk, 'replicas', 'r1')), 'cleanup removed the replica directory');
  assert.ok(existsSync(backingPath()), 'the backing file stays');
});

test('a second instance manager of the node can neither run an instance of the same name nor open the same replica', async () => {
  const b = await startInstanceManager({ node: 'node-1', name: 'im-b', host: '127.0.0.1', port: 0, dataRoots: [root], lockDir, log: () => {} });
  try {
    await call('POST', '/v1/instances', replicaBody('r-dup'));
    await inState('r-dup', 'running');
    assert.equal((await api(b.url, 'POST', '/v1/instances', replicaBody('r-dup'))).status, 201);
    const dup = await inState('r-dup', 'error', b.url);
    assert.match(dup.errorMsg ?? '', /an instance of that name runs on this node already, in pid \d+ \(instance manager im-a .*replica r-dup\)/);
    // Another name over the same directory: the directory lock refuses it and names the holder.
    const same = { ...replicaBody('r-other'), replica: { ...replicaBody('r-dup').replica } };
    assert.equal((await api(b.url, 'POST', '/v1/instances', same)).status, 201);
    const locked = await inState('r-other', 'error', b.url);
    assert.match(locked.errorMsg ?? '', /it is open by pid \d+ \(instance manager im-a .*replica r-dup\)/);
    const busy = await api(b.url, 'DELETE', `/v1/replica-data?dir=${encodeURIComponent(join(disk, 'replicas', 'r-dup'))}`);
    assert.equal(busy.status, 409);
    assert.match(String(busy.json.message), /open by pid/);
  } finally {
    await b.close();
  }
  await call('DELETE', '/v1/instances/r-dup?cleanup=true');
});

test('an engine reaches a replica of another instance manager by name on its listener; a replica failure stays inside it', { skip: noNbdTools }, async () => {
  const b = await startInstanceManager({ node: 'node-2', name: 'im-c', host: '127.0.0.1', port: 0, dataRoots: [root], lockDir: join(root, 'locks-2'), log: () => {} });
  try {
    for (const n of ['ra', 'rb', 'rc']) await call('POST', '/v1/instances', replicaBody(n));
    for (const n of ['ra', 'rb', 'rc']) await inState(n, 'running');
    const addr = im.replicaAddress;
    await api(b.url, 'POST', '/v1/instances', engineBody('ev1', 'v1', [{ name: 'ra', address: addr }, { name: 'rb', address: addr }]));
    await api(b.url, 'POST', '/v1/instances', engineBody('ev2', 'v2', [{ name: 'rc', address: addr }]));
    await inState('ev1', 'running', b.url);
    await inState('ev2', 'running', b.url);
    const [host, port] = b.nbdAddress.split(':');
    const c1 = await NbdClient.connect({ host: host!, port: Number(port) }, { exportName: 'v1' });
    const c2 = await NbdClient.connect({ host: host!, port: Number(port) }, { exportName: 'v2' });
    try {
      await c1.write(0, Buffer.alloc(4096, 1));
      await c2.write(0, Buffer.alloc(4096, 2));
      // Inject a disk fault into replica "ra": its head file's descriptor is closed under it, so its next write
      // fails with EBADF, as a failing disk would fail it.
      const head = readdirSync('/proc/self/fd').find((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === join(disk, 'replicas', 'ra', 'head.img');
        } catch {
          return false;
        }
      });
      assert.ok(head, 'found the head file of ra');
      closeSync(Number(head));
      await c1.write(8192, Buffer.alloc(4096, 3));
      const ra = await inState('ra', 'error');
      assert.match(ra.errorMsg ?? '', /replica ra: storage failed in .*EBADF/);
      const modes = await until('ra ERR in the engine', async () => {
        const s = (await api(b.url, 'GET', '/v1/engines/ev1')).json as { replicas: { name: string; mode: string }[] };
        const m = Object.fromEntries(s.replicas.map((r) => [r.name, r.mode]));
        return m['ra'] === 'ERR' ? m : undefined;
      });
      assert.equal(modes['rb'], 'RW');
      // Every other instance keeps serving.
      assert.deepEqual(Buffer.from(await c1.read(8192, 4096)), Buffer.alloc(4096, 3));
      assert.deepEqual(Buffer.from(await c2.read(0, 4096)), Buffer.alloc(4096, 2));
      assert.equal((await call('GET', '/v1/instances/rb')).json.state, 'running');
      assert.equal((await call('GET', '/v1/instances/rc')).json.state, 'running');
    } finally {
      await c1.disconnect();
      await c2.disconnect();
    }
  } finally {
    await b.close();
  }
  for (const n of ['ra', 'rb', 'rc']) await call('DELETE', `/v1/instances/${n}?cleanup=true`);
});

const noQemu = await run('qemu-img', ['--version']).then(() => false, () => 'qemu-img (qemu-utils) not installed');

test('a backing image whose clusters lie past its end fails those reads with EIO; its replicas keep running and RW', { skip: noNbdTools || noQemu }, async () => {
  // Made before data sources verified images (or damaged alike on every disk): the tables say the first MiB is
  // allocated, the file ends before it.
  const dir = join(disk, 'backing-images', 'bi-2-u2');
  await mkdir(dir, { recursive: true });
  const cut = join(dir, 'backing');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', cut, String(SIZE)]);
  await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', cut]);
  // Header, L1, refcounts and the L2 table fill the first five 64 KiB clusters; the data starts at the sixth.
  await writeFile(cut, (await readFile(cut)).subarray(0, 5 * 65536 + 4096));
  const body = (name: string) => ({ name, type: 'replica', replica: { dir: join(disk, 'replicas', name), size: SIZE, backing: { name: 'bi-2', uuid: 'u-2', path: cut } } });
  for (const n of ['rx', 'ry']) await call('POST', '/v1/instances', body(n));
  for (const n of ['rx', 'ry']) await inState(n, 'running');
  await call('POST', '/v1/instances', engineBody('ev3', 'v3', ['rx', 'ry'].map((name) => ({ name, address: im.replicaAddress }))));
  await inState('ev3', 'running');
  const [host, port] = im.nbdAddress.split(':');
  const c = await NbdClient.connect({ host: host!, port: Number(port) }, { exportName: 'v3' });
  try {
    await assert.rejects(c.read(0, 4096), /EIO|Input\/output|error 5/i);
    // Past the allocated MiB the image is all holes: readable, zeros.
    assert.deepEqual(Buffer.from(await c.read(2 * 1024 * 1024, 4096)), Buffer.alloc(4096));
    // A whole-block write needs no backing bytes: it lands, and reads back.
    await c.write(0, Buffer.alloc(4096, 7));
    assert.deepEqual(Buffer.from(await c.read(0, 4096)), Buffer.alloc(4096, 7));
  } finally {
    await c.disconnect();
  }
  const s = (await call('GET', '/v1/engines/ev3')).json as { replicas: { name: string; mode: string }[] };
  assert.deepEqual(s.replicas.map((r) => `${r.name}:${r.mode}`).sort(), ['rx:RW', 'ry:RW']);
  for (const n of ['rx', 'ry']) assert.equal((await call('GET', `/v1/instances/${n}`)).json.state, 'running');
  await call('DELETE', '/v1/instances/ev3');
  for (const n of ['rx', 'ry']) await call('DELETE', `/v1/instances/${n}?cleanup=true`);
});

test('a replica that cannot open is an error that says why', async () => {
  await mkdir(join(disk, 'replicas'), { recursive: true });
  await writeFile(join(disk, 'replicas', 'r-bad'), 'a file, not a directory');
  const r = await call('POST', '/v1/instances', { name: 'r-bad', type: 'replica', replica: { dir: join(disk, 'replicas', 'r-bad'), size: SIZE } });
  assert.equal(r.status, 201);
  const bad = await inState('r-bad', 'error');
  assert.match(bad.errorMsg ?? '', /^replica r-bad could not start: .*(EEXIST|ENOTDIR)/);
  assert.equal((await call('DELETE', '/v1/instances/r-bad')).status, 200);
});

test('bad requests are refused with 400 and say why', async () => {
  const cases: [unknown, RegExp][] = [
    [{ name: 'Bad/Name', type: 'replica', replica: { dir: join(disk, 'replicas', 'x'), size: 1 } }, /name must be a DNS-1123 name/],
    [{ name: 'a..b', type: 'replica', replica: { dir: join(disk, 'replicas', 'x'), size: 1 } }, /name must be/],
    [{ name: 'r2', type: 'replica', replica: { dir: 'relative/dir', size: 1 } }, /replica\.dir must be an absolute path/],
    [{ name: 'r2', type: 'replica', replica: { dir: `${root}/../elsewhere`, size: 1 } }, /must be normalised/],
    [{ name: 'r2', type: 'replica', replica: { dir: '/var/lib/other', size: 1 } }, /not inside the data roots/],
    [{ name: 'r2', type: 'replica', replica: { dir: join(root, 'x'), size: 1 } }, /must be <disk>\/replicas\/<name>/],
    [{ name: 'r2', type: 'replica', replica: { dir: join(root, 'nodisk', 'replicas', 'x'), size: 1 } }, /not on a registered disk/],
    [{ name: 'r2', type: 'replica', replica: { dir: join(disk, 'replicas', 'x'), size: 1, backing: { name: 'b', uuid: 'u', path: join(disk, 'replicas', 'y', 'head.img') } } }, /must be a backing-image file/],
    [{ name: 'r2', type: 'replica', replica: { dir: join(disk, 'replicas', 'x'), size: -5 } }, /replica\.size must be a positive integer/],
    [{ name: 'r2', type: 'vm' }, /type must be "replica" or "engine"/],
    [{ name: 'e2', type: 'engine', engine: { volume: 'v', size: 1, replicas: [{ name: 'r', address: 'nowhere' }] } }, /address must be "host:port"/],
    [{ name: 'e2', type: 'engine', engine: { volume: 'v', size: 1, replicas: [], frontend: 'iscsi' } }, /frontend must be/],
    ['not an object', /must be a JSON object/],
  ];
  for (const [body, re] of cases) {
    const r = await call('POST', '/v1/instances', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.code, 'InvalidArgument');
    assert.match(String(r.json.message), re);
  }
  assert.equal((await call('DELETE', '/v1/instances/nope')).status, 404);
  assert.equal((await call('GET', '/v1/engines/nope')).status, 404);
  assert.equal((await call('GET', '/v1/instances/nope/log')).status, 404);
});

test('an engine with frontend blockdev reports its device; DELETE removes it', { skip: noBlockdev ?? false }, async () => {
  assert.equal((await call('POST', '/v1/instances', replicaBody('r3'))).status, 201);
  const r3 = await inState('r3', 'running');
  const deviceDir = join(root, 'dev');
  const body = { name: 'e3', type: 'engine', engine: { volume: 'vol-3', size: SIZE, replicas: [{ name: 'r3', address: r3.address }], frontend: 'blockdev', deviceDir } };
  assert.equal((await call('POST', '/v1/instances', body)).status, 201);
  const e3 = await inState('e3', 'running');
  assert.equal(e3.device, join(deviceDir, 'vol-3'));
  assert.ok((await stat(e3.device!)).isBlockDevice());
  assert.equal((await call('DELETE', '/v1/instances/e3')).json.state, 'stopped');
  await assert.rejects(lstat(e3.device!), { code: 'ENOENT' });
  assert.equal((await call('DELETE', '/v1/instances/r3?cleanup=true')).status, 200);
});

test('a replica started again with a larger size grows and says so; with a smaller one it is an error that says why', async () => {
  assert.equal((await call('POST', '/v1/instances', replicaBody('r-grow'))).status, 201);
  await inState('r-grow', 'running');
  assert.equal((await call('DELETE', '/v1/instances/r-grow')).status, 200);
  assert.equal((await call('POST', '/v1/instances', replicaBody('r-grow', 2 * SIZE))).status, 201);
  await inState('r-grow', 'running');
  const log = String((await call('GET', '/v1/instances/r-grow/log?lines=50')).json.text);
  assert.match(log, new RegExp(`grew from ${SIZE} B to ${2 * SIZE} B \\(volume expansion\\)`));
  assert.match(log, new RegExp(`serving .* as "r-grow" .*: ${2 * SIZE} B in`));
  assert.equal((await call('DELETE', '/v1/instances/r-grow')).status, 200);
  assert.equal((await call('POST', '/v1/instances', replicaBody('r-grow'))).status, 201);
  const bad = await inState('r-grow', 'error');
  assert.match(bad.errorMsg ?? '', new RegExp(`replica r-grow could not start: .*it holds ${2 * SIZE} bytes, and a replica never shrinks`));
  assert.equal((await call('DELETE', '/v1/instances/r-grow')).status, 200);
});

test('the data directory of a replica that no longer runs is removed on request, and only such a directory', async () => {
  const dir = join(disk, 'replicas', 'r-data');
  assert.equal((await call('POST', '/v1/instances', replicaBody('r-data'))).status, 201);
  await inState('r-data', 'running');
  const q = (d: string) => `/v1/replica-data?dir=${encodeURIComponent(d)}`;
  const busy = await call('DELETE', q(dir));
  assert.equal(busy.status, 409, JSON.stringify(busy.json));
  assert.match(String(busy.json['message']), /replica "r-data" is running/);
  assert.equal((await call('DELETE', '/v1/instances/r-data')).status, 200);
  assert.deepEqual((await call('DELETE', q(dir))).json, { dir, removed: true });
  await assert.rejects(stat(dir), /ENOENT/);
  assert.deepEqual((await call('DELETE', q(dir))).json, { dir, removed: false });
  await mkdir(join(disk, 'replicas', 'other'), { recursive: true });
  await writeFile(join(disk, 'replicas', 'other', 'precious'), 'x');
  for (const bad of [root, join(disk, 'replicas', 'other'), `${disk}/replicas/../replicas/r-data`, '/tmp/replicas/x', 'relative/replicas/x']) {
    const r = await call('DELETE', q(bad));
    assert.equal(r.status, 400, `${bad}: ${JSON.stringify(r.json)}`);
  }
  assert.equal(await readFile(join(disk, 'replicas', 'other', 'precious'), 'utf8'), 'x');
});

test('PUT /v1/data-roots: a disk added after the start takes replicas; bad lists are refused whole, naming the entry', async () => {
  const other = await mkdtemp(join(tmpdir(), 'stratum-im-disk2-'));
  try {
    const body = { name: 'r-late', type: 'replica', replica: { dir: join(other, 'replicas', 'r-late'), size: SIZE } };
    const refused = await call('POST', '/v1/instances', body);
    assert.equal(refused.status, 400);
    assert.match(String(refused.json.message), /not inside the data roots of this instance manager/);

    const relative = await call('PUT', '/v1/data-roots', { dataRoots: [disk, 'disks/two'] });
    assert.equal(relative.status, 400);
    assert.match(String(relative.json.message), /dataRoots\[1\] must be an absolute path/);
    const unregistered = await call('PUT', '/v1/data-roots', { dataRoots: [disk, other] });
    assert.equal(unregistered.status, 400);
    assert.match(String(unregistered.json.message), /dataRoots\[1\] ".*" is not a registered disk of this node: .*longhorn-disk\.cfg/);
    assert.equal((await call('PUT', '/v1/data-roots', { dataRoots: 'x' })).status, 400);
    assert.deepEqual((await call('GET', '/v1/data-roots')).json, { dataRoots: [root] }, 'a refused list changes nothing');

    await writeFile(join(other, 'longhorn-disk.cfg'), JSON.stringify({ diskName: 'disk-2', diskUUID: 'd2' }));
    const put = await call('PUT', '/v1/data-roots', { dataRoots: [disk, other, disk] });
    assert.equal(put.status, 200);
    assert.deepEqual(put.json, { dataRoots: [disk, other] });
    assert.equal((await call('POST', '/v1/instances', body)).status, 201);
    await inState('r-late', 'running');

    // The disk leaves the list: what runs there keeps running, nothing new starts there.
    assert.equal((await call('PUT', '/v1/data-roots', { dataRoots: [disk] })).status, 200);
    assert.equal((await call('GET', '/v1/instances/r-late')).json.state, 'running');
    const again = await call('POST', '/v1/instances', { ...body, name: 'r-later', replica: { ...body.replica, dir: join(other, 'replicas', 'r-later') } });
    assert.equal(again.status, 400);
    assert.equal((await call('PUT', '/v1/data-roots', { dataRoots: [disk, other] })).status, 200);
    assert.equal((await call('DELETE', '/v1/instances/r-late?cleanup=true')).json.state, 'stopped');
    assert.equal(existsSync(join(other, 'replicas', 'r-late')), false);
  } finally {
    await call('PUT', '/v1/data-roots', { dataRoots: [disk] });
    await rm(other, { recursive: true, force: true });
  }
});

test('a replica on a disk filled while it was stopped opens again from its open reserve; without one its error says the disk is full', { skip: process.getuid?.() === 0 ? false : 'needs root (tmpfs)' }, async () => {
  const small = await mkdtemp(join(tmpdir(), 'stratum-im-full-'));
  await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]);
  const dir = join(small, 'replicas', 'r-full');
  try {
    await writeFile(join(small, 'longhorn-disk.cfg'), JSON.stringify({ diskName: 'small', diskUUID: 'd3' }));
    assert.equal((await call('PUT', '/v1/data-roots', { dataRoots: [disk, small] })).status, 200);
    const body = { name: 'r-full', type: 'replica', replica: { dir, size: SIZE } };
    assert.equal((await call('POST', '/v1/instances', body)).status, 201);
    await inState('r-full', 'running');
    // 8 MiB in 4 KiB blocks: a 512-byte bitmap and 64 KiB of slack, rounded up to 4 KiB.
    assert.equal((await stat(join(dir, 'space.reserve'))).blocks * 512, 69632, 'the reserve is allocated');
    assert.equal((await call('DELETE', '/v1/instances/r-full')).json.state, 'stopped');

    // Others fill the disk while the replica is stopped: opening it again has to write its block map.
    await run('sh', ['-c', `head -c 4M /dev/zero > ${join(small, 'filler')} || true`]);
    assert.equal((await call('POST', '/v1/instances', body)).status, 201);
    await inState('r-full', 'running');
    assert.equal((await stat(join(dir, 'space.reserve')).catch(() => undefined))?.size ?? 0, 0, 'the reserve was spent, and the disk has no room for a new one');
    assert.equal((await call('DELETE', '/v1/instances/r-full')).json.state, 'stopped');

    // No reserve left, and what the open gave back filled too: the error says the disk is full and what to do.
    await run('sh', ['-c', `head -c 1M /dev/zero > ${join(small, 'filler-2')} || true`]);
    assert.equal((await call('POST', '/v1/instances', body)).status, 201);
    const full = await inState('r-full', 'error');
    assert.match(full.errorMsg ?? '', new RegExp(`^replica r-full could not start: .*ENOSPC.*; the disk holding ${dir} is full: free space on it`));
    assert.equal((await call('DELETE', '/v1/instances/r-full')).status, 200);
  } finally {
    await call('PUT', '/v1/data-roots', { dataRoots: [disk] });
    await run('umount', [small]).catch(() => undefined);
    await rm(small, { recursive: true, force: true });
  }
});
