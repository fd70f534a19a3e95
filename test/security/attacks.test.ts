// The attacks of the security issue against a running `stratum up` cluster, each in its own test, with only what
// an attacker on the network has (the ports the cluster announces in its own API) — or, where a test says so, a
// stolen low-privilege credential. Each asserts the refusal and that the component attacked keeps serving.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { clusterAuthHeaders, readAuthFile, readNodeCredentials } from '../../src/auth/index.js';
import { alive, killRecordedCluster, killRecordedPods, podPorts, readCluster, startUp, type PodView } from '../helpers/cluster.js';
import { authFor, bearerHeaders } from '../helpers/credentials.js';
import { CLI, freePort, hasTool, run, tempDir, waitFor } from '../helpers/processes.js';
import { rawRequest } from './raw.js';

const NS = 'longhorn-system';
const LH = `/apis/longhorn.io/v1beta2/namespaces/${NS}`;
const dir = tempDir('security');
let url = '';
let up: Awaited<ReturnType<typeof startUp>> | undefined;
let secret = '';

before(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  up = await startUp(dir.path, port, ['--nodes', '2']);
  secret = readAuthFile(join(dir.path, 'manager', 'auth.json')).clusterSecret;
});

after(async () => {
  await up?.stop('SIGINT');
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  dir.remove();
});

async function call(path: string, init: RequestInit & { token?: string | null } = {}): Promise<{ status: number; text: string }> {
  const { token, ...rest } = init;
  const auth = token === null ? {} : token === undefined ? authFor(url) : bearerHeaders(token);
  const res = await fetch(`${url}${path}`, { ...rest, headers: { ...auth, ...(rest.headers as Record<string, string> | undefined) } });
  return { status: res.status, text: await res.text() };
}

