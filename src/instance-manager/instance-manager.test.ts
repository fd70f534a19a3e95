// End-to-end tests of the instance manager: a real manager (in this process) spawning real `stratum replica` and
// `stratum engine` children from the compiled CLI, read through real NBD clients (nbdinfo, nbdcopy).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { blockdevUnavailable } from '../frontend/blockdev/index.js';
import { startInstanceManager, type Instance, type RunningInstanceManager } from './index.js';

const run = promisify(execFile);
const SIZE = 8 * 1024 * 1024;
const noBlockdev = await blockdevUnavailable();

let root: string;
let im: RunningInstanceManager;
const events: Record<string, unknown>[] = [];
const watchAbort = new AbortController();
let pattern: Buffer;

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${im.url}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const text = await res.text();
  return { status: res.status, json: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : { text } };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const inState = (name: string, state: string) =>
  until(`${name} ${state}`, async () => {
    const r = await api('GET', `/v1/instances/${name}`);
    return (r.json as unknown as Instance).state === state ? (r.json as unknown as Instance) : undefined;
  });

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'stratum-im-'));
  pattern = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4096) pattern.write(`block ${i / 4096} of the backing image`, i);
  await writeFile(join(root, 'backing.raw'), pattern);
  im = await startInstanceManager({ node: 'node-1', host: '127.0.0.1', port: 0, dataRoots: [root], heartbeatMs: 200, stopGraceMs: 3000, log: () => {} });
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

const replicaBody = (size = SIZE) => ({
  name: 'r1',
  type: 'replica',
  replica: { dir: join(root, 'replicas', 'r1'), size, backing: { name: 'bi-1', uuid: 'u-1', path: join(root, 'backing.raw') } },
});

test('version and health', async () => {
  assert.deepEqual((await api('GET', '/v1/version')).json, { apiVersion: 1, apiMinVersion: 1, node: 'node-1' });
  assert.equal((await api('GET', '/healthz')).status, 200);
});

test('a replica and an engine over it serve the backing image through NBD; errors, watch, delete with cleanup', async () => {
  const created = await api('POST', '/v1/instances', replicaBody());
  assert.equal(created.status, 201);
  assert.equal(created.json.state, 'starting');
  const r1 = await inState('r1', 'running');
  assert.match(r1.address ?? '', /^127\.0\.0\.1:\d+$/);
  assert.ok(r1.pid > 0);

  // Idempotent create, and a conflicting one.
  const again = await api('POST', '/v1/instances', replicaBody());
  assert.equal(again.status, 200);
  assert.equal(again.json.pid, r1.pid);
  const other = await api('POST', '/v1/instances', replicaBody(SIZE * 2));
  assert.equal(other.status, 409);
  assert.equal(other.json.code, 'Conflict');

  const e = await api('POST', '/v1/instances', {
    name: 'e1',
    type: 'engine',
    engine: { volume: 'vol-1', size: SIZE, replicas: [{ name: 'r1', address: r1.address }], frontend: 'nbd' },
  });
  assert.equal(e.status, 201);
  const e1 = await inState('e1', 'running');
  assert.match(e1.nbd ?? '', /^nbd:\/\/127\.0\.0\.1:\d+\/vol-1$/);
  assert.match(e1.control ?? '', /^127\.0\.0\.1:\d+$/);
  const status = (await (await fetch(`http://${e1.control}/v1/engine`)).json()) as { replicas: { name: string; mode: string }[] };
  assert.deepEqual(status.replicas.map((r) => [r.name, r.mode]), [['r1', 'RW']]);

  // Real NBD clients read the volume: unwritten blocks come from the backing file.
  const info = JSON.parse((await run('nbdinfo', ['--json', e1.nbd!])).stdout) as { exports: { 'export-size': number }[] };
  assert.equal(info.exports[0]?.['export-size'], SIZE);
  const copy = join(root, 'copy.raw');
  await run('nbdcopy', [e1.nbd!, copy]);
  assert.ok((await readFile(copy)).equals(pattern), 'nbdcopy read what the backing file holds');

  const list = await api('GET', '/v1/instances');
  assert.deepEqual((list.json.instances as Instance[]).map((i) => [i.name, i.type, i.state]), [['e1', 'engine', 'running'], ['r1', 'replica', 'running']]);
  const log = await api('GET', '/v1/instances/r1/log?lines=50');
  assert.match(String(log.json.text), /replica r1: serving/);

  // kill -9 of the replica: the manager reports it, the watch stream carries it, nothing restarts it.
  process.kill(r1.pid, 'SIGKILL');
  const dead = await inState('r1', 'error');
  assert.equal(dead.errorMsg, 'replica r1 exited with signal SIGKILL');
  assert.equal(dead.signal, 'SIGKILL');
  await until('the watch event', async () =>
    events.find((ev) => ev.type === 'MODIFIED' && (ev.instance as Instance).name === 'r1' && (ev.instance as Instance).state === 'error') ? true : undefined,
  );
  assert.equal(events[0]?.type, 'SNAPSHOT');
  assert.ok(events.some((ev) => ev.type === 'HEARTBEAT'), 'heartbeat lines on the watch stream');
  assert.ok(events.some((ev) => ev.type === 'ADDED' && (ev.instance as Instance).name === 'e1'));
  // An errored instance keeps its name until deleted.
  assert.equal((await api('POST', '/v1/instances', replicaBody())).status, 409);

  const stopped = await api('DELETE', '/v1/instances/e1');
  assert.equal(stopped.status, 200);
  assert.equal(stopped.json.state, 'stopped');
  assert.equal((await api('GET', '/v1/instances/e1')).status, 404);

  assert.ok(existsSync(join(root, 'replicas', 'r1')));
  const gone = await api('DELETE', '/v1/instances/r1?cleanup=true');
  assert.equal(gone.status, 200);
  assert.equal(gone.json.state, 'error');
  assert.ok(!existsSync(join(root, 'replicas', 'r1')), 'cleanup removed the replica directory');
  assert.ok(existsSync(join(root, 'backing.raw')), 'the backing file stays');
  assert.equal((await api('DELETE', '/v1/instances/r1')).status, 404);
  await until('the DELETED event', async () => (events.some((ev) => ev.type === 'DELETED' && (ev.instance as Instance).name === 'r1') ? true : undefined));
});

