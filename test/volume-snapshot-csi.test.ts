// End-to-end: snapshot.storage.k8s.io VolumeSnapshots of Longhorn claims on `stratum up`, through the Kubernetes
// API. A claim's volume gets data; a VolumeSnapshot of class type bi exports it as a backing image (its content's
// handle bi://backing?…); a claim with that VolumeSnapshot as dataSource is provisioned on the image and reads the
// same bytes; a pre-provisioned content with a bi:// download handle creates its image on demand and restores too;
// a type snap VolumeSnapshot is a Longhorn snapshot, and a claim restored from it (kubectl) is a volume clone
// (snap://) reading the same bytes, as is a claim cloned from the source claim (vol://); a clone smaller than its
// source stays Pending with an Event; deleting the VolumeSnapshots deletes their image and snapshot.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../src/frontend/nbd/index.js';
import { mulberry32 } from '../src/util/prng.js';
import { killRecordedCluster, Proc, startUp } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { freePort, kubectl, tempDir, waitFor } from './helpers/processes.js';
import { parseNbdUri, Volumes } from './helpers/volumes.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const NS = 'default';
const CORE = `/api/v1/namespaces/${NS}`;
const SNAP = '/apis/snapshot.storage.k8s.io/v1';
const LH = '/apis/longhorn.io/v1beta2/namespaces/longhorn-system';

const dir = tempDir('vsnap');
const files = tempDir('vsnap-files');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let vols: Volumes;
let fileBytes: Buffer;

function random(seed: number, n: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  return b;
}

before(async () => {
  fileBytes = Buffer.alloc(SIZE);
  random(5, 3 * MiB).copy(fileBytes, 2 * MiB);
  writeFileSync(join(files.path, 'disk.raw'), fileBytes);
  web = await staticServer(files.path);
  const port = await freePort();
  up = await startUp(dir.path, port);
  vols = new Volumes(`http://127.0.0.1:${port}`);
  const s = await vols.req('PUT', '/v1/settings/allow-private-download-urls', { value: 'true' });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  const sc = await vols.req('POST', '/apis/storage.k8s.io/v1/storageclasses', { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name: 'longhorn' }, provisioner: 'driver.longhorn.io', parameters: { numberOfReplicas: '1' } });
  assert.equal(sc.status, 201, JSON.stringify(sc.json));
  for (const [name, type] of [['longhorn-bi', 'bi'], ['longhorn-snap', 'snap']]) {
    const c = await vols.req('POST', `${SNAP}/volumesnapshotclasses`, { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshotClass', metadata: { name }, driver: 'driver.longhorn.io', deletionPolicy: 'Delete', parameters: { type, ...(type === 'bi' ? { 'export-type': 'qcow2' } : {}) } });
    assert.equal(c.status, 201, JSON.stringify(c.json));
  }
});

after(async () => {
  await up?.stop('SIGINT', 60_000);
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

async function claim(name: string, dataSource?: string): Promise<string> {
  const r = await vols.req('POST', `${CORE}/persistentvolumeclaims`, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace: NS },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'longhorn', resources: { requests: { storage: String(SIZE) } }, ...(dataSource ? { dataSource: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: dataSource } } : {}) },
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return waitFor(`claim ${name} bound`, async () => {
    const c = await vols.req<{ spec: { volumeName?: string }; status?: { phase?: string } }>('GET', `${CORE}/persistentvolumeclaims/${name}`);
    return c.json.status?.phase === 'Bound' ? c.json.spec.volumeName : undefined;
  }, 180_000);
}

/** Attached without a frontend; the NBD export of the engine. */
async function nbdOf(volume: string): Promise<NbdClient> {
  const a = await vols.req('POST', `/v1/volumes/${volume}?action=attach`, { hostId: 'node-1', disableFrontend: true });
  assert.equal(a.status, 200, JSON.stringify(a.json));
  const uri = await vols.waitVolume(volume, `${volume} attached`, (v) => v.status?.state === 'attached' && !!v.status.nbdEndpoint, 120_000).then((v) => v.status!.nbdEndpoint!);
  const ep = parseNbdUri(uri);
  return NbdClient.connect({ host: ep.host, port: ep.port }, { exportName: ep.exportName });
}

async function readAll(c: NbdClient): Promise<Buffer> {
  const out = Buffer.alloc(SIZE);
  for (let at = 0; at < SIZE; at += 4 * MiB) Buffer.from(await c.read(at, 4 * MiB)).copy(out, at);
  return out;
}

async function volumeSnapshot(name: string, source: Record<string, string>, cls?: string): Promise<{ content: string; handle: string }> {
  const r = await vols.req('POST', `${SNAP}/namespaces/${NS}/volumesnapshots`, { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name, namespace: NS }, spec: { source, ...(cls ? { volumeSnapshotClassName: cls } : {}) } });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return waitFor(`VolumeSnapshot ${name} ready`, async () => {
    const v = await vols.req<{ status?: { readyToUse?: boolean; boundVolumeSnapshotContentName?: string; error?: { message?: string } } }>('GET', `${SNAP}/namespaces/${NS}/volumesnapshots/${name}`);
    if (!v.json.status?.readyToUse) return undefined;
    const c = await vols.req<{ status?: { snapshotHandle?: string } }>('GET', `${SNAP}/volumesnapshotcontents/${v.json.status.boundVolumeSnapshotContentName}`);
    return { content: v.json.status.boundVolumeSnapshotContentName ?? '', handle: c.json.status?.snapshotHandle ?? '' };
  }, 180_000);
}