const json = (body: unknown): RequestInit => ({ body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

async function managerServes(): Promise<void> {
  assert.equal((await call('/api')).status, 200, 'the manager keeps serving');
}

async function pods(): Promise<PodView[]> {
  return (JSON.parse((await call(`/api/v1/namespaces/${NS}/pods`)).text) as { items: PodView[] }).items;
}

/** `http://ip:port` of a data-plane pod whose name starts with `prefix`, once it is Running. */
async function podUrl(prefix: string): Promise<string> {
  return waitFor(`a running ${prefix} pod`, async () => {
    // Ready: its readiness probe (which carries the cluster credential) got an answer.
    const p = (await pods()).find((x) => x.metadata.name.startsWith(prefix) && x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    const port = p ? podPorts(p)['http'] : undefined;
    return port ? `http://127.0.0.1:${port}` : undefined;
  }, 60_000);
}

test('without a credential every API call but /healthz is 401; a wrong token too', async () => {
  assert.equal((await call('/healthz', { token: null })).status, 200);
  const paths: [string, string][] = [
    ['GET', '/api'], ['GET', '/apis'], ['GET', '/version'], ['GET', '/openapi/v2'], ['GET', '/metrics'],
    ['GET', '/api/v1/namespaces/default/pods'], ['GET', `${LH}/volumes?watch=true`], ['GET', '/v1/volumes'],
    ['GET', '/v1/backingimages/x/download'], ['POST', '/v1/volumes/v?action=detach'], ['PUT', '/v1/settings/x'],
    ['DELETE', `${LH}/nodes/node-1`], ['PATCH', `${LH}/settings/x`], ['POST', '/api/v1/namespaces/default/pods'],
  ];
  for (const [method, path] of paths) {
    assert.equal((await call(path, { method, token: null })).status, 401, `${method} ${path} without a credential`);
    assert.equal((await call(path, { method, token: 'stratum-not-a-token' })).status, 401, `${method} ${path} with a wrong token`);
  }
  await managerServes();
});

test('kubectl with the generated kubeconfig: get, get -w and logs; without it: Unauthorized', { skip: hasTool('kubectl') ? false : 'kubectl is not installed' }, async () => {
  const kc = join(dir.path, 'kubeconfig');
  const get = await run('kubectl', ['--kubeconfig', kc, 'get', 'nodes.longhorn.io', '-n', NS, '-o', 'name']);
  assert.equal(get.code, 0, get.stderr);
  assert.equal(get.stdout.trim().split('\n').length, 2);
  const im = (await pods()).find((p) => p.metadata.name.startsWith('instance-manager'));
  assert.ok(im, 'an instance-manager pod runs');
  const logs = await waitFor('the pod log through kubectl', async () => {
    const r = await run('kubectl', ['--kubeconfig', kc, 'logs', '-n', NS, im.metadata.name]);
    assert.equal(r.code, 0, r.stderr);
    return /instance-manager/.test(r.stdout) ? r : undefined;
  });
  assert.match(logs.stdout, /served at/);
  const { spawn } = await import('node:child_process');
  const w = spawn('kubectl', ['--kubeconfig', kc, 'get', 'settings.longhorn.io', '-n', NS, '-w', '-o', 'custom-columns=NAME:.metadata.name,VALUE:.value']);
  let out = '';
  w.stdout.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await waitFor('the watch lists settings', async () => out.includes('backing-image-cleanup-wait-interval'));
    assert.equal((await call('/v1/settings/backing-image-cleanup-wait-interval', { method: 'PUT', ...json({ value: '61' }) })).status, 200);
    await waitFor('the change in kubectl -w', async () => /backing-image-cleanup-wait-interval\s+61/.test(out), 10_000);
  } finally {
    w.kill();
  }
  const anonymous = await run('kubectl', ['--server', url, 'get', 'nodes.longhorn.io', '-n', NS], { env: { ...process.env, KUBECONFIG: '/dev/null' } });
  assert.notEqual(anonymous.code, 0);
});

test('role view (stratum token create) reads everything but writes nothing, reads no logs and no image bytes', async () => {
  const file = join(dir.path, 'viewer.kubeconfig');
  const made = await run(process.execPath, [CLI, 'token', 'create', 'viewer', '--role', 'view', '--manager-data-dir', join(dir.path, 'manager'), '--out', file, '--url', url.replace('http:', 'https:')]);
  assert.equal(made.code, 0, made.stderr);
  const token = (readFileSync(file, 'utf8').match(/token: (\S+)/) ?? [])[1] ?? '';
  await waitFor('the manager knows the new token', async () => (await call('/api', { token })).status === 200);
  assert.equal((await call(`${LH}/volumes`, { token })).status, 200);
  assert.equal((await call('/v1/settings', { token })).status, 200);
  const writes: [string, string, RequestInit][] = [
    ['POST', '/v1/volumes/v?action=detach', json({})],
    ['PUT', '/v1/settings/backing-image-cleanup-wait-interval', json({ value: '5' })],
    ['DELETE', `/api/v1/namespaces/${NS}/pods/x`, {}],
    ['POST', '/api/v1/namespaces/default/pods', json({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [] } })],
  ];
  for (const [method, path, init] of writes) {
    const r = await call(path, { ...init, method, token });
    assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
    assert.match(r.text, /role view may only read/);
  }
  assert.equal((await call(`/api/v1/namespaces/${NS}/pods/x/log`, { token })).status, 403);
  assert.equal((await call('/v1/backingimages/x/download', { token })).status, 403);
  if (hasTool('kubectl')) {
    const del = await run('kubectl', ['--kubeconfig', file, 'delete', 'settings.longhorn.io', 'backing-image-cleanup-wait-interval', '-n', NS]);
    assert.notEqual(del.code, 0);
    assert.match(del.stderr, /Forbidden|forbidden/);
  }
  await managerServes();
});

test("a node's credential acts only for its own node", async () => {
  const { token } = readNodeCredentials(join(dir.path, 'node-1', 'agent', 'node-credentials.json'));
  assert.equal((await call(`${LH}/nodes/node-1`, { token })).status, 200);
  const refused: [string, string, RequestInit][] = [
    ['POST', '/api/v1/namespaces/default/pods', json({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'stratum-test-http:v1' }] } })],
    ['PATCH', `${LH}/nodes/node-2`, { body: '{"spec":{"allowScheduling":false}}', headers: { 'content-type': 'application/merge-patch+json' } }],
    ['GET', '/api/v1/pods', {}],
    ['GET', `${LH}/volumes`, {}],
    ['GET', '/v1/volumes', {}],
    ['DELETE', `${LH}/nodes/node-1`, {}],
  ];
  for (const [method, path, init] of refused) assert.equal((await call(path, { ...init, method, token })).status, 403, `${method} ${path} with node-1's token`);
  await managerServes();
});

