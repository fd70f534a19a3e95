// Fuzz of every HTTP endpoint's routing and parsing: random methods, paths (known routes mutated, percent
// escapes, dot segments, huge or empty ones), queries, headers and bodies, half of them with the right
// credential so the parsers behind the authentication are reached too. Against real processes: the manager,
// a backing-image manager, a data source; in this process: a node agent's endpoint and an instance manager. Nothing may crash, and nothing may answer
// 5xx except where docs/security.md documents it (507 from an upload that does not fit). Seeded: a failure prints
// the seed (STRATUM_TEST_SEED to repeat it).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startAgentServer, type AgentServer } from '../../src/agent/server.js';
import { AgentError } from '../../src/agent/errors.js';
import { clusterAuthHeaders } from '../../src/auth/index.js';
import { startInstanceManager, type RunningInstanceManager } from '../../src/instance-manager/index.js';
import { mulberry32 } from '../../src/util/prng.js';
import { BimProcess, makeDisk } from '../helpers/bim.js';
import { dataPlaneAuth, TEST_CLUSTER_SECRET } from '../helpers/credentials.js';
import { DataSourceProcess } from '../helpers/http-fixtures.js';
import { ManagerProcess, tempDir } from '../helpers/processes.js';
import { rawRequest } from './raw.js';

