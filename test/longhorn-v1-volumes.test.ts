// End-to-end: Longhorn's /v1 volumes and nodes API and `stratum volume`, against a real `stratum manager` with its
// controllers. No node agent runs (the Nodes are created by the test and never become Ready), so volumes are
// never really attached: this checks the API surface — spec changes, JSON shapes, refusals — not the data path.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../src/api/meta.js';
import type { Node } from '../src/api/node.js';
import type { Volume } from '../src/api/volume.js';
import { HttpStore } from '../src/client/http-store.js';
import { isConflict } from '../src/store/errors.js';
import { ManagerProcess, stratum, tempDir, waitFor } from './helpers/processes.js';

const NS = DEFAULT_NAMESPACE;
const dir = tempDir('v1-volumes');
const manager = new ManagerProcess(join(dir.path, 'manager'));
let client: HttpStore;

type Json = Record<string, unknown>;

async function v1(method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> {
  const res = await fetch(`${manager.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${manager.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Json) : {} };
}

async function node(name: string, ip: string): Promise<void> {
  await client.create<Node>({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Node',
    metadata: { name, namespace: NS, annotations: { 'stratum.io/agent-url': `http://${ip}:41234` } },
    spec: { allowScheduling: true, tags: [], disks: { 'disk-1': { path: join(dir.path, name, 'disk-1'), allowScheduling: true, tags: ['ssd'] } } },
  });
  // What an agent would report for its disk (no agent runs here). The node controller writes Ready meanwhile.
  for (let attempt = 0; ; attempt++) {
    const n = structuredClone(await client.get<Node>('Node', NS, name));
    n.status = { ...(n.status ?? {}), diskStatus: { 'disk-1': { diskUUID: `uuid-${name}`, storageMaximum: 100 * 2 ** 30, storageAvailable: 60 * 2 ** 30, storageScheduled: 0, conditions: [] } } };
    try {
      await client.update(n, { subresource: 'status' });
      return;
    } catch (err) {
      if (!isConflict(err) || attempt > 10) throw err;
    }
  }
}

before(async () => {
  await manager.start();
  client = new HttpStore({ server: manager.url, token: manager.token });
  await node('node-1', '10.0.0.1');
  await node('node-2', '10.0.0.2');
});
after(async () => {
  await manager.stop();
  dir.remove();
});

test('nodes: list and get in Longhorn\'s shape, disks with spec and status merged', async () => {
  const list = await v1('GET', '/v1/nodes');
  assert.equal(list.status, 200);
  assert.equal(list.json['type'], 'collection');
  assert.equal(list.json['resourceType'], 'node');
  assert.deepEqual((list.json['data'] as Json[]).map((n) => n['name']), ['node-1', 'node-2']);
  const { json: n } = await v1('GET', '/v1/nodes/node-1');
  assert.equal(n['type'], 'node');
  assert.equal(n['address'], '10.0.0.1');
  assert.equal(n['allowScheduling'], true);
  assert.equal(typeof n['conditions'], 'object');
  assert.ok(!Array.isArray(n['conditions']));
  const disk = (n['disks'] as Record<string, Json>)['disk-1'] ?? {};
  assert.equal(disk['diskUUID'], 'uuid-node-1');
  assert.equal(disk['path'], join(dir.path, 'node-1', 'disk-1'));
  assert.equal(disk['storageMaximum'], 100 * 2 ** 30);
  assert.equal(disk['storageAvailable'], 60 * 2 ** 30);
  assert.equal(disk['storageScheduled'], 0);
  assert.equal(disk['allowScheduling'], true);
  assert.deepEqual(disk['tags'], ['ssd']);
  assert.match(String((n['actions'] as Json)['diskUpdate']), /\/v1\/nodes\/node-1\?action=diskUpdate$/);
  assert.equal((await v1('GET', '/v1/nodes/no-such-node')).status, 404);
});

test('nodes: PUT changes scheduling and tags; diskUpdate changes one disk and leaves the rest', async () => {
  const put = await v1('PUT', '/v1/nodes/node-2', { allowScheduling: false, tags: ['zone-b', 'fast', 'fast'], name: 'ignored' });
  assert.equal(put.status, 200);
  assert.equal(put.json['allowScheduling'], false);
  assert.deepEqual(put.json['tags'], ['fast', 'zone-b']);
  const stored = await client.get<Node>('Node', NS, 'node-2');
  assert.equal(stored.spec?.allowScheduling, false);
  assert.deepEqual(stored.spec?.tags, ['fast', 'zone-b']);

  const upd = await v1('POST', '/v1/nodes/node-2?action=diskUpdate', { disks: { 'disk-1': { allowScheduling: false, tags: ['nvme'] } } });
  assert.equal(upd.status, 200);
  const disk = (upd.json['disks'] as Record<string, Json>)['disk-1'] ?? {};
  assert.equal(disk['allowScheduling'], false);
  assert.deepEqual(disk['tags'], ['nvme']);
  assert.equal(disk['path'], join(dir.path, 'node-2', 'disk-1'));
  assert.equal((await client.get<Node>('Node', NS, 'node-2')).spec?.disks?.['disk-1']?.allowScheduling, false);

  const badTag = await v1('PUT', '/v1/nodes/node-2', { tags: ['no spaces'] });
  assert.equal(badTag.status, 422);
  assert.equal(badTag.json['type'], 'error');
  assert.match(String(badTag.json['message']), /"no spaces"/);
  const movePath = await v1('POST', '/v1/nodes/node-2?action=diskUpdate', { disks: { 'disk-1': { path: '/elsewhere' } } });
  assert.equal(movePath.status, 422);
  assert.match(String(movePath.json['message']), /cannot change/);
  const unknownDisk = await v1('POST', '/v1/nodes/node-2?action=diskUpdate', { disks: { 'disk-9': { allowScheduling: true } } });
  assert.equal(unknownDisk.status, 422);
  assert.match(String(unknownDisk.json['message']), /no disk "disk-9"/);
  assert.equal((await v1('POST', '/v1/nodes/node-2?action=diskUpdate', { disks: [] })).status, 400);
  assert.equal((await v1('POST', '/v1/nodes/node-2?action=frobnicate', {})).status, 400);
});

