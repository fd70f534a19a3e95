// End-to-end (issue 12) on `stratum up`: releases. A bad release is refused before anything changes, naming its
// entry; the default-*-image settings cannot be changed through any API; and the seed's scenario 2 — a system
// upgrade to a backing-image manager the new manager is not compatible with, while volumes on the image are
// attached and read — retires the old managers at once (their files stay), the new ones take the files over, and
// the volumes keep reading back what was written. Tests share the cluster and run in order.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { killRecordedCluster, readCluster, startUp, type Proc } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { CLI, freePort, kubectl, run, stratum, tempDir, waitFor } from './helpers/processes.js';
import { BASE, bims, copyInodes, getJson, keepVerifying, MiB, pods, randomImage, releaseFile, VolumeModel, type BimView } from './helpers/upgrade.js';
import { Volumes } from './helpers/volumes.js';

const IMAGE = 'bi-upgrade';
const dir = tempDir('upgrade-incompatible');
const files = tempDir('upgrade-incompatible-files');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let vols: Volumes;
let url = '';
let image: { sha512: string; data: Buffer };
const models: VolumeModel[] = [];

const BAD = {
  component: `release: 9.0.0
images:
  - { name: stratum-bim:v9, from: stratum-bim:v1, component: teleporter }
`,
  ranges: `release: 9.0.0
manager:
  apis:
    instance-manager: { min: 7, max: 7 }
defaults:
  instance-manager: stratum-im:v1
`,
  command: `release: 9.0.0
defaults:
  backing-image-manager: stratum-bim:v9
images:
  - { name: stratum-bim:v9, from: stratum-bim:v1, version: 9.0.0, command: ["{dir}/no-such-bim.js"] }
`,
  // A program that exists, but not one the operator's catalog runs: an admin token must not run it.
  untrusted: `release: 9.0.0
defaults:
  backing-image-manager: stratum-bim:v9
images:
  - { name: stratum-bim:v9, from: stratum-bim:v1, version: 9.0.0, command: ["/bin/sh", "-c", "touch {dir}/ran"] }
`,
};

const INCOMPATIBLE = `release: 2.0.0
manager:
  apis:
    backing-image-manager: { min: 2, max: 2 }
defaults:
  backing-image-manager: stratum-bim:v2
images:
  - name: stratum-bim:v2
    from: stratum-bim:v1
    version: 2.0.0
    apiVersion: 2
    apiMinVersion: 2
    # Sends at most 4 MiB/s: the last test needs a sync still running when the next upgrade starts.
    env: { STRATUM_BIM_BANDWIDTH_LIMIT: 4Mi }
`;

const INCOMPATIBLE_AGAIN = `release: 3.0.0
manager:
  apis:
    backing-image-manager: { min: 3, max: 3 }
defaults:
  backing-image-manager: stratum-bim:v3
images:
  - { name: stratum-bim:v3, from: stratum-bim:v2, version: 3.0.0, apiVersion: 3, apiMinVersion: 3 }
`;

before(async () => {
  image = randomImage(join(files.path, 'image.raw'), 16, 12);
  web = await staticServer(files.path);
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
  for (const [name, value] of [['allow-private-download-urls', 'true'], ['backing-image-copy-retry-backoff-min', '1'], ['backing-image-copy-retry-backoff-max', '2']]) {
    const s = await vols.req('PUT', `/v1/settings/${name}`, { value });
    assert.equal(s.status, 200, JSON.stringify(s.json));
  }
  // The bad-ranges case names the running instance managers: wait until all three run (they start after the nodes).
  await waitFor('three instance managers running', async () => {
    const ims = await getJson<{ items: { status?: { currentState?: string } }[] }>(url, '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/instancemanagers');
    return ims.items.filter((m) => m.status?.currentState === 'running').length === 3 || undefined;
  }, 60_000);
});

