// End-to-end: the workload kinds (StorageClass, PersistentVolumeClaim, PersistentVolume, StatefulSet, Service)
// with the real kubectl against a real `stratum manager`: the seed's scalability manifests apply unchanged,
// tables print, `kubectl scale` goes through the scale subresource, and the Kubernetes rules hold.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { hasTool, kubectl, ManagerProcess, REPO, tempDir } from './helpers/processes.js';
import { authFor } from './helpers/credentials.js';

const CLASSES = join(REPO, 'test', 'fixtures', 'seed-scale-storageclasses.yaml');
const WORKLOAD = join(REPO, 'test', 'fixtures', 'seed-scale-statefulset.yaml');
const skip = hasTool('kubectl') ? false : 'kubectl is not installed';

const dir = tempDir('workload-kinds');
const manager = new ManagerProcess(join(dir.path, 'manager'));

before(async () => {
  if (!skip) await manager.start();
});

after(async () => {
  await manager.stop();
  dir.remove();
});

test('the seed StorageClasses, Service and StatefulSet apply unchanged, re-apply unchanged, and print as tables', { skip }, async () => {
  const sc = await kubectl(manager.url, ['apply', '-f', CLASSES]);
  assert.equal(sc.code, 0, sc.stderr);
  assert.match(sc.stdout, /storageclass\.storage\.k8s\.io\/longhorn-test5 created/);
  const sts = await kubectl(manager.url, ['apply', '-f', WORKLOAD]);
  assert.equal(sts.code, 0, sts.stderr);
  assert.match(sts.stdout, /service\/nginx created/);
  assert.match(sts.stdout, /statefulset\.apps\/bi-scalability-test created/);
  const again = await kubectl(manager.url, ['apply', '-f', WORKLOAD]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /statefulset\.apps\/bi-scalability-test (unchanged|configured)/);

  const classes = await kubectl(manager.url, ['get', 'sc']);
  assert.equal(classes.code, 0, classes.stderr);
  assert.match(classes.stdout, /NAME\s+PROVISIONER\s+RECLAIMPOLICY\s+VOLUMEBINDINGMODE\s+ALLOWVOLUMEEXPANSION\s+AGE/);
  assert.match(classes.stdout, /longhorn-test1\s+driver\.longhorn\.io\s+Delete\s+Immediate\s+true/);
  const svc = await kubectl(manager.url, ['get', 'svc', '-n', 'default']);
  assert.match(svc.stdout, /nginx\s+NodePort\s+<none>\s+<none>\s+80\/TCP/);
  const set = await kubectl(manager.url, ['get', 'sts', '-n', 'default']);
  assert.match(set.stdout, /bi-scalability-test\s+\d+\/25/);
});

test('kubectl scale changes spec.replicas through the scale subresource', { skip }, async () => {
  const scaled = await kubectl(manager.url, ['scale', 'statefulset', 'bi-scalability-test', '-n', 'default', '--replicas=2']);
  assert.equal(scaled.code, 0, scaled.stderr);
  assert.match(scaled.stdout, /scaled/);
  const replicas = await kubectl(manager.url, ['get', 'sts', 'bi-scalability-test', '-n', 'default', '-o', 'jsonpath={.spec.replicas}']);
  assert.equal(replicas.stdout, '2');
  const res = await fetch(`${manager.url}/apis/apps/v1/namespaces/default/statefulsets/bi-scalability-test/scale`, { headers: authFor(manager.url) });
  const scale = (await res.json()) as { kind: string; spec: { replicas: number }; status: { selector: string } };
  assert.equal(scale.kind, 'Scale');
  assert.equal(scale.spec.replicas, 2);
  assert.equal(scale.status.selector, 'app=nginx');
  const bad = await fetch(`${manager.url}/apis/apps/v1/namespaces/default/statefulsets/bi-scalability-test/scale`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/merge-patch+json', ...authFor(manager.url) },
    body: JSON.stringify({ spec: { replicas: -1 } }),
  });
  assert.equal(bad.status, 422);
});

test('claims get pvc-protection and Pending; PVs are cluster-scoped with pv-protection; class parameters are immutable', { skip }, async () => {
  const claim = 'apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c1, namespace: default}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: no-such-class\n  resources: {requests: {storage: 32Mi}}\n';
  assert.equal((await kubectl(manager.url, ['apply', '-f', '-'], claim)).code, 0);
  const pvc = await kubectl(manager.url, ['get', 'pvc', 'c1', '-n', 'default', '-o', 'jsonpath={.metadata.finalizers} {.status.phase}']);
  assert.equal(pvc.stdout, '["kubernetes.io/pvc-protection"] Pending');
  const table = await kubectl(manager.url, ['get', 'pvc', '-n', 'default']);
  assert.match(table.stdout, /NAME\s+STATUS\s+VOLUME\s+CAPACITY\s+ACCESS MODES\s+STORAGECLASS\s+AGE/);
  const pv = 'apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: manual-pv}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  csi: {driver: driver.longhorn.io, volumeHandle: vol-x}\n';
  assert.equal((await kubectl(manager.url, ['apply', '-f', '-'], pv)).code, 0);
  const pvs = await kubectl(manager.url, ['get', 'pv']);
  assert.match(pvs.stdout, /manual-pv\s+1Gi\s+RWO\s+Retain/);
  const fin = await kubectl(manager.url, ['get', 'pv', 'manual-pv', '-o', 'jsonpath={.metadata.finalizers}']);
  assert.equal(fin.stdout, '["kubernetes.io/pv-protection"]');
  const patch = await kubectl(manager.url, ['patch', 'sc', 'longhorn-test1', '--type', 'merge', '-p', '{"parameters":{"numberOfReplicas":"1"}}']);
  assert.notEqual(patch.code, 0);
  assert.match(patch.stderr, /parameters: Invalid value.*field is immutable/);
  const badMount = 'apiVersion: v1\nkind: Pod\nmetadata: {name: p1, namespace: default}\nspec:\n  containers: [{name: c, image: x, volumeMounts: [{name: nope, mountPath: /d}]}]\n';
  const refused = await kubectl(manager.url, ['apply', '-f', '-'], badMount);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /spec\.containers\[0\]\.volumeMounts\[0\]\.name: Not found: "nope"/);
});