test('volumes: create, list, get, attach, updateReplicaCount, detach, delete', async () => {
  const created = await v1('POST', '/v1/volumes', { name: 'vol-a', size: '2Gi', numberOfReplicas: 1, frontend: 'nbd', nodeSelector: ['ssd'], backingImage: '', fromBackup: '' });
  assert.equal(created.status, 200, JSON.stringify(created.json));
  assert.equal(created.json['type'], 'volume');
  assert.equal(created.json['size'], String(2 * 2 ** 30));
  assert.equal(created.json['numberOfReplicas'], 1);
  assert.equal(created.json['frontend'], 'nbd');
  assert.deepEqual(created.json['nodeSelector'], ['ssd']);
  assert.ok((created.json['actions'] as Json)['attach']);
  assert.ok(Array.isArray(created.json['controllers']));
  assert.ok(Array.isArray(created.json['replicas']));
  const numeric = await v1('POST', '/v1/volumes', { name: 'vol-b', size: 10 * 2 ** 20 });
  assert.equal(numeric.status, 200);
  assert.equal(numeric.json['numberOfReplicas'], 3, 'the default-replica-count setting applies');

  const list = await v1('GET', '/v1/volumes');
  assert.equal(list.json['resourceType'], 'volume');
  assert.deepEqual((list.json['data'] as Json[]).map((v) => v['name']), ['vol-a', 'vol-b']);
  const got = await v1('GET', '/v1/volumes/vol-a');
  assert.equal(got.json['name'], 'vol-a');
  assert.equal(typeof got.json['conditions'], 'object');
  assert.ok(!Array.isArray(got.json['conditions']));

  const attach = await v1('POST', '/v1/volumes/vol-a?action=attach', { hostId: 'node-1', attachedBy: 'test' });
  assert.equal(attach.status, 200, JSON.stringify(attach.json));
  assert.equal(attach.json['nodeID'], 'node-1');
  assert.ok((attach.json['actions'] as Json)['detach']);
  const stored = await client.get<Volume>('Volume', NS, 'vol-a');
  assert.equal(stored.spec?.nodeID, 'node-1');
  assert.equal(stored.spec?.lastAttachedBy, 'test');
  assert.equal((await v1('POST', '/v1/volumes/vol-a?action=attach', { hostId: 'node-1' })).status, 200, 'attaching again to the same node is fine');
  const elsewhere = await v1('POST', '/v1/volumes/vol-a?action=attach', { hostId: 'node-2' });
  assert.equal(elsewhere.status, 409);
  assert.equal(elsewhere.json['code'], 'Conflict');
  assert.match(String(elsewhere.json['message']), /attached to node "node-1"; detach it first/);
  const nowhere = await v1('POST', '/v1/volumes/vol-a?action=attach', { hostId: 'no-such-node' });
  assert.equal(nowhere.status, 422);
  assert.match(String(nowhere.json['message']), /no such node/);
  assert.equal((await v1('POST', '/v1/volumes/vol-a?action=attach', {})).status, 400);

  const count = await v1('POST', '/v1/volumes/vol-a?action=updateReplicaCount', { replicaCount: 2 });
  assert.equal(count.status, 200);
  assert.equal(count.json['numberOfReplicas'], 2);
  const zero = await v1('POST', '/v1/volumes/vol-a?action=updateReplicaCount', { replicaCount: 0 });
  assert.equal(zero.status, 422);
  assert.match(String(zero.json['message']), /numberOfReplicas/);

  const detach = await v1('POST', '/v1/volumes/vol-a?action=detach', {});
  assert.equal(detach.status, 200);
  assert.equal(detach.json['nodeID'], '');
  assert.equal((await client.get<Volume>('Volume', NS, 'vol-a')).spec?.nodeID, '');
  assert.equal((await v1('POST', '/v1/volumes/vol-a?action=frobnicate', {})).status, 400);

  for (const name of ['vol-a', 'vol-b']) {
    assert.equal((await v1('DELETE', `/v1/volumes/${name}`)).status, 204);
    await waitFor(`${name} to be gone`, async () => (await v1('GET', `/v1/volumes/${name}`)).status === 404, 30_000);
  }
});