test('a child that fails at start is an error with its exit code and last stderr line', async () => {
  await writeFile(join(root, 'a-file'), 'x');
  const r = await api('POST', '/v1/instances', { name: 'r-bad', type: 'replica', replica: { dir: join(root, 'a-file', 'r'), size: SIZE } });
  assert.equal(r.status, 201);
  const bad = await inState('r-bad', 'error');
  assert.equal(bad.exitCode, 1);
  assert.match(bad.errorMsg ?? '', /^replica r-bad exited with code 1: error: ENOTDIR: not a directory, mkdir '.*\/a-file\/r'$/);
  assert.equal((await api('DELETE', '/v1/instances/r-bad')).status, 200);
});

test('bad requests are refused with 400 and say why', async () => {
  const cases: [unknown, RegExp][] = [
    [{ name: 'Bad/Name', type: 'replica', replica: { dir: join(root, 'x'), size: 1 } }, /name must be a DNS-1123 name/],
    [{ name: 'a..b', type: 'replica', replica: { dir: join(root, 'x'), size: 1 } }, /name must be/],
    [{ name: 'r2', type: 'replica', replica: { dir: 'relative/dir', size: 1 } }, /replica\.dir must be an absolute path/],
    [{ name: 'r2', type: 'replica', replica: { dir: `${root}/../elsewhere`, size: 1 } }, /must be normalised/],
    [{ name: 'r2', type: 'replica', replica: { dir: '/var/lib/other', size: 1 } }, /not inside the data roots/],
    [{ name: 'r2', type: 'replica', replica: { dir: root, size: 1 } }, /not inside the data roots/],
    [{ name: 'r2', type: 'replica', replica: { dir: join(root, 'x'), size: -5 } }, /replica\.size must be a positive integer/],
    [{ name: 'r2', type: 'vm' }, /type must be "replica" or "engine"/],
    [{ name: 'e2', type: 'engine', engine: { volume: 'v', size: 1, replicas: [{ name: 'r', address: 'nowhere' }] } }, /address must be "host:port"/],
    [{ name: 'e2', type: 'engine', engine: { volume: 'v', size: 1, replicas: [], frontend: 'iscsi' } }, /frontend must be/],
    ['not an object', /must be a JSON object/],
  ];
  for (const [body, re] of cases) {
    const r = await api('POST', '/v1/instances', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.code, 'InvalidArgument');
    assert.match(String(r.json.message), re);
  }
  assert.equal((await api('DELETE', '/v1/instances/nope')).status, 404);
  assert.equal((await api('GET', '/v1/instances/nope/log')).status, 404);
});

