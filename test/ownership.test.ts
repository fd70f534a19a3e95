// End-to-end: finalizers and ownerReferences with cascading deletion (background, foreground, orphan), served by a
// real `stratum manager` whose garbage collector does the cascading; plus the stratum CLI's get/describe/delete
// and the /metrics endpoint.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { KubeObject } from '../src/api/meta.js';
import { HttpStore } from '../src/client/http-store.js';
import { isNotFound } from '../src/store/errors.js';
import { freePort, ManagerProcess, stratum, tempDir, waitFor } from './helpers/processes.js';

const NS = 'longhorn-system';
const dir = tempDir('ownership');
const manager = new ManagerProcess(join(dir.path, 'manager'));
let client: HttpStore;

before(async () => {
  await manager.start();
  client = new HttpStore({ server: manager.url, token: manager.token });
});
after(async () => {
  await manager.stop();
  dir.remove();
});

// Leases have no controller of their own, so only the garbage collector acts on them here.
async function owner(name: string): Promise<KubeObject> {
  const { object } = await client.create({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace: NS },
    spec: { holderIdentity: 'owner' },
  });
  return object;
}

async function dependent(name: string, of: KubeObject): Promise<KubeObject> {
  const { object } = await client.create({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: `${name}-dep`,
      namespace: NS,
      ownerReferences: [{ apiVersion: of.apiVersion, kind: of.kind, name: of.metadata.name ?? '', uid: of.metadata.uid ?? '', blockOwnerDeletion: true }],
    },
    spec: { holderIdentity: 'dependent' },
  });
  return object;
}

const gone = (kind: string, name: string) => async () => {
  try {
    await client.get(kind, NS, name);
    return false;
  } catch (err) {
    return isNotFound(err);
  }
};

test('deleting an owner (background) deletes its dependents', async () => {
  const o = await owner('bg-owner');
  await dependent('bg-owner', o);
  const res = await client.delete('Lease', NS, 'bg-owner');
  assert.equal(res.deleted, true);
  await waitFor('the dependent to be collected', gone('Lease', 'bg-owner-dep'));
});

test('foreground deletion keeps the owner until its dependents are gone', async () => {
  const o = await owner('fg-owner');
  const d = structuredClone(await dependent('fg-owner', o));
  // A finalizer on the dependent holds it, and so the owner, in deletion.
  d.metadata.finalizers = ['test.stratum.io/hold'];
  await client.update(d);
  const res = await client.delete('Lease', NS, 'fg-owner', { propagationPolicy: 'Foreground' });
  assert.equal(res.deleted, false);
  await waitFor('the dependent to be marked for deletion', async () => !!(await client.get('Lease', NS, 'fg-owner-dep')).metadata.deletionTimestamp);
  const held = await client.get('Lease', NS, 'fg-owner');
  assert.ok(held.metadata.deletionTimestamp);
  assert.deepEqual(held.metadata.finalizers, ['foregroundDeletion']);
  await client.patch('Lease', NS, 'fg-owner-dep', 'merge', { metadata: { finalizers: null } });
  await waitFor('the owner to go once its dependent is gone', gone('Lease', 'fg-owner'));
});

test('orphan deletion leaves dependents without the owner reference', async () => {
  const o = await owner('or-owner');
  await dependent('or-owner', o);
  await client.delete('Lease', NS, 'or-owner', { propagationPolicy: 'Orphan' });
  await waitFor('the owner to go', gone('Lease', 'or-owner'));
  const d = await client.get('Lease', NS, 'or-owner-dep');
  assert.equal(d.metadata.ownerReferences, undefined);
});

test('stratum get/describe/delete with short names; errors are one line', async () => {
  await client.create({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImage',
    metadata: { name: 'cli-bi', namespace: NS },
    spec: { sourceType: 'download', sourceParameters: { url: 'https://example.com/o.raw' } },
  });
  const table = await stratum(manager.url, ['get', 'bi']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^NAME\s+UUID\s+SOURCETYPE/m);
  assert.match(table.stdout, /^cli-bi\s+[0-9a-f]{8}\s+download/m);
  const yaml = await stratum(manager.url, ['get', 'lhbi', 'cli-bi', '-o', 'yaml']);
  assert.match(yaml.stdout, /kind: BackingImage/);
  const desc = await stratum(manager.url, ['describe', 'bi', 'cli-bi']);
  assert.equal(desc.code, 0, desc.stderr);
  assert.match(desc.stdout, /^Name:\s+cli-bi$/m);
  assert.match(desc.stdout, /^Events:/m);
  const del = await stratum(manager.url, ['delete', 'bi', 'cli-bi']);
  assert.equal(del.code, 0, del.stderr);
  assert.match(del.stdout, /backingimage\.longhorn\.io "cli-bi" deleted/);
  const missing = await stratum(manager.url, ['get', 'bi', 'cli-bi']);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'error: backingimages.longhorn.io "cli-bi" not found\n');
  const unknown = await stratum(manager.url, ['get', 'frobs']);
  assert.equal(unknown.stderr, 'error: the server doesn\'t have a resource type "frobs"\n');
  const down = await stratum(`http://127.0.0.1:${await freePort()}`, ['get', 'bi']);
  assert.match(down.stderr, /^error: cannot reach the API server .*ECONNREFUSED\n$/);
});

test('/metrics exposes controller queue depth and reconcile latency', async () => {
  const text = await (await fetch(`${manager.url}/metrics`, { headers: { authorization: `Bearer ${manager.token}` } })).text();
  assert.match(text, /garbage-collector|garbage_collector/);
  assert.match(text, /depth/);
  assert.match(text, /reconcile/);
});
