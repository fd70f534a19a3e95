// The data-plane attacks of the security issue against a running `stratum up` cluster: an instance manager's HTTP
// API (instances, engine control, cleanup), its replica listener (OPEN with the cluster credential), the NBD
// listener (loopback only), plus Events that expire and the per-client connection cap. Each test asserts the refusal
// and that the component attacked keeps serving the cluster.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CLUSTER_SECRET_ENV, clientProof, clusterAuthHeaders, newNonce, newSecret, readAuthFile } from '../../src/auth/index.js';
import { ReplicaClient } from '../../src/replica/index.js';
import { encodeOpenCredential, encodeRequestHeader, Op, OPEN_PURPOSE, RequestFlag, RESPONSE_HEADER_SIZE } from '../../src/replica/protocol.js';
import { killRecordedCluster, killRecordedPods, podPorts, startUp, type PodView } from '../helpers/cluster.js';
import { authFor } from '../helpers/credentials.js';
import { CLI, freePort, ManagerProcess, tempDir, waitFor } from '../helpers/processes.js';

const NS = 'longhorn-system';
const MiB = 1024 * 1024;
const dir = tempDir('security-dp');
let url = '';
let up: Awaited<ReturnType<typeof startUp>> | undefined;
let secret = '';
let im = '';
let disk = '';
let replicaAddress = '';

before(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  up = await startUp(dir.path, port, ['--nodes', '1']);
  secret = readAuthFile(join(dir.path, 'manager', 'auth.json')).clusterSecret;
  disk = join(dir.path, 'node-1', 'disk-1');
  im = await waitFor('a ready instance-manager pod', async () => {
    const res = await fetch(`${url}/api/v1/namespaces/${NS}/pods`, { headers: authFor(url) });
    const pods = ((await res.json()) as { items: PodView[] }).items;
    const p = pods.find((x) => x.metadata.name.startsWith('instance-manager') && x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    const http = p ? podPorts(p)['http'] : undefined;
    return http ? `http://127.0.0.1:${http}` : undefined;
  }, 60_000);
  // The pod can be Ready before its agent registered the disk: the controller tells the manager its data roots then.
  await waitFor('the instance manager to have the disk as a data root', async () => {
    const res = await imCall('GET', '/v1/data-roots');
    return res.status === 200 && (JSON.parse(res.text) as { dataRoots: string[] }).dataRoots.includes(disk);
  }, 60_000);
  const version = (await (await fetch(`${im}/v1/version`, { headers: clusterAuthHeaders(secret) })).json()) as { listeners: { replica: string } };
  replicaAddress = version.listeners.replica;
  // A replica the attacks aim at (created as the controllers would, with the cluster credential).
  const r = await imCall('POST', '/v1/instances', { name: 'sec-r1', type: 'replica', replica: { dir: join(disk, 'replicas', 'sec-r1'), size: 4 * MiB } });
  assert.ok(r.status === 201 || r.status === 200, r.text);
  await waitFor('replica sec-r1 running', async () => JSON.parse((await imCall('GET', '/v1/instances/sec-r1')).text).state === 'running', 60_000);
});

after(async () => {
  await up?.stop('SIGINT');
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  dir.remove();
});

async function imCall(method: string, path: string, body?: unknown, headers: Record<string, string> = clusterAuthHeaders(secret)): Promise<{ status: number; text: string }> {
  const res = await fetch(`${im}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, text: await res.text() };
}

async function imServes(): Promise<void> {
  assert.equal((await imCall('GET', '/v1/version')).status, 200, 'the instance manager keeps serving the cluster');
  assert.equal(JSON.parse((await imCall('GET', '/v1/instances/sec-r1')).text).state, 'running', 'its replica keeps running');
}

test('an instance manager answers nothing but /healthz without the cluster credential (API, engine control, cleanup)', async () => {
  const victim = join(dir.path, 'victim-1');
  mkdirSync(victim);
  writeFileSync(join(victim, 'keep'), 'x');
  const calls: [string, string, unknown?][] = [
    ['GET', '/v1/version'], ['GET', '/v1/instances'], ['GET', '/v1/instances?watch=true'], ['GET', '/v1/instances/sec-r1'],
    ['GET', '/v1/instances/sec-r1/log'], ['GET', '/v1/engines/e1'], ['GET', '/v1/engines/e1?watch=true'],
    ['POST', '/v1/engines/e1/replicas', { name: 'x', address: '127.0.0.1:1' }], ['DELETE', '/v1/engines/e1/replicas/x'],
    ['POST', '/v1/engines/e1/clone', { sourceVolume: 'v', snapshot: 's', sourceSize: 4096, replicaName: 'x', replicaAddress: '127.0.0.1:1' }], ['GET', '/v1/engines/e1/clone'],
    ['POST', '/v1/instances', { name: 'evil', type: 'replica', replica: { dir: victim, size: 4096 } }],
    ['DELETE', '/v1/instances/sec-r1?cleanup=true'], ['DELETE', `/v1/replica-data?dir=${encodeURIComponent(victim)}`],
  ];
  const wrong = clusterAuthHeaders(newSecret());
  for (const [method, path, body] of calls) {
    assert.equal((await imCall(method, path, body, {})).status, 401, `${method} ${path} without a credential`);
    assert.equal((await imCall(method, path, body, wrong)).status, 401, `${method} ${path} with another cluster's credential`);
  }
  assert.equal((await fetch(`${im}/healthz`)).status, 200);
  assert.ok(existsSync(join(victim, 'keep')), 'nothing was removed');
  await imServes();
});