test('volumes: bad input is refused with a clear 4xx and creates nothing', async () => {
  const before = (await client.list('Volume', { namespace: NS })).items.length;
  const badSize = await v1('POST', '/v1/volumes', { name: 'bad-size', size: '2GB' });
  assert.equal(badSize.status, 422);
  assert.equal(badSize.json['type'], 'error');
  assert.match(String(badSize.json['message']), /size: Invalid value: "2GB": must be a number of bytes or a quantity such as 2Gi/);
  assert.equal((await v1('POST', '/v1/volumes', { name: 'no-size' })).status, 422);
  const noImage = await v1('POST', '/v1/volumes', { name: 'no-image', size: '1Gi', backingImage: 'no-such-image' });
  assert.equal(noImage.status, 422);
  assert.match(String(noImage.json['message']), /backing image "no-such-image" does not exist/);
  const dots = await v1('POST', '/v1/volumes', { name: '../x', size: '1Gi' });
  assert.equal(dots.status, 422);
  assert.match(String(dots.json['message']), /name/);
  const missing = await v1('GET', '/v1/volumes/no-such-volume');
  assert.equal(missing.status, 404);
  assert.equal(missing.json['type'], 'error');
  assert.equal((await v1('POST', '/v1/volumes/no-such-volume?action=attach', { hostId: 'node-1' })).status, 404);
  assert.equal((await client.list('Volume', { namespace: NS })).items.length, before);
});

test('stratum volume: create, get, attach (and a --wait that times out naming the state), detach, delete', async () => {
  const create = await stratum(manager.url, ['volume', 'create', 'cli-vol', '--size', '1Gi', '--replicas', '1', '--frontend', 'none', '--node-selector', 'ssd,fast']);
  assert.equal(create.code, 0, create.stderr);
  assert.equal(create.stdout, 'volume.longhorn.io/cli-vol created\n');
  const v = await client.get<Volume>('Volume', NS, 'cli-vol');
  assert.equal(v.spec?.size, String(2 ** 30));
  assert.equal(v.spec?.disableFrontend, true);
  assert.equal(v.spec?.frontend, '');
  assert.deepEqual(v.spec?.nodeSelector, ['ssd', 'fast']);

  const get = await stratum(manager.url, ['volume', 'get']);
  assert.equal(get.code, 0, get.stderr);
  const [header, row] = get.stdout.trimEnd().split('\n');
  assert.match(header ?? '', /^NAME\s+STATE\s+ROBUSTNESS\s+SIZE\s+NODE\s+BACKINGIMAGE\s+ENDPOINT$/);
  assert.match(row ?? '', /^cli-vol\s.*\s1Gi/);
  const yaml = await stratum(manager.url, ['volume', 'get', 'cli-vol', '-o', 'yaml']);
  assert.equal(yaml.code, 0, yaml.stderr);
  assert.match(yaml.stdout, /^name: cli-vol$/m);
  assert.match(yaml.stdout, /^size: "1073741824"$/m);
  const names = await stratum(manager.url, ['volume', 'get', '-o', 'name']);
  assert.equal(names.stdout, 'volume.longhorn.io/cli-vol\n');
  const xml = await stratum(manager.url, ['volume', 'get', '-o', 'xml']);
  assert.equal(xml.code, 1);
  assert.match(xml.stderr, /unknown output format "xml": use json, yaml or name/);

  const attach = await stratum(manager.url, ['volume', 'attach', 'cli-vol', '--node', 'node-1', '--wait', '--timeout', '2s']);
  assert.equal(attach.code, 1);
  assert.equal(attach.stdout, '', 'nothing on stdout unless there is an endpoint');
  assert.match(attach.stderr, /timed out after 2s waiting for volume "cli-vol" to be attached on node-1 with its frontend up: state /);
  assert.equal((await client.get<Volume>('Volume', NS, 'cli-vol')).spec?.nodeID, 'node-1');
  const other = await stratum(manager.url, ['volume', 'attach', 'cli-vol', '--node', 'node-2']);
  assert.equal(other.code, 1);
  assert.match(other.stderr, /^error: .*attached to node "node-1"; detach it first\n$/);

  const detach = await stratum(manager.url, ['volume', 'detach', 'cli-vol']);
  assert.equal(detach.code, 0, detach.stderr);
  assert.equal((await client.get<Volume>('Volume', NS, 'cli-vol')).spec?.nodeID, '');
  const bad = await stratum(manager.url, ['volume', 'create', 'cli-bad', '--size', 'lots']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /size: Invalid value: "lots"/);

  const del = await stratum(manager.url, ['volume', 'delete', 'cli-vol', '--wait', '--timeout', '30s']);
  assert.equal(del.code, 0, del.stderr);
  assert.equal(del.stdout, 'volume.longhorn.io/cli-vol deleted\n');
  const gone = await stratum(manager.url, ['volume', 'get', 'cli-vol']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /not found/);
});