after(async () => {
  await up?.stop('SIGINT', 60_000);
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

async function settingValue(name: string): Promise<string> {
  return (await getJson<{ value: string }>(url, `/v1/settings/${name}`)).value;
}

test('a bad release is refused before anything changes, and the message names the entry', async () => {
  const managerPid = readCluster(dir.path).processes?.['manager']?.pid;
  const cases: [keyof typeof BAD, RegExp][] = [
    ['component', /images\[0\] \(stratum-bim:v9\): unknown component "teleporter"/],
    ['ranges', /manager\.apis\.instance-manager: range 7 excludes every running instance-manager: InstanceManager instance-manager-\w+ \(stratum-im:v1, API 2\)/],
    ['command', /images\[0\] \(stratum-bim:v9\): command ".*no-such-bim\.js" does not exist/],
    ['untrusted', /images\[0\] \(stratum-bim:v9\): command "\/bin\/sh -c touch .*ran" is not the command of any image of the operator's catalog/],
  ];
  for (const [name, why] of cases) {
    const file = releaseFile(files.path, `bad-${name}.yaml`, BAD[name]);
    // Validation starts the image's command for each subcommand: generous on a loaded machine.
    const r = await run(process.execPath, [CLI, '--server', url, 'upgrade', '--images', file, '--wait'], { timeoutMs: 120_000 });
    assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, why, name);
    assert.match(r.stderr, new RegExp(`release bad-${name}\\.yaml refused, nothing was changed`), name);
  }
  assert.equal(existsSync(join(files.path, 'ran')), false, 'the untrusted release\'s command never ran');
  // Nothing changed: the same manager process, the built-in release, the same default images, no stored release.
  assert.equal(readCluster(dir.path).processes?.['manager']?.pid, managerPid);
  const v = await getJson<{ release: { version: string }; source: string }>(url, '/v1/version');
  assert.deepEqual([v.release.version, v.source], ['1.0.0', 'built-in']);
  assert.equal(await settingValue('default-backing-image-manager-image'), 'stratum-bim:v1');
  assert.equal(await settingValue('default-instance-manager-image'), 'stratum-im:v1');
  assert.ok(!existsSync(join(dir.path, 'manager', 'release.yaml')));
});

test('the default-*-image settings cannot be changed through /v1, the Kubernetes API, kubectl or stratum apply', async () => {
  for (const name of ['default-backing-image-manager-image', 'default-instance-manager-image', 'default-engine-image']) {
    const before = await settingValue(name);
    const v1 = await vols.req<{ message?: string }>('PUT', `/v1/settings/${name}`, { value: 'evil:v1' });
    assert.equal(v1.status, 403, `/v1 ${name}: ${JSON.stringify(v1.json)}`);
    const obj = await getJson<Record<string, unknown>>(url, `${BASE}/settings/${name}`);
    for (const [method, body, type] of [
      ['PUT', { ...obj, value: 'evil:v1' }, 'application/json'],
      ['PATCH', { value: 'evil:v1' }, 'application/merge-patch+json'],
    ] as const) {
      const r = await vols.req<{ message?: string }>(method, `${BASE}/settings/${name}`, body, type);
      assert.equal(r.status, 403, `${method} ${name}: ${JSON.stringify(r.json)}`);
      assert.match(r.json.message ?? '', /read-only/);
    }
    // The v1beta1 path is the same resource.
    const b1 = await vols.req('PATCH', `/apis/longhorn.io/v1beta1/namespaces/longhorn-system/settings/${name}`, { value: 'evil:v1' }, 'application/merge-patch+json');
    assert.ok(b1.status === 403 || b1.status === 404, `v1beta1 PATCH ${name}: HTTP ${b1.status}`);
    const k = await kubectl(url, ['-n', 'longhorn-system', 'patch', 'settings.longhorn.io', name, '--type', 'merge', '-p', '{"value":"evil:v1"}']);
    assert.notEqual(k.code, 0);
    assert.match(k.stderr, /read-only/);
    const apply = await stratum(url, ['apply', '-f', '-'], `apiVersion: longhorn.io/v1beta2\nkind: Setting\nmetadata: {name: ${name}, namespace: longhorn-system}\nvalue: evil:v1\n`);
    assert.notEqual(apply.code, 0, apply.stdout);
    const del = await vols.req('DELETE', `${BASE}/settings/${name}`);
    assert.equal(del.status, 403);
    assert.equal(await settingValue(name), before, `${name} unchanged`);
  }
});

test('scenario 2: an upgrade to an incompatible backing-image manager retires the old ones at once; the new ones take the files over; attached volumes read back what was written', async () => {
  // 1-2. A backing image, ready on its first disk.
  const c = await vols.req('POST', '/v1/backingimages', { name: IMAGE, sourceType: 'download', parameters: { url: `${web?.url}/image.raw` }, expectedChecksum: image.sha512 });
  assert.ok(c.status < 300, JSON.stringify(c.json));
  await waitFor('the image ready on its first disk', async () => (await bims(url)).some((m) => m.status?.backingImageFileMap?.[IMAGE]?.state === 'ready'), 120_000);
  // 3-4. Two volumes on it, attached on two nodes; the image's content is there; random data written.
  for (const [i, node] of [[1, 'node-1'], [2, 'node-2']] as const) {
    const name = `vol-${i}`;
    const r = await vols.create(name, { size: String(32 * MiB), numberOfReplicas: 2, backingImage: IMAGE, frontend: 'nbd' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    await vols.attach(name, node);
    const m = new VolumeModel(name, image.data, 32 * MiB);
    assert.equal(await m.verify(vols), undefined, 'the volume shows the backing image before any write');
    await m.writeRandom(vols, 6, 100 + i);
    assert.equal(await m.verify(vols), undefined);
    models.push(m);
  }
  const oldBims = await bims(url);
  const uuid = Object.values(oldBims[0]?.spec.backingImages ?? {})[0] ?? '';
  const diskPaths = oldBims.map((m) => m.spec.diskPath);
  const inodes = copyInodes(diskPaths, IMAGE, uuid);
  assert.ok(inodes.size >= 2, `copies on the replicas' disks: ${[...inodes.keys()].join(', ')}`);
  const replicasBefore = await Promise.all(models.map((m) => vols.replicas(m.name)));

  // 5. The upgrade, while the volumes are read again and again.
  const checker = keepVerifying(vols, models);
  const file = releaseFile(files.path, 'release-2.0.0.yaml', INCOMPATIBLE);
  const r = await run(process.execPath, [CLI, '--server', url, 'upgrade', '--images', file, '--wait', '--timeout', '5m'], { timeoutMs: 330_000 });
  const reads = await checker.stop();
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /release 2\.0\.0 accepted \(was 1\.0\.0\)/);
  assert.match(r.stderr, /manager: running release 2\.0\.0/);
  assert.match(r.stdout, /upgraded to release 2\.0\.0 \(from 1\.0\.0\)/);
  assert.match(r.stdout, /default-backing-image-manager-image: stratum-bim:v1 -> stratum-bim:v2/);

  // 6.1 The old managers and their pods are gone; incompatible ones were removed at once (their event says so).
  const now = await bims(url);
  assert.ok(now.every((m) => m.spec.image === 'stratum-bim:v2'), now.map((m) => `${m.metadata.name} ${m.spec.image}`).join(', '));
  const oldNames = new Set(oldBims.map((m) => m.metadata.name));
  assert.ok(!now.some((m) => oldNames.has(m.metadata.name)));
  const podNames = (await pods(url)).map((p) => p.metadata.name);
  for (const n of oldNames) assert.ok(!podNames.some((p) => p.includes(n.slice(4))), `no pod of ${n} is left: ${podNames.join(', ')}`);
  const events = await getJson<{ items: { involvedObject: { name: string }; reason: string; message: string }[] }>(url, '/api/v1/namespaces/longhorn-system/events');
  for (const n of oldNames) {
    assert.ok(events.items.some((e) => e.involvedObject.name === n && e.reason === 'Retired' && /API-incompatible: removed at once/.test(e.message)), `a Retired event for ${n}`);
  }
  // Their files were not deleted: the same inode on every disk.
  assert.deepEqual(copyInodes(diskPaths, IMAGE, uuid), inodes);
  // 6.2 The new managers own every file and show it in their status map.
  for (const d of inodes.keys()) {
    const m = now.find((x) => x.spec.diskPath === d);
    assert.equal(m?.status?.currentState, 'running', d);
    assert.equal(m?.status?.apiVersion, 2);
    assert.equal(m?.status?.backingImageFileMap?.[IMAGE]?.state, 'ready', d);
  }
  // 6.3 The volumes worked throughout: every read during the upgrade matched, nothing crashed, data is intact.
  assert.ok(reads.rounds > 0);
  assert.deepEqual(reads.problems, []);
  for (const [i, m] of models.entries()) {
    const v = await vols.get(m.name);
    assert.equal(v.status?.robustness, 'healthy', m.name);
    const reps = await vols.replicas(m.name);
    assert.deepEqual(reps.map((x) => x.metadata.name).sort(), (replicasBefore[i] ?? []).map((x) => x.metadata.name).sort(), `${m.name}: no replica was replaced`);
    assert.ok(reps.every((x) => !x.spec.failedAt), `${m.name}: no replica failed`);
    assert.equal(await m.verify(vols), undefined);
  }
  // stratum version shows the new release and what each node runs.
  const ver = await stratum(url, ['version']);
  assert.equal(ver.code, 0, ver.stderr);
  assert.match(ver.stdout, /manager: release 2\.0\.0/);
  assert.match(ver.stdout, /backing-image-manager API 2,/);
  for (const n of new Set(now.map((m) => m.spec.nodeID))) {
    assert.match(ver.stdout, new RegExp(`${n}\\s+backing-image-manager\\s+bim-\\w+\\s+stratum-bim:v2\\s+2\\.0\\.0\\s+2\\s+running`));
  }
  for (const n of ['node-1', 'node-2', 'node-3']) assert.match(ver.stdout, new RegExp(`${n}\\s+instance-manager\\s+instance-manager-\\w+\\s+stratum-im:v1`));
});

test('a second upgrade, derived from the first release\'s image, while a copy syncs: the stored release stands alone, the new managers own every copy', async () => {
  const big = randomImage(join(files.path, 'big.raw'), 48, 21);
  const c = await vols.req('POST', '/v1/backingimages', { name: 'bi-big', sourceType: 'download', parameters: { url: `${web?.url}/big.raw` }, expectedChecksum: big.sha512, minNumberOfCopies: 3 });
  assert.ok(c.status < 300, JSON.stringify(c.json));
  // Copies to the other disks are synced at 4 MiB/s: wait until one is under way.
  await waitFor('a sync of bi-big in progress', async () => (await bims(url)).some((m) => m.status?.backingImageFileMap?.['bi-big']?.state === 'in-progress'), 120_000);
  const file = releaseFile(files.path, 'release-3.0.0.yaml', INCOMPATIBLE_AGAIN);
  const r = await run(process.execPath, [CLI, '--server', url, 'upgrade', '--images', file, '--wait', '--timeout', '5m'], { timeoutMs: 330_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /upgraded to release 3\.0\.0 \(from 2\.0\.0\)/);
  // The stored release carries the entry it derives from (the manager restarted on it alone).
  assert.match(readFileSync(join(dir.path, 'manager', 'release.yaml'), 'utf8'), /name: stratum-bim:v2/);
  await waitFor('bi-big ready on all three disks under the new managers', async () => {
    const now: BimView[] = await bims(url);
    return now.length === 3 && now.every((m) => m.spec.image === 'stratum-bim:v3' && m.status?.backingImageFileMap?.['bi-big']?.state === 'ready');
  }, 180_000);
  for (const m of models) assert.equal(await m.verify(vols), undefined);
});
