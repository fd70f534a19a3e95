// End-to-end (issue 12), seed scenario 1 on `stratum up`, its backing-image part: a system upgrade to a release
// with a compatible newer backing-image manager (and a new engine image default) while a large image is still
// syncing to other disks, volumes are attached with data written and fio verifies on one of them. Checks the seed's
// steps 7 and 8: old managers go (after their downloads; syncs between disks are cut), files are never removed, the
// new managers own every file (ready ones taken over without a transfer, in-progress ones failed then synced again,
// as a watch of the BackingImage's status.diskFileStatusMap shows), the volumes —
// including the one attached across the upgrade — read back what was written, and everything can be deleted.
// The new engine image is rolled out live to the attached volumes, never more than one per node at a time (a watch
// of the volumes shows it).

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { killRecordedCluster, startUp, type Proc } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { CLI, freePort, hasTool, kubectl, run, tempDir, waitFor } from './helpers/processes.js';
import { BASE, bims, copyInodes, getJson, MiB, pods, randomImage, releaseFile, VolumeModel, type BimView } from './helpers/upgrade.js';
import { Volumes } from './helpers/volumes.js';

const skip = hasTool('fio') ? false : 'needs fio';
const dir = tempDir('upgrade-compatible');
const files = tempDir('upgrade-compatible-files');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let vols: Volumes;
let url = '';

// The first release's managers send at most 4 MiB/s, so that the large image's syncs are still running when the
// upgrade starts and when the old managers go (the new image inherits the limit).
const CATALOG = `images:
  - name: stratum-bim:v1
    component: backing-image-manager
    version: 1.0.0
    apiVersion: 1
    apiMinVersion: 1
    command: ["{node}", "{repo}/dist/src/cli/main.js"]
    subcommands: [bim, data-source]
    env: { STRATUM_BIM_BANDWIDTH_LIMIT: 4Mi }
`;

const RELEASE = `release: 1.1.0
manager:
  apis:
    backing-image-manager: { min: 1, max: 2 }
defaults:
  backing-image-manager: stratum-bim:v2
  engine: stratum-engine:v2
images:
  - { name: stratum-bim:v2, from: stratum-bim:v1, version: 2.0.0, apiVersion: 2, apiMinVersion: 1 }
  - { name: stratum-engine:v2, from: stratum-engine:v1, version: 2.0.0 }
`;

before(async () => {
  if (skip) return;
  const catalog = join(files.path, 'catalog.yaml');
  writeFileSync(catalog, CATALOG);
  const port = await freePort();
  up = await startUp(dir.path, port, ['--images', catalog]);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
  // 1. Automatic engine upgrade enabled (per-node limit 1); short copy backoff so re-syncs come within the test.
  for (const [name, value] of [['allow-private-download-urls', 'true'], ['concurrent-automatic-engine-upgrade-per-node-limit', '1'],
    ['backing-image-copy-retry-backoff-min', '2'], ['backing-image-copy-retry-backoff-max', '4']]) {
    const s = await vols.req('PUT', `/v1/settings/${name}`, { value });
    assert.equal(s.status, 200, JSON.stringify(s.json));
  }
});