const seed = Number(process.env['STRATUM_TEST_SEED'] ?? Date.now() % 1_000_000);
const rand = mulberry32(seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
const dir = tempDir('fuzz');
const manager = new ManagerProcess(`${dir.path}/manager`);
const bim = new BimProcess(makeDisk(dir.path, 'disk'));
const ds = new DataSourceProcess(['--disk', makeDisk(dir.path, 'ds-disk').path, '--name', 'f', '--uuid', 'u1', '--source-type', 'upload']);
let agent: AgentServer | undefined;
let im: RunningInstanceManager | undefined;

before(async () => {
  // One after the other: three Node processes starting at once on a busy machine can miss the helpers' deadlines.
  await manager.start();
  await bim.start();
  await ds.start();
  agent = await startAgentServer({
    host: '127.0.0.1',
    port: 0,
    clusterSecret: TEST_CLUSTER_SECRET,
    logs: () => {
      throw new AgentError('PodNotFound', 'no such pod');
    },
  });
  const imDisk = makeDisk(dir.path, 'im-disk').path;
  im = await startInstanceManager({ node: 'fuzz', host: '127.0.0.1', port: 0, dataRoots: [imDisk], clusterSecret: TEST_CLUSTER_SECRET, lockDir: `${dir.path}/im-locks`, log: () => {} });
});

after(async () => {
  await agent?.close();
  await im?.close();
  await Promise.all([manager.stop(), bim.stop(), ds.stop()]);
  dir.remove();
});

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const TYPES = ['application/json', 'application/yaml', 'application/merge-patch+json', 'application/json-patch+json', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'application/offset+octet-stream', 'multipart/form-data; boundary=zz', '', 'application/json; charset=utf-16', '*/*'];
const JUNK = ['', '..', '.', '%2e%2e', '%zz', '%', '%00', 'a%2Fb', '~', '\u00e9', 'x'.repeat(300), '$(id)', '{}', 'null', '-1', '99999999999999999999'];
const QUERIES = ['', '?watch=true', '?watch=1&resourceVersion=abc', '?labelSelector=%zz', '?fieldSelector=a==b==c', '?action=detach', '?action=', '?offset=-1', '?offset=1e9', '?uuid=..', '?size=abc&checksum=xyz', '?tailLines=x&follow=true', '?dryRun=All&fieldValidation=Strict', '?limit=999999999999'];

function body(): string | Uint8Array | undefined {
  switch (Math.floor(rand() * 7)) {
    case 0: return undefined;
    case 1: return '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"f"},"spec":{"containers":[{"name":"c","image":"x","readinessProbe":{"exec":{"command":["id"]}}}]}}';
    case 2: return '{"name": "x", "sourceType": "download", "parameters": {"url": "http://[::1]/"}, "value": 1, "hostId": {}, "uuid": [], "sourcePath": "/etc/passwd", "size": -1, "sources": ["gopher://x"]}';
    case 3: return '{"truncated": ';
    case 4: return 'a: [b\n  c: : :\n';
    case 5: return Uint8Array.from({ length: Math.floor(rand() * 2000) }, () => Math.floor(rand() * 256));
    default: return JSON.stringify([{ op: pick(['add', 'remove', 'replace', 'move', 'x']), path: pick(['/spec', '/metadata/name', '', '/a/~2', '/-']), value: pick([1, null, 'x', {}]) }]);
  }
}

function mutate(route: string): string {
  const parts = route.split('/');
  const roll = rand();
  if (roll < 0.3) parts[1 + Math.floor(rand() * (parts.length - 1))] = pick(JUNK);
  else if (roll < 0.45) parts.push(pick(JUNK));
  else if (roll < 0.55) return `/${pick(JUNK)}`;
  else if (roll < 0.6) return '/'.repeat(1 + Math.floor(rand() * 4));
  return parts.join('/') + pick(QUERIES);
}

interface Target {
  name: string;
  url: string;
  routes: string[];
  auth: () => Record<string, string>;
  /** 5xx statuses this server may answer (documented). */
  allowed5xx: number[];
}

async function fuzz(t: Target, n: number): Promise<string[]> {
  const problems: string[] = [];
  for (let i = 0; i < n; i++) {
    const method = pick(METHODS);
    const path = mutate(pick(t.routes));
    const b = method === 'GET' || method === 'HEAD' ? undefined : body();
    const type = pick(TYPES);
    const headers: Record<string, string> = { ...(rand() < 0.5 ? t.auth() : {}), ...(type ? { 'content-type': type } : {}) };
    if (rand() < 0.1) headers['origin'] = pick(['null', 'http://evil.example', t.url]);
    if (rand() < 0.1) headers['range'] = pick(['bytes=0-', 'bytes=-1', 'bytes=9-1', 'bytes=a-b', 'items=1']);
    if (rand() < 0.05) headers['upload-offset'] = pick(['-1', 'x', '0']);
    try {
      const res = await fetch(`${t.url}${path}`, { method, headers, ...(b === undefined ? {} : { body: b }), signal: AbortSignal.timeout(5000) });
      // A watch may stream forever: the status line is what counts.
      await res.body?.cancel();
      if (res.status >= 500 && !t.allowed5xx.includes(res.status)) problems.push(`${method} ${path} [${type}] → ${res.status}`);
    } catch (err) {
      // fetch refuses some requests itself (e.g. a body on OPTIONS is fine, an invalid URL is not sent); a
      // timeout is a watch that never answered headers, which counts as a problem.
      const e = err as Error;
      if (e.name === 'TimeoutError') problems.push(`${method} ${path} → no answer in 5 s`);
    }
  }
  // Raw requests fetch() would not send.
  const port = Number(new URL(t.url).port);
  for (const raw of ['GET // HTTP/1.1', 'GET * HTTP/1.1', 'GET http://evil/ HTTP/1.1', 'GET /%zz%zz HTTP/1.1', `GET /${'a/'.repeat(4000)} HTTP/1.1`, 'BREW /v1 HTTP/1.1', 'GET /v1\u0000x HTTP/1.1']) {
    const answer = await rawRequest(port, `${raw}\r\nHost: 127.0.0.1:${port}\r\n${Object.entries(t.auth()).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1] ?? 0);
    if (status >= 500 && !t.allowed5xx.includes(status)) problems.push(`raw ${JSON.stringify(raw.slice(0, 30))} → ${status}`);
  }
  const health = await fetch(`${t.url}/healthz`);
  if (health.status !== 200) problems.push(`/healthz answers ${health.status} after the fuzz`);
  return problems;
}

const N = Number(process.env['STRATUM_FUZZ_REQUESTS'] ?? 150);

test(`fuzz: the manager's API (seed ${seed})`, async () => {
  const routes = ['/api', '/apis', '/version', '/openapi/v2', '/openapi/v3/apis/longhorn.io/v1beta2', '/metrics', '/api/v1/namespaces/default/pods', '/api/v1/namespaces/default/pods/p/log', '/api/v1/namespaces/default/pods/p/status', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backingimages', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes/v', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/settings/allow-private-download-urls', '/apis/coordination.k8s.io/v1/namespaces/longhorn-system/leases/n', '/api/v1/namespaces/x', '/v1/backingimages', '/v1/backingimages/b', '/v1/backingimages/b/upload', '/v1/backingimages/b/download', '/v1/volumes', '/v1/volumes/v', '/v1/nodes/n', '/v1/settings/s', '/v1/version', '/v1/upgrade', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/snapshots/s', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/engineimages', '/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots/s', '/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents', '/'];
  const problems = await fuzz({ name: 'manager', url: manager.url, routes, auth: () => ({ authorization: `Bearer ${manager.token}` }), allowed5xx: [] }, N);
  assert.deepEqual(problems, [], `seed ${seed}`);
});

test(`fuzz: a backing-image manager (seed ${seed})`, async () => {
  const routes = ['/v1/version', '/v1/stats', '/v1/files', '/v1/files/f', '/v1/files/f/sync', '/v1/files/f/fetch', '/v1/files/f/chunks', '/v1/files/f/data', '/v1/files/f/download', '/v1/watch'];
  const problems = await fuzz({ name: 'bim', url: bim.url, routes, auth: dataPlaneAuth, allowed5xx: [] }, N);
  assert.deepEqual(problems, [], `seed ${seed}`);
  assert.equal(bim.exited, false);
});

test(`fuzz: a data source (seed ${seed})`, async () => {
  const routes = ['/v1/file', '/v1/transfer', '/v1/watch', '/v1/upload'];
  // 507: an upload declared larger than the disk's free space (docs/datasource-api.md).
  const problems = await fuzz({ name: 'data source', url: ds.url, routes, auth: dataPlaneAuth, allowed5xx: [507] }, N);
  assert.deepEqual(problems, [], `seed ${seed}`);
});

test(`fuzz: a node agent's endpoint (seed ${seed})`, async () => {
  const problems = await fuzz({ name: 'agent', url: agent?.url ?? '', routes: ['/pods/ns/p/log', '/healthz'], auth: () => clusterAuthHeaders(TEST_CLUSTER_SECRET), allowed5xx: [] }, N);
  assert.deepEqual(problems, [], `seed ${seed}`);
});

test(`fuzz: an instance manager (seed ${seed})`, async () => {
  const routes = ['/v1/version', '/v1/instances', '/v1/instances/r1', '/v1/instances/r1/log', '/v1/replica-data', '/v1/engines/e1', '/v1/engines/e1/replicas', '/v1/engines/e1/replicas/r1'];
  const problems = await fuzz({ name: 'instance manager', url: im?.url ?? '', routes, auth: dataPlaneAuth, allowed5xx: [] }, N);
  assert.deepEqual(problems, [], `seed ${seed}`);
});