test('a Pod that asks for more than its catalog image is refused with 422 naming the field', async () => {
  const pod = (container: Record<string, unknown>) => json({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'evil' }, spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'stratum-test-http:v1', ...container }] } });
  const cases: [Record<string, unknown>, string][] = [
    [{ readinessProbe: { exec: { command: ['/bin/sh', '-c', 'touch /tmp/pwned'] } } }, 'spec.containers[0].readinessProbe.exec'],
    [{ env: [{ name: 'NODE_OPTIONS', value: '--require /tmp/evil.js' }] }, 'spec.containers[0].env[0].name'],
    [{ command: ['/bin/sh'] }, 'spec.containers[0].command'],
    [{ image: 'busybox:latest' }, 'spec.containers[0].image'],
    [{ image: 'stratum-bim:v1', args: ['manager', '--data-dir', '/'] }, 'spec.containers[0].args[0]'],
    [{ image: 'stratum-bim:v1', args: ['bim', '--disk', '/etc', '--disk-uuid', 'x', '--port', '0'] }, 'spec.containers[0].args[2]'],
    [{ readinessProbe: { httpGet: { host: '169.254.169.254', port: 80, path: '/' } } }, 'spec.containers[0].readinessProbe.httpGet.host'],
  ];
  for (const [c, field] of cases) {
    const r = await call('/api/v1/namespaces/default/pods', { method: 'POST', ...pod(c) });
    assert.equal(r.status, 422, `${JSON.stringify(c)}: ${r.text}`);
    const causes = (JSON.parse(r.text) as { details: { causes: { field: string }[] } }).details.causes.map((x) => x.field);
    assert.ok(causes.includes(field), `${field} in ${causes.join(', ')}`);
  }
  assert.equal((await call('/api/v1/namespaces/default/pods/evil')).status, 404, 'nothing was created');
  await managerServes();
});

test('browser requests: a text/plain form body is never a request body; other Hosts (DNS rebinding) and Origins (CSRF) are refused', async () => {
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const r = await call('/v1/volumes/v?action=detach', { method: 'POST', body: 'x=1', headers: { 'content-type': type } });
    assert.equal(r.status, 415, `${type}: ${r.text}`);
  }
  // Without the credential the browser has nothing but a 401, before any body is read.
  assert.equal((await call('/v1/volumes/v?action=detach', { method: 'POST', token: null, body: 'x', headers: { 'content-type': 'text/plain' } })).status, 401);
  const port = new URL(url).port;
  const rebound = await rawRequest(Number(port), `GET /v1/volumes HTTP/1.1\r\nHost: attacker.example:${port}\r\nAuthorization: ${authFor(url).authorization ?? ''}\r\n\r\n`);
  assert.match(rebound, /^HTTP\/1\.1 403/, rebound);
  const csrf = await call('/v1/volumes', { headers: { origin: 'http://attacker.example' } });
  assert.equal(csrf.status, 403, csrf.text);
  assert.equal((await call('/v1/volumes', { headers: { origin: `http://127.0.0.1:${port}` } })).status, 200, 'same origin (the UI) is fine');
  await managerServes();
});

test('read-only settings stay read-only through both APIs', async () => {
  const name = 'default-backing-image-manager-image';
  const before = JSON.parse((await call(`/v1/settings/${name}`)).text) as { value: string };
  assert.equal((await call(`/v1/settings/${name}`, { method: 'PUT', ...json({ value: 'evil:v1' }) })).status, 403);
  assert.equal((await call(`${LH}/settings/${name}`, { method: 'PATCH', body: '{"value":"evil:v1"}', headers: { 'content-type': 'application/merge-patch+json' } })).status, 403);
  assert.equal((await call(`${LH}/settings/${name}`, { method: 'DELETE' })).status, 403);
  assert.equal((await call(`${LH}/settings`, { method: 'DELETE' })).status, 403);
  assert.equal((JSON.parse((await call(`/v1/settings/${name}`)).text) as { value: string }).value, before.value);
});

test("a node agent's endpoint: no logs without the cluster credential, and `GET //` does not crash it", async () => {
  const node = JSON.parse((await call(`${LH}/nodes/node-1`)).text) as { metadata: { annotations: Record<string, string> } };
  const agent = node.metadata.annotations['stratum.io/agent-url'] ?? '';
  const pid = readCluster(dir.path).processes?.['node-1']?.pid ?? 0;
  assert.equal((await fetch(`${agent}/pods/${NS}/x/log`)).status, 401);
  const port = Number(new URL(agent).port);
  for (const target of ['//', '//evil.example/x', '/pods/%zz/x/log', '*', 'http://[::1', '/'.repeat(5000)]) {
    const answer = await rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 4\d\d/, `GET ${target.slice(0, 40)}: ${answer.slice(0, 120)}`);
  }
  assert.equal((await fetch(`${agent}/healthz`)).status, 200);
  assert.ok(alive(pid), 'the agent process is alive');
});

