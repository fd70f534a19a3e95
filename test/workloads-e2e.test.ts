// End-to-end: the seed's scalability manifests on `stratum up` (manager + three node agents), with the real
// kubectl: its ten BackingImages (URL rewritten to a local server), its five StorageClasses and its Service and
// StatefulSet. Size: 5 pods × the seed's 10 claims = 50 volumes of 3 replicas (`replicas: 25` rewritten to 5;
// the full 25 × 10 is the scale benchmark's job). Checked with real peers: mount tables (findmnt), losetup,
// HTTP through the pods. Tests share the cluster and run in order.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { killRecordedCluster, killRecordedPods, type Proc, startUp } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { freePort, skipWithoutRootAnd, kubectl, kubectlArgs, REPO, run, tempDir, waitFor } from './helpers/processes.js';
import { ext4Qcow2 } from './helpers/ext4-image.js';
import { authFor } from './helpers/credentials.js';

const PODS = 5;
const CLAIMS = 10;
const skip = skipWithoutRootAnd(['qemu-img', 'mkfs.ext4', 'mount', 'findmnt', 'losetup', 'nbdfuse', 'kubectl']);
const SEED_URL = 'https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2';
const PAGE = 'hello from the parrot image\n';

const dir = tempDir('workloads');
const files = tempDir('workload-images');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let url = '';
/** Every Longhorn volume name seen, for the final checks. */
const seenVolumes = new Set<string>();

