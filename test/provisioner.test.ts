// End-to-end: the `driver.longhorn.io` provisioner in a real `stratum manager`, driven with the real kubectl:
// claims bind to a PV and a Longhorn Volume, reclaim Delete and Retain, WaitForFirstConsumer, a backing image
// created on demand from the class, and a class whose data source differs from the image's.
// (Pods using the claims, with nodes and mounts, are test/workloads-e2e.test.ts.)

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { hasTool, kubectl, ManagerProcess, tempDir, waitFor } from './helpers/processes.js';
import { authFor } from './helpers/credentials.js';

const skip = hasTool('kubectl') ? false : 'kubectl is not installed';
const dir = tempDir('provisioner');
const manager = new ManagerProcess(join(dir.path, 'manager'));

before(async () => {
  if (skip) return;
  await manager.start();
  // The on-demand image's URL is a loopback address, refused by default.
  const res = await fetch(`${manager.url}/v1/settings/allow-private-download-urls`, { method: 'PUT', headers: { 'content-type': 'application/json', ...authFor(manager.url) }, body: JSON.stringify({ value: 'true' }) });
  assert.ok(res.ok, await res.text());
});

after(async () => {
  await manager.stop();
  dir.remove();
});

const get = async <T>(path: string): Promise<T | undefined> => {
  const res = await fetch(`${manager.url}${path}`, { headers: authFor(manager.url) });
  return res.status === 404 ? undefined : ((await res.json()) as T);
};
type Obj = { metadata: { name: string; annotations?: Record<string, string> }; spec?: Record<string, unknown>; status?: Record<string, unknown> };
const pvc = (name: string) => get<Obj>(`/api/v1/namespaces/default/persistentvolumeclaims/${name}`);
const pv = (name: string) => get<Obj>(`/api/v1/persistentvolumes/${name}`);
const volume = (name: string) => get<Obj>(`/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes/${name}`);
const image = (name: string) => get<Obj>(`/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backingimages/${name}`);
const eventsOf = async (name: string) =>
  ((await get<{ items: { reason: string; message: string }[] }>(`/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=${name}`))?.items ?? []);

const klass = (name: string, params: Record<string, string>, extra = '') =>
  `apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: ${name}}\nprovisioner: driver.longhorn.io\n${extra}parameters: ${JSON.stringify(params)}\n`;
const claim = (name: string, cls: string, size = '32Mi') =>
  `apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: ${name}, namespace: default}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: ${cls}\n  resources: {requests: {storage: ${size}}}\n`;
const apply = async (yaml: string) => {
  const r = await kubectl(manager.url, ['apply', '-f', '-'], yaml);
  assert.equal(r.code, 0, r.stderr);
};

test('a claim binds to a PV and a Volume of its size and replicas; deleting it (reclaim Delete) removes both', { skip }, async () => {
  await apply(klass('plain', { numberOfReplicas: '2', staleReplicaTimeout: '30' }));
  await apply(claim('data', 'plain'));
  const bound = await waitFor('claim data bound', async () => {
    const c = await pvc('data');
    return c?.status?.['phase'] === 'Bound' ? c : undefined;
  }, 30_000);
  const name = String(bound.spec?.['volumeName']);
  assert.match(name, /^pvc-[0-9a-f-]{36}$/);
  assert.deepEqual(bound.status?.['capacity'], { storage: '32Mi' });
  const table = await kubectl(manager.url, ['get', 'pvc', 'data', '-n', 'default']);
  assert.match(table.stdout, new RegExp(`data\\s+Bound\\s+${name}\\s+32Mi\\s+RWO\\s+plain`));
  const p = await pv(name);
  assert.equal(p?.status?.['phase'], 'Bound');
  assert.equal(p?.spec?.['persistentVolumeReclaimPolicy'], 'Delete');
  assert.deepEqual((p?.spec?.['claimRef'] as { name: string }).name, 'data');
  const v = await volume(name);
  assert.equal(v?.spec?.['size'], String(32 * 1024 * 1024));
  assert.equal(v?.spec?.['numberOfReplicas'], 2);
  assert.equal(v?.spec?.['staleReplicaTimeout'], 30);

  const del = await kubectl(manager.url, ['delete', 'pvc', 'data', '-n', 'default', '--wait=true', '--timeout=60s']);
  assert.equal(del.code, 0, del.stderr);
  await waitFor('volume and PV removed', async () => (!(await volume(name)) && !(await pv(name))) || undefined, 60_000);
});