test('VolumeSnapshots of type bi and snap: take, restore a claim from one, pre-provisioned bi:// content, delete', async () => {
  const volume = await claim('src');
  let c = await nbdOf(volume);
  const data = random(9, SIZE);
  data.fill(0, 6 * MiB, 10 * MiB); // a hole in the middle
  for (let at = 0; at < SIZE; at += 4 * MiB) await c.write(at, data.subarray(at, at + 4 * MiB));
  await c.flush();
  await c.disconnect();

  // type bi: an export of the claim's volume, taken while it is attached.
  const bi = await volumeSnapshot('snap-bi', { persistentVolumeClaimName: 'src' }, 'longhorn-bi');
  assert.match(bi.handle, /^bi:\/\/backing\?backingImageDataSourceType=export-from-volume&backingImage=snapshot-[0-9a-f-]+&volume-name=pvc-/);
  const image = new URLSearchParams(bi.handle.split('?')[1]).get('backingImage')!;
  const img = await vols.req<{ spec: { minNumberOfCopies?: number; sourceParameters?: Record<string, string> } }>('GET', `${LH}/backingimages/${image}`);
  assert.equal(img.json.spec.minNumberOfCopies, 1);
  assert.equal(img.json.spec.sourceParameters?.['export-type'], 'qcow2');

  // type snap: a Longhorn snapshot of the volume.
  const snap = await volumeSnapshot('snap-lh', { persistentVolumeClaimName: 'src' }, 'longhorn-snap');
  assert.match(snap.handle, new RegExp(`^snap://${volume}/snapshot-`));
  const lhName = snap.handle.split('/').pop()!;
  const listed = await vols.req<{ data: { name: string }[] }>('POST', `/v1/volumes/${volume}?action=snapshotList`, {});
  assert.ok(listed.json.data.some((s) => s.name === lhName), 'the Longhorn snapshot exists');
  await vols.detach(volume);

  // A claim restored from the bi snapshot reads the same bytes.
  const restoredVol = await claim('restored', 'snap-bi');
  assert.equal((await vols.get(restoredVol)).spec.backingImage, image);
  c = await nbdOf(restoredVol);
  const got = await readAll(c);
  await c.disconnect();
  assert.equal(createHash('sha512').update(got).digest('hex'), createHash('sha512').update(data).digest('hex'), 'the restored claim reads the snapshot');
  await vols.detach(restoredVol);

  // Pre-provisioned: a content with a bi:// download handle; the image is created on demand.
  const handle = `bi://backing?backingImageDataSourceType=download&backingImage=pre-image&url=${encodeURIComponent(`${web!.url}/disk.raw`)}`;
  const content = await vols.req('POST', `${SNAP}/volumesnapshotcontents`, {
    apiVersion: 'snapshot.storage.k8s.io/v1',
    kind: 'VolumeSnapshotContent',
    metadata: { name: 'pre-content' },
    spec: { driver: 'driver.longhorn.io', deletionPolicy: 'Delete', source: { snapshotHandle: handle }, volumeSnapshotRef: { name: 'pre-snap', namespace: NS } },
  });
  assert.equal(content.status, 201, JSON.stringify(content.json));
  await volumeSnapshot('pre-snap', { volumeSnapshotContentName: 'pre-content' });
  const preVol = await claim('from-pre', 'pre-snap');
  assert.equal((await vols.get(preVol)).spec.backingImage, 'pre-image');
  c = await nbdOf(preVol);
  assert.ok((await readAll(c)).equals(fileBytes), 'the claim restored from the pre-provisioned content reads the downloaded file');
  await c.disconnect();
  await vols.detach(preVol);

  // With kubectl: a type snap VolumeSnapshot of the claim, a claim restored from it (a volume clone, snap://) and a
  // claim cloned from the source claim (vol://): they bind, and their volumes read the source's data.
  const vs = { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name: 'snap-kc', namespace: NS }, spec: { volumeSnapshotClassName: 'longhorn-snap', source: { persistentVolumeClaimName: 'src' } } };
  const took = await kubectl(vols.url, ['apply', '-f', '-'], JSON.stringify(vs));
  assert.equal(took.code, 0, took.stderr);
  const kcContent = await waitFor('VolumeSnapshot snap-kc ready (kubectl)', async () => {
    const r = await kubectl(vols.url, ['get', 'volumesnapshot', 'snap-kc', '-n', NS, '-o', 'jsonpath={.status.readyToUse} {.status.boundVolumeSnapshotContentName}']);
    const [ready, content] = r.stdout.trim().split(' ');
    return ready === 'true' && content ? content : undefined;
  }, 180_000);
  const kcHandle = (await kubectl(vols.url, ['get', 'volumesnapshotcontent', kcContent, '-o', 'jsonpath={.status.snapshotHandle}'])).stdout.trim();
  assert.match(kcHandle, new RegExp(`^snap://${volume}/snapshot-`));
  const pvc = (name: string, dataSource: Record<string, string>) => ({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace: NS }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'longhorn', resources: { requests: { storage: String(SIZE) } }, dataSource } });
  const list = { apiVersion: 'v1', kind: 'List', items: [pvc('from-snap', { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: 'snap-kc' }), pvc('from-pvc', { kind: 'PersistentVolumeClaim', name: 'src' })] };
  const applied = await kubectl(vols.url, ['apply', '-f', '-'], JSON.stringify(list));
  assert.equal(applied.code, 0, applied.stderr);
  for (const [name, ds] of [['from-snap', kcHandle], ['from-pvc', `vol://${volume}`]] as const) {
    const vol = await waitFor(`claim ${name} bound (kubectl)`, async () => {
      const r = await kubectl(vols.url, ['get', 'pvc', name, '-n', NS, '-o', 'jsonpath={.status.phase} {.spec.volumeName}']);
      const [phase, v] = r.stdout.trim().split(' ');
      return phase === 'Bound' && v ? v : undefined;
    }, 180_000);
    const lv = await vols.req<{ spec: { dataSource?: string; backingImage?: string } }>('GET', `${LH}/volumes/${vol}`);
    assert.equal(lv.json.spec.dataSource, ds, `${name}'s volume is a clone of ${ds}`);
    c = await nbdOf(vol);
    const cloned = await readAll(c);
    await c.disconnect();
    if (!cloned.equals(data)) {
      // Say what differs and what the clone, its replicas and its Events said: a clone read early (before its copy
      // completed) reads zeros where the source has data.
      const bad: string[] = [];
      for (let at = 0; at < SIZE; at += 4096) if (!cloned.subarray(at, at + 4096).equals(data.subarray(at, at + 4096))) bad.push(`${at / 4096}${cloned.subarray(at, at + 4096).every((b) => b === 0) ? 'z' : ''}`);
      console.error(`${name}: ${bad.length} 4 KiB blocks differ (z: reads zeros): ${bad.slice(0, 20).join(',')} … ${bad.slice(-5).join(',')}`);
      console.error(`${name}: cloneStatus ${JSON.stringify((lv.json as { status?: { cloneStatus?: unknown } }).status?.cloneStatus)}`);
      const reps = await vols.req<{ items: { metadata: { name: string }; spec: Record<string, unknown>; status?: Record<string, unknown> }[] }>('GET', `${LH}/replicas`);
      for (const r of reps.json.items.filter((x) => x.spec['volumeName'] === vol)) console.error(`${name}: replica ${r.metadata.name} ${JSON.stringify({ node: r.spec['nodeID'], healthyAt: r.spec['healthyAt'], failedAt: r.spec['failedAt'], state: r.status?.['currentState'] })}`);
      const evs = await vols.req<{ items: { involvedObject?: { name?: string }; reason?: string; message?: string }[] }>('GET', '/api/v1/namespaces/longhorn-system/events');
      for (const e of evs.json.items.filter((x) => x.involvedObject?.name === vol)) console.error(`${name}: event ${e.reason}: ${e.message}`);
    }
    assert.equal(createHash('sha512').update(cloned).digest('hex'), createHash('sha512').update(data).digest('hex'), `${name} reads the source's data`);
    await vols.detach(vol);
  }
  // A clone smaller than its source stays Pending with an Event saying so (no volume is created).
  const small = await vols.req('POST', `${CORE}/persistentvolumeclaims`, { ...pvc('too-small', { kind: 'PersistentVolumeClaim', name: 'src' }), spec: { ...pvc('x', {}).spec, resources: { requests: { storage: String(SIZE / 2) } }, dataSource: { kind: 'PersistentVolumeClaim', name: 'src' } } });
  assert.equal(small.status, 201, JSON.stringify(small.json));
  await waitFor('the refusal event of the too-small clone', async () => {
    const ev = await vols.req<{ items: { involvedObject: { name: string }; message: string }[] }>('GET', `${CORE}/events`);
    return ev.json.items.some((e) => e.involvedObject.name === 'too-small' && /smaller than source volume/.test(e.message)) ? true : undefined;
  }, 60_000);
  const smallClaim = await vols.req<{ spec: { volumeName?: string }; status?: { phase?: string } }>('GET', `${CORE}/persistentvolumeclaims/too-small`);
  assert.equal(smallClaim.json.status?.phase ?? 'Pending', 'Pending');
  assert.ok(!smallClaim.json.spec.volumeName);

  // Deleting: the restored claims first (their volumes use the images), then the VolumeSnapshots delete what they name.
  for (const p of ['restored', 'from-pre', 'from-snap', 'from-pvc', 'too-small']) await vols.req('DELETE', `${CORE}/persistentvolumeclaims/${p}`);
  await waitFor('restored volumes deleted', async () => ((await vols.req('GET', `${LH}/volumes/${restoredVol}`)).status === 404 && (await vols.req('GET', `${LH}/volumes/${preVol}`)).status === 404 ? true : undefined), 120_000);
  for (const v of ['snap-bi', 'snap-lh', 'snap-kc', 'pre-snap']) await vols.req('DELETE', `${SNAP}/namespaces/${NS}/volumesnapshots/${v}`);
  await waitFor('images, snapshot and contents gone', async () => {
    const gone = async (p: string) => (await vols.req('GET', p)).status === 404;
    const all = [
      await gone(`${LH}/backingimages/${image}`),
      await gone(`${LH}/backingimages/pre-image`),
      await gone(`${LH}/snapshots/${lhName}`),
      await gone(`${LH}/snapshots/${kcHandle.split('/').pop()!}`),
      await gone(`${SNAP}/volumesnapshotcontents/${kcContent}`),
      await gone(`${SNAP}/volumesnapshotcontents/${bi.content}`),
      await gone(`${SNAP}/volumesnapshotcontents/pre-content`),
      await gone(`${SNAP}/namespaces/${NS}/volumesnapshots/snap-bi`),
    ];
    return all.every(Boolean) ? true : undefined;
  }, 120_000);
});