test("a backing-image manager serves only the cluster, and `fetch` takes nothing but a data source's finished file", async () => {
  assert.equal((await call('/v1/backingimages', { method: 'POST', ...json({ name: 'sec-up', sourceType: 'upload', parameters: {} }) })).status, 200);
  const bim = await podUrl('bim-');
  const ds = await podUrl('backing-image-ds-sec-up');
  for (const path of ['/v1/files', '/v1/version', '/v1/watch', '/v1/files/x/download']) assert.equal((await fetch(`${bim}${path}`)).status, 401, path);
  for (const path of ['/v1/file', '/v1/watch', '/v1/upload']) assert.equal((await fetch(`${ds}${path}`)).status, 401, path);
  assert.equal((await fetch(`${ds}/v1/upload?offset=0`, { method: 'PUT', body: 'x', headers: { ...clusterAuthHeaders(secret), 'content-type': 'text/plain' } })).status, 415);
  // A replica's head file on the same disk: even with the cluster credential, fetch refuses to take it over.
  const bims = JSON.parse((await call(`${LH}/backingimagemanagers`)).text) as { items: { spec: { diskPath: string } }[] };
  const disk = bims.items[0]?.spec.diskPath ?? '';
  const head = join(disk, 'replicas', 'vol-r-1', 'volume-head-000.img');
  mkdirSync(join(disk, 'replicas', 'vol-r-1'), { recursive: true });
  writeFileSync(head, 'replica data');
  const r = await fetch(`${bim}/v1/files/stolen/fetch`, { method: 'POST', headers: { ...clusterAuthHeaders(secret), 'content-type': 'application/json' }, body: JSON.stringify({ uuid: 'u1', sourcePath: head, size: 12 }) });
  assert.equal(r.status, 400, await r.text());
  assert.equal(readFileSync(head, 'utf8'), 'replica data', 'the head file is where it was');
  assert.equal((await fetch(`${bim}/healthz`)).status, 200);
  assert.equal((await fetch(`${bim}/v1/files`, { headers: clusterAuthHeaders(secret) })).status, 200, 'the manager keeps serving the cluster');
});

test("a BackingImageDataSource's diskPath must be a registered disk", async () => {
  const r = await call(`${LH}/backingimagedatasources`, {
    method: 'POST',
    ...json({ apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImageDataSource', metadata: { name: 'evil-ds' }, spec: { nodeID: 'node-1', diskUUID: 'x', diskPath: '/etc', sourceType: 'upload', uuid: 'u1' } }),
  });
  assert.equal(r.status, 422, r.text);
  assert.match(r.text, /spec\.diskPath/);
});

test('download URLs into the cluster are refused: literal forms at admission, DNS names at connect', async () => {
  const create = (name: string, u: string) => call('/v1/backingimages', { method: 'POST', ...json({ name, sourceType: 'download', parameters: { url: u } }) });
  for (const u of ['http://127.0.0.1:1/x', 'http://[::1]/x', 'http://[::ffff:127.0.0.1]/x', 'http://[64:ff9b::a9fe:a9fe]/latest', 'http://[2002:7f00:1::]/x', 'http://169.254.169.254/latest/meta-data', 'http://2130706433/x', 'http://0x7f.1/x', 'http://[fd00:ec2::254]/']) {
    const r = await create(`dl-${Math.random().toString(36).slice(2, 8)}`, u);
    assert.equal(r.status, 422, `${u}: ${r.text}`);
  }
  // A name that resolves to loopback passes admission (it is a name), and the data source refuses the address.
  const r = await create('dl-name', `http://${hostname()}:1/x.raw`);
  assert.equal(r.status, 200, r.text);
  // The failure shows in the data source's status until it is retried, and in its Failed event for good.
  const message = await waitFor('the data source to refuse the address', async () => {
    const ds = JSON.parse((await call(`${LH}/backingimagedatasources/dl-name`)).text) as { status?: { message?: string } };
    const events = JSON.parse((await call(`/api/v1/namespaces/${NS}/events`)).text) as { items: { message?: string }[] };
    return [ds.status?.message ?? '', ...events.items.map((e) => e.message ?? '')].find((m) => m.includes('allow-private-download-urls'));
  }, 60_000);
  assert.match(message ?? '', /127\.\d+\.\d+\.\d+|::1/);
  assert.match(message ?? '', /allow-private-download-urls/);
});