test('reclaim Retain keeps the PV Released and the Volume', { skip }, async () => {
  await apply(klass('keep', { numberOfReplicas: '1' }, 'reclaimPolicy: Retain\n'));
  await apply(claim('kept', 'keep'));
  const c = await waitFor('claim kept bound', async () => ((await pvc('kept'))?.status?.['phase'] === 'Bound' ? pvc('kept') : undefined), 30_000);
  const name = String(c?.spec?.['volumeName']);
  assert.equal((await kubectl(manager.url, ['delete', 'pvc', 'kept', '-n', 'default'])).code, 0);
  await waitFor('PV released', async () => (await pv(name))?.status?.['phase'] === 'Released' || undefined, 30_000);
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal((await pv(name))?.status?.['phase'], 'Released');
  assert.ok(await volume(name), 'the Volume of a Retain PV stays');
});

test('WaitForFirstConsumer: the claim waits with an Event until a node is selected for it', { skip }, async () => {
  await apply(klass('late', { numberOfReplicas: '1' }, 'volumeBindingMode: WaitForFirstConsumer\n'));
  await apply(claim('late-claim', 'late'));
  await waitFor('WaitForFirstConsumer event', async () => (await eventsOf('late-claim')).some((e) => e.reason === 'WaitForFirstConsumer') || undefined, 30_000);
  assert.equal((await pvc('late-claim'))?.status?.['phase'], 'Pending');
  const ann = await kubectl(manager.url, ['annotate', 'pvc', 'late-claim', '-n', 'default', 'volume.kubernetes.io/selected-node=node-1']);
  assert.equal(ann.code, 0, ann.stderr);
  await waitFor('late-claim bound', async () => (await pvc('late-claim'))?.status?.['phase'] === 'Bound' || undefined, 30_000);
});

test('a class creates its missing backing image from its data source; a class whose source differs leaves the claim Pending with an Event', { skip }, async () => {
  const url = 'http://127.0.0.1:9/parrot.qcow2';
  await apply(klass('on-demand', { backingImage: 'bi-demand', backingImageDataSourceType: 'download', backingImageDataSourceParameters: JSON.stringify({ url }) }));
  await apply(claim('from-image', 'on-demand'));
  const bi = await waitFor('backing image created', () => image('bi-demand'), 30_000);
  assert.equal(bi.spec?.['sourceType'], 'download');
  assert.deepEqual(bi.spec?.['sourceParameters'], { url });
  await waitFor('BackingImageCreated event', async () => (await eventsOf('from-image')).some((e) => e.reason === 'BackingImageCreated') || undefined, 30_000);

  const other = 'http://127.0.0.1:9/other.qcow2';
  await apply(klass('differs', { backingImage: 'bi-demand', backingImageDataSourceType: 'download', backingImageDataSourceParameters: JSON.stringify({ url: other }) }));
  await apply(claim('mismatched', 'differs'));
  const ev = await waitFor('mismatch event', async () => (await eventsOf('mismatched')).find((e) => e.reason === 'BackingImageMismatch'), 30_000);
  assert.match(ev.message, /backingImageDataSourceParameters\.url is "http:\/\/127\.0\.0\.1:9\/other\.qcow2" but backing image "bi-demand" has "http:\/\/127\.0\.0\.1:9\/parrot\.qcow2"/);
  assert.equal((await pvc('mismatched'))?.status?.['phase'], 'Pending');
  assert.deepEqual((await image('bi-demand'))?.spec?.['sourceParameters'], { url }, 'the image is not touched');
});