test('a child that prints no ready line in time is killed and marked error', async () => {
  const slow = await startInstanceManager({ node: 'node-2', host: '127.0.0.1', port: 0, readyTimeoutMs: 30, log: () => {} });
  try {
    await mkdir(join(root, 'slow'), { recursive: true });
    const r = await fetch(`${slow.url}/v1/instances`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'r-slow', type: 'replica', replica: { dir: join(root, 'slow', 'r'), size: SIZE } }),
    });
    assert.equal(r.status, 201);
    const i = await until('r-slow error', async () => {
      const x = slow.manager.get('r-slow');
      return x.state === 'error' && x.signal ? x : undefined;
    });
    assert.equal(i.errorMsg, 'replica r-slow did not report ready within 0.03 s; killed');
    assert.equal(i.signal, 'SIGKILL');
  } finally {
    await slow.close();
  }
});

test('an engine with frontend blockdev reports its device; DELETE removes it', { skip: noBlockdev ?? false }, async () => {
  assert.equal((await api('POST', '/v1/instances', { name: 'r3', type: 'replica', replica: { dir: join(root, 'replicas', 'r3'), size: SIZE } })).status, 201);
  const r3 = await inState('r3', 'running');
  const deviceDir = join(root, 'dev');
  const body = { name: 'e3', type: 'engine', engine: { volume: 'vol-3', size: SIZE, replicas: [{ name: 'r3', address: r3.address }], frontend: 'blockdev', deviceDir } };
  assert.equal((await api('POST', '/v1/instances', body)).status, 201);
  const e3 = await inState('e3', 'running');
  assert.equal(e3.device, join(deviceDir, 'vol-3'));
  assert.ok((await stat(e3.device!)).isBlockDevice());
  assert.equal((await api('DELETE', '/v1/instances/e3')).json.state, 'stopped');
  await assert.rejects(lstat(e3.device!), { code: 'ENOENT' });
  assert.equal((await api('DELETE', '/v1/instances/r3?cleanup=true')).status, 200);
});

test('the data directory of a replica that no longer runs is removed on request, and only such a directory', async () => {
  const dir = join(root, 'replicas', 'r-data');
  const body = { ...replicaBody(), name: 'r-data', replica: { ...replicaBody().replica, dir } };
  assert.equal((await api('POST', '/v1/instances', body)).status, 201);
  await inState('r-data', 'running');
  const q = (d: string) => `/v1/replica-data?dir=${encodeURIComponent(d)}`;
  const busy = await api('DELETE', q(dir));
  assert.equal(busy.status, 409, JSON.stringify(busy.json));
  assert.match(String(busy.json['message']), /replica "r-data" is running/);
  assert.equal((await api('DELETE', '/v1/instances/r-data')).status, 200);
  const done = await api('DELETE', q(dir));
  assert.deepEqual(done.json, { dir, removed: true });
  await assert.rejects(stat(dir), /ENOENT/);
  assert.deepEqual((await api('DELETE', q(dir))).json, { dir, removed: false });
  // Not under replicas/, not a replica, not normalised, outside the roots: refused, nothing removed.
  await mkdir(join(root, 'replicas', 'other'), { recursive: true });
  await writeFile(join(root, 'replicas', 'other', 'precious'), 'x');
  for (const bad of [root, join(root, 'replicas', 'other'), `${root}/replicas/../replicas/r-data`, '/tmp/replicas/x', 'relative/replicas/x']) {
    const r = await api('DELETE', q(bad));
    assert.equal(r.status, 400, `${bad}: ${JSON.stringify(r.json)}`);
  }
  assert.equal(await readFile(join(root, 'replicas', 'other', 'precious'), 'utf8'), 'x');
});