after(async () => {
  await up?.stop('SIGINT', 60_000);
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

type BimEvent = { type: string; object: BimView };
type BiEvent = { type: string; object: { metadata: { name: string }; status?: { diskFileStatusMap?: Record<string, { state?: string; message?: string }> } } };

test('scenario 1 (backing images): a compatible backing-image manager upgrade while a large image syncs and fio verifies on attached volumes', { skip }, async () => {
  const small = randomImage(join(files.path, 'small.raw'), 8, 1);
  const large = randomImage(join(files.path, 'large.raw'), 96, 2);
  web = await staticServer(files.path);
  // 2. Two backing images, their first files prepared by data-source pods.
  for (const [name, img] of [['bi-small', small], ['bi-large', large]] as const) {
    const c = await vols.req('POST', '/v1/backingimages', { name, sourceType: 'download', parameters: { url: `${web.url}/${name.slice(3)}.raw` }, expectedChecksum: img.sha512 });
    assert.ok(c.status < 300, JSON.stringify(c.json));
  }
  const readyOn = async (bi: string) => (await bims(url)).filter((m) => m.status?.backingImageFileMap?.[bi]?.state === 'ready').map((m) => m.spec.diskUUID);
  // 3. The small image ready on its first disk; volumes on it, attached.
  await waitFor('bi-small ready on its first disk', async () => (await readyOn('bi-small')).length > 0, 120_000);
  const model = new VolumeModel('vol-1', small.data, 32 * MiB);
  for (const [name, node] of [['vol-1', 'node-1'], ['vol-2', 'node-2']] as const) {
    const r = await vols.create(name, { size: String(32 * MiB), numberOfReplicas: 2, backingImage: 'bi-small', frontend: 'nbd' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    await vols.attach(name, node);
  }
  // 4. The image's content is there; random data written.
  assert.equal(await model.verify(vols), undefined, 'vol-1 shows bi-small');
  await model.writeRandom(vols, 8, 11);
  const vol2 = await vols.get('vol-2');
  // fio with verification on vol-2 through the whole upgrade.
  const fio = run('fio', ['--name=through-upgrade', '--ioengine=nbd', `--uri=${vol2.status?.endpoint ?? ''}`, '--rw=randwrite', '--bs=4k', '--iodepth=8',
    `--size=${16 * MiB}`, `--offset=${8 * MiB}`, '--time_based', '--runtime=75', '--verify=crc32c', '--verify_backlog=512', '--verify_fatal=1', '--output-format=terse'], { timeoutMs: 240_000 });
  // 5. The large image ready on its first disk; one more volume on it (three replicas: copies on every disk).
  await waitFor('bi-large ready on its first disk', async () => (await readyOn('bi-large')).length > 0, 180_000);
  const r3 = await vols.create('vol-3', { size: String(96 * MiB), numberOfReplicas: 3, backingImage: 'bi-large', frontend: 'nbd' });
  assert.equal(r3.status, 201, JSON.stringify(r3.json));
  const attach3 = await vols.req('POST', '/v1/volumes/vol-3?action=attach', { hostId: 'node-3' });
  assert.equal(attach3.status, 200, JSON.stringify(attach3.json));
  // 6. Before the large image is synced to the other disks (and vol-3 attached): the upgrade.
  await waitFor('a sync of bi-large in progress', async () => (await bims(url)).some((m) => m.status?.backingImageFileMap?.['bi-large']?.state === 'in-progress'), 60_000);
  const before = await bims(url);
  const syncing = before.filter((m) => m.status?.backingImageFileMap?.['bi-large']?.state === 'in-progress').map((m) => m.metadata.name);
  assert.notEqual((await vols.get('vol-3')).status?.state, 'attached');
  const diskPaths = before.map((m) => m.spec.diskPath);
  const uuidOf = (bi: string) => Object.values(before.map((m) => m.spec.backingImages?.[bi]).filter(Boolean))[0] ?? '';
  const smallInodes = copyInodes(diskPaths, 'bi-small', uuidOf('bi-small'));
  const largeReadyInodes = copyInodes(diskPaths.filter((d) => before.find((m) => m.spec.diskPath === d)?.status?.backingImageFileMap?.['bi-large']?.state === 'ready'), 'bi-large', uuidOf('bi-large'));
  const rv = (await getJson<{ metadata: { resourceVersion: string } }>(url, `${BASE}/backingimagemanagers`)).metadata.resourceVersion;
  const biRv = (await getJson<{ metadata: { resourceVersion: string } }>(url, `${BASE}/backingimages`)).metadata.resourceVersion;
  const volRv = (await getJson<{ metadata: { resourceVersion: string } }>(url, `${BASE}/volumes`)).metadata.resourceVersion;
  const file = releaseFile(files.path, 'release-1.1.0.yaml', RELEASE);
  const upgrade = await run(process.execPath, [CLI, '--server', url, 'upgrade', '--images', file, '--wait', '--timeout', '10m'], { timeoutMs: 660_000 });
  assert.equal(upgrade.code, 0, `${upgrade.stdout}\n${upgrade.stderr}`);
  assert.match(upgrade.stdout, /upgraded to release 1\.1\.0 \(from 1\.0\.0\)/);
  assert.match(upgrade.stdout, /default-engine-image: stratum-engine:v1 -> stratum-engine:v2/);

  // 7.1 Old managers and their pods are gone (no download was in flight: syncs are not waited for); files were not removed.
  const now = await bims(url);
  assert.ok(now.every((m) => m.spec.image === 'stratum-bim:v2'), now.map((m) => `${m.metadata.name} ${m.spec.image}`).join(', '));
  const oldNames = before.map((m) => m.metadata.name);
  const podNames = (await pods(url)).map((p) => p.metadata.name);
  for (const n of oldNames) assert.ok(!podNames.some((p) => p.includes(n.slice(4))), `no pod of ${n}: ${podNames.join(', ')}`);
  const watch = await kubectl(url, ['get', '--raw', `${BASE}/backingimagemanagers?watch=1&resourceVersion=${rv}&timeoutSeconds=2`]);
  assert.equal(watch.code, 0, watch.stderr);
  const events = watch.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as BimEvent);
  // The disks whose old manager was still receiving bi-large from a peer when it was retired.
  const cut: string[] = [];
  for (const n of syncing) {
    const mine = events.filter((e) => e.object.metadata.name === n);
    assert.ok(mine.some((e) => e.type === 'DELETED'), `${n} was retired`);
    const last = mine.filter((e) => e.type !== 'DELETED').at(-1)?.object.status?.backingImageFileMap?.['bi-large']?.state;
    if (last !== 'ready') cut.push(before.find((m) => m.metadata.name === n)?.spec.diskUUID ?? '');
  }
  assert.ok(cut.length > 0, `a sync of bi-large was still in progress when its old manager was retired (syncing: ${syncing.join(', ')})`);
  assert.deepEqual(copyInodes(diskPaths, 'bi-small', uuidOf('bi-small')), smallInodes, 'bi-small: the same files');
  const largeNow = copyInodes(diskPaths, 'bi-large', uuidOf('bi-large'));
  for (const [d, ino] of largeReadyInodes) assert.equal(largeNow.get(d), ino, `bi-large on ${d}: the same file`);
  // 7.2 The new managers own every file and show it: small ones ready at once (never re-synced), large ones ready;
  // a large copy the new manager found in progress went failed first, then was synced again.
  // 7.2.2 From the BackingImage's status: each copy of bi-large cut in progress went failed (saying why), then ready.
  const biWatch = await kubectl(url, ['get', '--raw', `${BASE}/backingimages?watch=1&resourceVersion=${biRv}&timeoutSeconds=2`]);
  assert.equal(biWatch.code, 0, biWatch.stderr);
  const biEvents = biWatch.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as BiEvent).filter((e) => e.object.metadata.name === 'bi-large');
  for (const disk of cut) {
    const states = biEvents.map((e) => e.object.status?.diskFileStatusMap?.[disk]).filter((s) => s?.state);
    const seq = states.map((s) => s?.state).filter((st, i, a) => st !== a[i - 1]);
    const failed = states.findIndex((s) => s?.state === 'failed');
    assert.ok(failed >= 0, `bi-large on disk ${disk}: the copy cut in progress went failed: ${seq.join(' -> ')}`);
    assert.match(states[failed]?.message ?? '', /taken over from the manager of image stratum-bim:v1 while in progress/, `bi-large on disk ${disk}: the failure says why`);
    assert.ok(states.slice(failed).some((s) => s?.state === 'ready'), `bi-large on disk ${disk}: synced again after the failure: ${seq.join(' -> ')}`);
  }
  for (const m of now) {
    const seq = (bi: string) => events.filter((e) => e.object.metadata.name === m.metadata.name).map((e) => e.object.status?.backingImageFileMap?.[bi]?.state).filter((s, i, a) => s && s !== a[i - 1]);
    if (m.spec.backingImages?.['bi-small']) {
      assert.equal(m.status?.backingImageFileMap?.['bi-small']?.state, 'ready');
      assert.ok(!seq('bi-small').includes('in-progress'), `${m.metadata.name} took bi-small over without a transfer: ${seq('bi-small').join(' -> ')}`);
    }
    if (m.spec.backingImages?.['bi-large']) {
      assert.equal(m.status?.backingImageFileMap?.['bi-large']?.state, 'ready', m.metadata.name);
      const s = seq('bi-large');
      if (largeReadyInodes.has(m.spec.diskPath)) assert.ok(!s.includes('in-progress'), `${m.metadata.name} took the ready bi-large over without a transfer: ${s.join(' -> ')}`);
      const sync = s.indexOf('in-progress');
      assert.ok(sync < 0 || s.slice(0, sync).includes('failed'), `${m.metadata.name}: a copy synced by the new manager was failed first: ${s.join(' -> ')}`);
    }
  }
  // 7.3 Attached volumes worked throughout: fio verified its writes and exited 0; no replica failed; data intact.
  const f = await fio;
  assert.equal(f.code, 0, `fio: ${f.stdout}${f.stderr}`);
  for (const v of ['vol-1', 'vol-2']) {
    assert.equal((await vols.get(v)).status?.robustness, 'healthy', v);
    assert.ok((await vols.replicas(v)).every((x) => !x.spec.failedAt), `${v}: no replica failed`);
  }
  assert.equal(await model.verify(vols), undefined);
  // The new engine image: every volume runs it, the attached ones were moved live, at most one per node at a time.
  for (const v of ['vol-1', 'vol-2']) {
    assert.equal((await getJson<{ status?: { currentImage?: string } }>(url, `${BASE}/volumes/${v}`)).status?.currentImage, 'stratum-engine:v2', v);
    assert.ok((await vols.eventsFor(v)).some((m) => /^live: engine .* swapped from image stratum-engine:v1 to stratum-engine:v2/.test(m)), `${v}: moved live`);
  }
  await waitFor('vol-3 on the new engine image', async () => (await getJson<{ status?: { currentImage?: string } }>(url, `${BASE}/volumes/vol-3`)).status?.currentImage === 'stratum-engine:v2', 240_000);
  const vw = await kubectl(url, ['get', '--raw', `${BASE}/volumes?watch=1&resourceVersion=${volRv}&timeoutSeconds=2`]);
  assert.equal(vw.code, 0, vw.stderr);
  const vstate = new Map<string, { spec: { image?: string }; status?: { currentImage?: string; currentNodeID?: string } }>();
  let most = 0;
  for (const line of vw.stdout.split('\n').filter((l) => l.trim())) {
    const ev = JSON.parse(line) as { object: { metadata: { name: string }; spec: { image?: string }; status?: { currentImage?: string; currentNodeID?: string } } };
    vstate.set(ev.object.metadata.name, ev.object);
    const perNode = new Map<string, number>();
    for (const v of vstate.values()) {
      if (!v.spec.image || !v.status?.currentImage || v.spec.image === v.status.currentImage) continue;
      const node = v.status.currentNodeID || '?';
      perNode.set(node, (perNode.get(node) ?? 0) + 1);
    }
    const m = Math.max(0, ...perNode.values());
    assert.ok(m <= 1, `at most one volume per node upgrading: ${JSON.stringify([...perNode])}`);
    most = Math.max(most, m);
  }
  assert.equal(most, 1, 'the watch saw engine upgrades in progress');
  // 7.4 The last volume attached across the upgrade, without replica crash, and shows the large image.
  await vols.waitVolume('vol-3', 'attached and healthy', (v) => v.status?.state === 'attached' && v.status.robustness === 'healthy', 240_000);
  assert.ok((await vols.replicas('vol-3')).every((x) => !x.spec.failedAt), 'vol-3: no replica failed');
  assert.equal(await new VolumeModel('vol-3', large.data, 96 * MiB).verify(vols), undefined);
  // 8. Volumes and backing images can be deleted.
  for (const v of ['vol-1', 'vol-2', 'vol-3']) {
    await vols.detach(v);
    await vols.delete(v);
  }
  for (const bi of ['bi-small', 'bi-large']) {
    const d = await vols.req('DELETE', `/v1/backingimages/${bi}`);
    assert.ok(d.status < 300, `${bi}: ${JSON.stringify(d.json)}`);
  }
  await waitFor('the backing images gone', async () => (await getJson<{ items: unknown[] }>(url, `${BASE}/backingimages`)).items.length === 0, 120_000);
});