test('even with the credential, cleanup and replicas stay inside the data roots: no other directory, no symlink out, no foreign backing file', async () => {
  const victim = join(dir.path, 'victim-2');
  mkdirSync(victim);
  writeFileSync(join(victim, 'replica.json'), '{}');
  mkdirSync(join(disk, 'replicas'), { recursive: true });
  symlinkSync(victim, join(disk, 'replicas', 'sec-link'));
  const refused: [string, string, unknown?][] = [
    ['DELETE', `/v1/replica-data?dir=${encodeURIComponent(victim)}`],
    ['DELETE', `/v1/replica-data?dir=${encodeURIComponent(join(disk, 'replicas', 'sec-link'))}`],
    ['DELETE', `/v1/replica-data?dir=${encodeURIComponent(`${disk}/replicas/../../victim-2`)}`],
    ['POST', '/v1/instances', { name: 'sec-out', type: 'replica', replica: { dir: victim, size: 4096 } }],
    ['POST', '/v1/instances', { name: 'sec-link', type: 'replica', replica: { dir: join(disk, 'replicas', 'sec-link'), size: 4096 } }],
    ['POST', '/v1/instances', { name: 'sec-etc', type: 'replica', replica: { dir: join(disk, 'elsewhere', 'sec-etc'), size: 4096 } }],
    // Serving any file as a replica: a backing file that is not a backing image of the disk.
    ['POST', '/v1/instances', { name: 'sec-bk', type: 'replica', replica: { dir: join(disk, 'replicas', 'sec-bk'), size: 4096, backing: { name: 'b', uuid: 'u', path: '/etc/passwd' } } }],
    ['POST', '/v1/instances', { name: 'sec-bk2', type: 'replica', replica: { dir: join(disk, 'replicas', 'sec-bk2'), size: 4096, backing: { name: 'b', uuid: 'u', path: join(disk, 'replicas', 'sec-r1', 'volume-head-000.img') } } }],
  ];
  for (const [method, path, body] of refused) {
    const r = await imCall(method, path, body);
    assert.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body ?? '')}: ${r.text}`);
  }
  assert.ok(existsSync(join(victim, 'replica.json')), 'the directory outside the data roots is still there');
  for (const name of ['sec-out', 'sec-link', 'sec-etc', 'sec-bk', 'sec-bk2']) assert.equal((await imCall('GET', `/v1/instances/${name}`)).status, 404, `${name} was never created`);
  // A replica of the data root is cleaned up as before (the controllers' path).
  assert.equal((await imCall('POST', '/v1/instances', { name: 'sec-r2', type: 'replica', replica: { dir: join(disk, 'replicas', 'sec-r2'), size: 4096 * 256 } })).status, 201);
  await waitFor('replica sec-r2 running', async () => JSON.parse((await imCall('GET', '/v1/instances/sec-r2')).text).state === 'running', 60_000);
  assert.equal((await imCall('DELETE', '/v1/instances/sec-r2?cleanup=true')).status, 200);
  assert.ok(!existsSync(join(disk, 'replicas', 'sec-r2')), 'its directory is gone');
  await imServes();
});

/** Connects to the replica listener, waits for its greeting, sends `bytes`; what came back and whether it closed. */
function rawReplica(bytes: Buffer | undefined): Promise<{ greeting: Buffer; after: Buffer; closed: boolean }> {
  const [host, port] = [replicaAddress.slice(0, replicaAddress.lastIndexOf(':')), Number(replicaAddress.slice(replicaAddress.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let buf = Buffer.alloc(0);
    let greeting: Buffer | undefined;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ greeting: greeting ?? buf, after: greeting ? buf : Buffer.alloc(0), closed });
    };
    const timer = setTimeout(() => finish(false), 5000);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!greeting && buf.length >= RESPONSE_HEADER_SIZE + 32) {
        greeting = buf.subarray(0, RESPONSE_HEADER_SIZE + 32);
        buf = buf.subarray(RESPONSE_HEADER_SIZE + 32);
        if (bytes) s.write(bytes);
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => finish(true));
  });
}

function request(op: number, opts: { flags?: number; length?: number; payload?: Buffer } = {}): Buffer {
  const payload = opts.payload ?? Buffer.alloc(0);
  return Buffer.concat([encodeRequestHeader({ op: op as never, flags: opts.flags ?? 0, id: 1, offset: 0, length: opts.length ?? 0, payloadLength: payload.length }), payload]);
}

test('the replica listener: any first request but OPEN with the cluster credential closes the connection; the engine with the secret gets in', async () => {
  const name = 'sec-r1';
  const attempts: [string, Buffer | undefined][] = [
    ['READ before OPEN', Buffer.concat([encodeRequestHeader({ op: Op.READ, flags: 0, id: 1, offset: 0, length: 4096, payloadLength: 0 })])],
    ['PING before OPEN', request(Op.PING)],
    ['OPEN without a credential', request(Op.OPEN, { payload: Buffer.from(name) })],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: replica.example\r\nAccept: */*\r\n\r\n')],
  ];
  const forged = encodeOpenCredential({ name, clientNonce: newNonce(), proof: clientProof(newSecret(), { purpose: OPEN_PURPOSE, name, serverNonce: newNonce(), clientNonce: newNonce() }) });
  attempts.push(['OPEN with a proof from another secret', request(Op.OPEN, { flags: RequestFlag.CRED, length: forged.length, payload: Buffer.from(forged.payload) })]);
  for (const [what, bytes] of attempts) {
    const r = await rawReplica(bytes);
    assert.equal(r.greeting.length, RESPONSE_HEADER_SIZE + 32, `${what}: the greeting carries a nonce`);
    assert.ok(r.closed, `${what}: the connection is closed`);
    assert.equal(r.after.length, 0, `${what}: nothing is answered (${r.after.toString('latin1').slice(0, 60)})`);
  }
  // A recorded credential is useless on a new connection: its proof covers the other connection's nonce.
  const replay = await rawReplica(undefined);
  const nonceOfOld = replay.greeting.subarray(RESPONSE_HEADER_SIZE);
  const clientNonce = newNonce();
  const recorded = encodeOpenCredential({ name, clientNonce, proof: clientProof(secret, { purpose: OPEN_PURPOSE, name, serverNonce: nonceOfOld, clientNonce }) });
  const again = await rawReplica(request(Op.OPEN, { flags: RequestFlag.CRED, length: recorded.length, payload: Buffer.from(recorded.payload) }));
  assert.ok(again.closed && again.after.length === 0, 'a replayed OPEN is refused');
  const [host, port] = [replicaAddress.slice(0, replicaAddress.lastIndexOf(':')), Number(replicaAddress.slice(replicaAddress.lastIndexOf(':') + 1))];
  await assert.rejects(ReplicaClient.connect({ host, port }, { name, clusterSecret: newSecret(), connectTimeoutMs: 5000 }), /closed|UNAUTHENTICATED|connection/i);
  await assert.rejects(ReplicaClient.connect({ host, port }, { name, connectTimeoutMs: 5000 }), /closed|connection/i);
  // The cluster's own client: in, and the replica answers.
  const client = await ReplicaClient.connect({ host, port }, { name, clusterSecret: secret, connectTimeoutMs: 10_000 });
  try {
    assert.equal((await client.info()).name, name);
    await client.write(0, Buffer.alloc(4096, 7));
    assert.deepEqual(Buffer.from(await client.read(0, 4096)), Buffer.alloc(4096, 7));
  } finally {
    await client.close();
  }
  await imServes();
});

test('the replica listener: a client that opens many connections without a credential gets the extra ones closed', async () => {
  const [host, port] = [replicaAddress.slice(0, replicaAddress.lastIndexOf(':')), Number(replicaAddress.slice(replicaAddress.lastIndexOf(':') + 1))];
  const sockets: Socket[] = [];
  let closedEarly = 0;
  try {
    for (let i = 0; i < 48; i++) {
      const s = connect({ host, port });
      s.on('error', () => undefined);
      s.on('close', () => closedEarly++);
      sockets.push(s);
    }
    await waitFor('the connections beyond the cap to be closed', async () => closedEarly >= 16, 20_000);
  } finally {
    for (const s of sockets) s.destroy();
  }
  // Once the server has seen our sockets close (a moment later), the cluster's client from this address gets in again.
  const client = await waitFor('the cluster client to connect again', async () =>
    ReplicaClient.connect({ host, port: Number(port) }, { name: 'sec-r1', clusterSecret: secret, connectTimeoutMs: 10_000 }).catch(() => undefined), 20_000);
  await client.close();
  await imServes();
});

test('the instance-manager API: a client holding too many connections gets the extra ones closed, and the manager keeps serving', async () => {
  const port = Number(new URL(im).port);
  const sockets: Socket[] = [];
  let closed = 0;
  try {
    for (let i = 0; i < 280; i++) {
      const s = connect({ host: '127.0.0.1', port });
      s.on('error', () => undefined);
      s.on('close', () => closed++);
      sockets.push(s);
    }
    // 256 per client address: the cluster's own calls from loopback count too, so at least 24 of ours go.
    await waitFor('connections beyond the per-client cap to be closed', async () => closed >= 24, 20_000);
  } finally {
    for (const s of sockets) s.destroy();
  }
  await waitFor('the instance manager to answer again', async () => (await imCall('GET', '/v1/version')).status === 200, 20_000);
  await imServes();
});

/** A non-loopback IPv4 address of this machine, if it has one. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

test('NBD is served on loopback only, whatever address the instance manager has; it does not start without the cluster secret', async () => {
  const ip = externalAddress();
  const root = join(dir.path, 'im-alone');
  mkdirSync(root);
  const secretFile = join(root, 'secret');
  writeFileSync(secretFile, secret, { mode: 0o600 });
  const argv = [CLI, 'instance-manager', '--node', 'sec-alone', '--host', ip ?? '127.0.0.1', '--port', '0', '--data-root', root];
  // Without the secret: refused at start.
  const bare = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, [CLUSTER_SECRET_ENV]: '' } });
  let bareErr = '';
  bare.stderr.on('data', (d: Buffer) => (bareErr += d.toString()));
  const bareCode = await new Promise<number | null>((res) => bare.on('exit', (c) => res(c)));
  assert.equal(bareCode, 1, bareErr);
  assert.match(bareErr, /no cluster secret/);
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, [CLUSTER_SECRET_ENV]: secretFile } });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  try {
    const m = await waitFor('the instance manager to serve', async () => {
      if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${log}`);
      return /served at (\S+), replicas on (\S+), NBD on (\S+)/.exec(log) ?? undefined;
    }, 30_000);
    const [api, , nbd] = [m[1]!, m[2]!, m[3]!];
    const nbdPort = Number(nbd.slice(nbd.lastIndexOf(':') + 1));
    assert.equal(nbd.slice(0, nbd.lastIndexOf(':')), '127.0.0.1', `NBD listens on loopback: ${nbd}`);
    // An NBD server speaks first ("NBDMAGIC"). A bare connect is not enough: the port number the kernel gave the
    // loopback NBD listener may also be one of this instance manager's listeners on `ip` (its API or replica port).
    const reach = (host: string) => new Promise<boolean>((res) => {
      const s = connect({ host, port: nbdPort });
      let got = Buffer.alloc(0);
      const done = (v: boolean) => { s.destroy(); res(v); };
      s.setTimeout(2000, () => done(false));
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length >= 8) done(got.subarray(0, 8).toString('latin1') === 'NBDMAGIC');
      });
      s.on('error', () => res(false));
      s.on('end', () => done(false));
    });
    assert.equal(await reach('127.0.0.1'), true, 'the node itself reaches its NBD listener');
    if (ip) assert.equal(await reach(ip), false, `the NBD port is closed on ${ip}`);
    assert.equal((await fetch(`${api}/v1/instances`)).status, 401);
    assert.equal((await fetch(`${api}/v1/version`, { headers: clusterAuthHeaders(secret) })).status, 200, 'it serves the cluster');
  } finally {
    child.kill('SIGTERM');
    await new Promise((res) => (child.exitCode !== null ? res(undefined) : child.on('exit', res)));
  }
});

test('Events expire after the event TTL, and the manager keeps serving', async () => {
  const mdir = join(dir.path, 'ttl-manager');
  const m = new ManagerProcess(mdir, ['--event-ttl', '2']);
  await m.start();
  try {
    const auth = authFor(m.url);
    const now = new Date().toISOString();
    const ev = { apiVersion: 'v1', kind: 'Event', metadata: { name: 'sec-ev', namespace: 'default' }, involvedObject: { kind: 'Node', name: 'x' }, reason: 'Test', message: 'expires', type: 'Normal', firstTimestamp: now, lastTimestamp: now };
    const c = await fetch(`${m.url}/api/v1/namespaces/default/events`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(ev) });
    assert.equal(c.status, 201, await c.text());
    await waitFor('the Event to expire', async () => (await fetch(`${m.url}/api/v1/namespaces/default/events/sec-ev`, { headers: auth })).status === 404, 30_000);
    assert.equal((await fetch(`${m.url}/api`, { headers: auth })).status, 200);
    assert.match(readFileSync(join(mdir, 'kubeconfig'), 'utf8'), /token/);
  } finally {
    await m.stop();
  }
});