const k = async (args: string[], input?: string) => {
  const r = await kubectl(url, args, input);
  assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
/** `kubectl rollout status`, which may legitimately take minutes (the helper's kubectl stops at 30 s). */
const rolloutStatus = (timeoutS: number) =>
  run('kubectl', kubectlArgs(url, ['rollout', 'status', 'statefulset/bi-scalability-test', '-n', 'default', `--timeout=${timeoutS}s`]), {
    env: { ...process.env, KUBECONFIG: '/dev/null' },
    timeoutMs: (timeoutS + 30) * 1000,
  });
const getJson = async <T>(path: string): Promise<T> => (await (await fetch(`${url}${path}`, { headers: authFor(url) })).json()) as T;
interface PodJson { metadata: { name: string; annotations?: Record<string, string>; uid: string }; spec: { nodeName?: string }; status?: { phase?: string } }
const pod = (name: string) => getJson<PodJson>(`/api/v1/namespaces/default/pods/${name}`);
const podPort = (p: PodJson) => Object.values(JSON.parse(p.metadata.annotations?.['stratum.io/ports'] ?? '{}') as Record<string, number>)[0];
/** An HTTP request to a pod, retried while nothing listens yet: the seed's pods have no readiness probe, so Running
 *  comes before the server has bound its port. */
const podFetch = (port: number | undefined, path: string, init: RequestInit = {}) =>
  waitFor(`pod port ${port ?? '?'} answers ${init.method ?? 'GET'} ${path}`, async () => {
    try {
      return await fetch(`http://127.0.0.1:${port ?? 0}${path}`, init);
    } catch {
      return undefined;
    }
  }, 30_000);
const eventsOf = async (name: string) => (await getJson<{ items: { reason: string; message: string }[] }>(`/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=${name}`)).items;

/** Mount points under the test's directory (findmnt: the kernel's table, not ours). */
async function mountsUnder(root: string): Promise<string[]> {
  const r = await run('findmnt', ['-rn', '-o', 'TARGET']);
  return r.stdout.split('\n').filter((l) => l.startsWith(root));
}

async function makeImage(): Promise<void> {
  const content = join(files.path, 'content');
  mkdirSync(content, { recursive: true });
  writeFileSync(join(content, 'index.html'), PAGE);
  await ext4Qcow2(content, files.path, 32 * 1024 * 1024, join(files.path, 'parrot.qcow2'));
}

before(async () => {
  if (skip) return;
  await makeImage();
  web = await staticServer(files.path);
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  const res = await fetch(`${url}/v1/settings/allow-private-download-urls`, { method: 'PUT', headers: { 'content-type': 'application/json', ...authFor(url) }, body: JSON.stringify({ value: 'true' }) });
  assert.ok(res.ok, await res.text());
});

after(async () => {
  if (up) {
    // A failed test may leave pods (and their mounts): the cluster's Ctrl-C unmounts them; lazily unmount any rest
    // so that removing the directory can never reach into a volume.
    await up.stop('SIGINT', 120_000);
    for (const m of (await mountsUnder(dir.path)).reverse()) await run('umount', ['-l', m]);
  }
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

test(`the seed's manifests run: ${PODS} pods × ${CLAIMS} claims, every pod Running with its volumes mounted and the image's files served`, { skip, timeout: 900_000 }, async () => {
  const images = readFileSync(join(REPO, 'test', 'fixtures', 'seed-backing-images.yaml'), 'utf8').replaceAll(SEED_URL, `${web?.url ?? ''}/parrot.qcow2`);
  await k(['apply', '-f', '-'], images);
  await k(['apply', '-f', join(REPO, 'test', 'fixtures', 'seed-scale-storageclasses.yaml')]);
  const workload = readFileSync(join(REPO, 'test', 'fixtures', 'seed-scale-statefulset.yaml'), 'utf8').replace('replicas: 25', `replicas: ${PODS}`);
  await k(['apply', '-f', '-'], workload);
  const status = await rolloutStatus(800);
  assert.equal(status.code, 0, `${status.stdout}${status.stderr}`);
  assert.match(status.stdout, new RegExp(`roll out complete: ${PODS} new pods`));

  const claims = await getJson<{ items: { metadata: { name: string }; spec: { volumeName?: string }; status?: { phase?: string } }[] }>('/api/v1/namespaces/default/persistentvolumeclaims');
  assert.equal(claims.items.length, PODS * CLAIMS);
  for (const c of claims.items) {
    assert.equal(c.status?.phase, 'Bound', c.metadata.name);
    seenVolumes.add(c.spec.volumeName ?? '');
  }
  for (let i = 0; i < PODS; i++) {
    const p = await pod(`bi-scalability-test-${i}`);
    assert.equal(p.status?.phase, 'Running');
    const mine = (await mountsUnder(dir.path)).filter((m) => m.includes(`default_bi-scalability-test-${i}_${p.metadata.uid}`));
    assert.equal(mine.length, CLAIMS, `pod ${i} has its ${CLAIMS} volumes mounted: ${mine.join(', ')}`);
    // The volume of www1 starts as the backing image's filesystem: the pod serves its page.
    const res = await podFetch(podPort(p), '/');
    assert.equal(await res.text(), PAGE);
  }
  const table = await k(['get', 'sts', '-n', 'default']);
  assert.match(table, new RegExp(`bi-scalability-test\\s+${PODS}/${PODS}`));
});

test('a file written through a pod is read back after the pod is recreated on another node', { skip, timeout: 600_000 }, async () => {
  const before = await pod('bi-scalability-test-0');
  const port = podPort(before);
  const put = await podFetch(port, '/html5/note.txt', { method: 'PUT', body: 'written through the first pod\n' });
  assert.equal(put.status, 201);
  const other = ['node-1', 'node-2', 'node-3'].find((n) => n !== before.spec.nodeName) ?? '';
  // A nodeSelector change is a new pod template: the rolling update recreates each pod on that node.
  await k(['patch', 'statefulset', 'bi-scalability-test', '-n', 'default', '--type', 'merge', '-p', JSON.stringify({ spec: { template: { spec: { nodeSelector: { 'kubernetes.io/hostname': other } } } } })]);
  const status = await rolloutStatus(500);
  assert.equal(status.code, 0, `${status.stdout}${status.stderr}`);
  const after = await waitFor('pod 0 on the other node', async () => {
    const p = await pod('bi-scalability-test-0');
    return p.spec.nodeName === other && p.status?.phase === 'Running' && p.metadata.uid !== before.metadata.uid ? p : undefined;
  }, 120_000);
  const res = await podFetch(podPort(after), '/html5/note.txt');
  assert.equal(await res.text(), 'written through the first pod\n');
  assert.deepEqual((await mountsUnder(join(dir.path, before.spec.nodeName ?? ''))).filter((m) => m.includes(before.metadata.uid)), [], 'nothing of the old pod stays mounted');
});

test('a class for a missing image creates it; a class whose source differs keeps its claim Pending with an Event until fixed', { skip, timeout: 600_000 }, async () => {
  const klass = (name: string, file: string) =>
    `apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: ${name}}\nprovisioner: driver.longhorn.io\nparameters:\n  numberOfReplicas: "2"\n  backingImage: bi-on-demand\n  backingImageDataSourceType: download\n  backingImageDataSourceParameters: '{"url": "${web?.url ?? ''}/${file}"}'\n`;
  const claimAndPod = (name: string, cls: string) =>
    `apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: ${name}, namespace: default}\nspec: {accessModes: [ReadWriteOnce], storageClassName: ${cls}, resources: {requests: {storage: 32Mi}}}\n---\n` +
    `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: default}\nspec:\n  containers: [{name: web, image: "registry.k8s.io/nginx-slim:0.8", ports: [{containerPort: 80, name: web}], volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]}]\n  volumes: [{name: www, persistentVolumeClaim: {claimName: ${name}}}]\n`;
  await k(['apply', '-f', '-'], klass('on-demand', 'parrot.qcow2') + '---\n' + claimAndPod('fresh', 'on-demand'));
  const running = await waitFor('pod fresh Running', async () => ((await pod('fresh')).status?.phase === 'Running' ? pod('fresh') : undefined), 300_000);
  assert.equal(await (await podFetch(podPort(running), '/')).text(), PAGE, 'the pod sees the image files');
  const image = await getJson<{ spec: { sourceParameters: { url: string } } }>('/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backingimages/bi-on-demand');
  assert.equal(image.spec.sourceParameters.url, `${web?.url ?? ''}/parrot.qcow2`);

  await k(['apply', '-f', '-'], klass('differs', 'other.qcow2') + '---\n' + claimAndPod('mismatch', 'differs'));
  const ev = await waitFor('mismatch event', async () => (await eventsOf('mismatch')).find((e) => e.reason === 'BackingImageMismatch'), 60_000);
  assert.match(ev.message, /backingImageDataSourceParameters\.url is ".*\/other\.qcow2" but backing image "bi-on-demand" has ".*\/parrot\.qcow2"/);
  const pending = await k(['get', 'pvc', 'mismatch', '-n', 'default', '-o', 'jsonpath={.status.phase}']);
  assert.equal(pending, 'Pending');
  // Class parameters are immutable (as in Kubernetes): fixing the class is deleting and re-creating it.
  await k(['delete', 'storageclass', 'differs']);
  await k(['apply', '-f', '-'], klass('differs', 'parrot.qcow2'));
  await waitFor('pod mismatch Running after the class was fixed', async () => (await pod('mismatch')).status?.phase === 'Running' || undefined, 300_000);
  for (const name of ['fresh', 'mismatch']) {
    seenVolumes.add(await k(['get', 'pvc', name, '-n', 'default', '-o', 'jsonpath={.spec.volumeName}']));
    await k(['delete', 'pod', name, '-n', 'default', '--timeout=120s']);
  }
});

test('a claim of a class with allowVolumeExpansion grows: Resizing while its pod runs, then the volume and its ext4 filesystem', { skip, timeout: 600_000 }, async () => {
  const MiB = 1024 * 1024;
  await k(['apply', '-f', '-'], `apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: growable}\nprovisioner: driver.longhorn.io\nallowVolumeExpansion: true\nparameters:\n  numberOfReplicas: "2"\n  backingImage: bi-on-demand\n`);
  const claimAndPod = `apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: grow, namespace: default}\nspec: {accessModes: [ReadWriteOnce], storageClassName: growable, resources: {requests: {storage: 32Mi}}}\n---\n` +
    `apiVersion: v1\nkind: Pod\nmetadata: {name: grow, namespace: default}\nspec:\n  containers: [{name: web, image: "registry.k8s.io/nginx-slim:0.8", ports: [{containerPort: 80, name: web}], volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]}]\n  volumes: [{name: www, persistentVolumeClaim: {claimName: grow}}]\n`;
  const podOnly = claimAndPod.split('---\n')[1] ?? '';
  /** The filesystem size seen by the pod's mount (statfs through df: the kernel's view, not ours). */
  const fsBytes = async (p: PodJson): Promise<number> => {
    const mount = (await mountsUnder(dir.path)).find((m) => m.includes(p.metadata.uid));
    assert.ok(mount, `pod ${p.metadata.name} has its volume mounted`);
    const df = await run('df', ['-B1', '--output=size', mount]);
    return Number(df.stdout.trim().split('\n').pop());
  };
  await k(['apply', '-f', '-'], claimAndPod);
  const first = await waitFor('pod grow Running', async () => ((await pod('grow')).status?.phase === 'Running' ? pod('grow') : undefined), 300_000);
  const small = await fsBytes(first);
  assert.ok(small < 32 * MiB, `the filesystem starts within the 32 MiB claim (${small} bytes)`);
  seenVolumes.add(await k(['get', 'pvc', 'grow', '-n', 'default', '-o', 'jsonpath={.spec.volumeName}']));

  // The pod holds the volume: the claim waits, saying why.
  await k(['patch', 'pvc', 'grow', '-n', 'default', '--type', 'merge', '-p', JSON.stringify({ spec: { resources: { requests: { storage: '96Mi' } } } })]);
  const waiting = await waitFor('the claim Resizing while its pod runs', async () => {
    const c = await getJson<{ status?: { conditions?: { type: string; status: string; message?: string }[] } }>('/api/v1/namespaces/default/persistentvolumeclaims/grow');
    return c.status?.conditions?.find((x) => x.type === 'Resizing' && x.status === 'True');
  }, 60_000);
  assert.match(waiting.message ?? '', /detach/);
  await k(['delete', 'pod', 'grow', '-n', 'default', '--timeout=120s']);
  await waitFor('the claim has the new capacity', async () => (await k(['get', 'pvc', 'grow', '-n', 'default', '-o', 'jsonpath={.status.capacity.storage}'])) === '96Mi' || undefined, 120_000);

  // A new pod: the volume is attached at its new size and the filesystem grown to it, with the image's files.
  await k(['apply', '-f', '-'], podOnly);
  const second = await waitFor('pod grow Running again', async () => {
    const p = await pod('grow');
    return p.status?.phase === 'Running' && p.metadata.uid !== first.metadata.uid ? p : undefined;
  }, 300_000);
  const big = await fsBytes(second);
  assert.ok(big > 80 * MiB && big <= 96 * MiB, `the filesystem grew to the volume (${small} → ${big} bytes)`);
  assert.equal(await (await podFetch(podPort(second), '/')).text(), PAGE, 'the image files are still there');
  const conditions = await k(['get', 'pvc', 'grow', '-n', 'default', '-o', 'jsonpath={.status.conditions}']);
  assert.doesNotMatch(conditions, /Resizing/, 'the condition is cleared');
  await k(['delete', 'pod', 'grow', '-n', 'default', '--timeout=120s']);
});

test('deleting the StatefulSet and the claims removes every volume, replica directory and unused image copy; nothing stays mounted or looped', { skip, timeout: 600_000 }, async () => {
  await fetch(`${url}/v1/settings/backing-image-cleanup-wait-interval`, { method: 'PUT', headers: { 'content-type': 'application/json', ...authFor(url) }, body: JSON.stringify({ value: '0' }) });
  await k(['delete', 'statefulset', 'bi-scalability-test', '-n', 'default', '--timeout=300s']);
  await k(['delete', 'pvc', '--all', '-n', 'default', '--timeout=300s']);
  await waitFor('every Volume and PV gone', async () => {
    const v = await getJson<{ items: unknown[] }>('/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes');
    const pv = await getJson<{ items: unknown[] }>('/api/v1/persistentvolumes');
    return (v.items.length === 0 && pv.items.length === 0) || undefined;
  }, 300_000);
  await waitFor('every replica directory removed', async () => {
    const left = ['node-1', 'node-2', 'node-3'].flatMap((n) => {
      const d = join(dir.path, n, 'disk-1', 'replicas');
      return existsSync(d) ? readdirSync(d) : [];
    });
    return left.length === 0 || undefined;
  }, 120_000);
  assert.deepEqual(await mountsUnder(dir.path), []);
  const loops = (await run('losetup', ['-a'])).stdout;
  for (const v of seenVolumes) {
    assert.ok(!loops.includes(`${v}.fuse`), `no loop device of ${v}`);
    assert.ok(!existsSync(`/dev/longhorn/${v}`), `no device of ${v}`);
  }
  await waitFor('unused image copies cleaned to one per image', async () => {
    const bis = await getJson<{ items: { metadata: { name: string }; status?: { diskFileStatusMap?: Record<string, unknown> } }[] }>('/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backingimages');
    return bis.items.every((b) => Object.keys(b.status?.diskFileStatusMap ?? {}).length <= 1) || undefined;
  }, 180_000);
});
