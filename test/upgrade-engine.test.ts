// End-to-end (issue 12) on `stratum up`: engine images, the control-plane part. EngineImage objects in Longhorn's
// shape; Volume.spec.image / status.currentImage; an upgrade to a release with a new engine image moves detached
// volumes offline, at most `concurrent-automatic-engine-upgrade-per-node-limit` (1) per node at a time as a watch
// of the volumes shows; an attached volume waits and says why (the live swap is not implemented yet); the /v1
// action engineUpgrade and `stratum volume upgrade` move one volume.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { engineImageName } from '../src/api/engine-image.js';
import { killRecordedCluster, startUp, type Proc } from './helpers/cluster.js';
import { CLI, freePort, kubectl, run, stratum, tempDir, waitFor } from './helpers/processes.js';
import { BASE, getJson, MiB, releaseFile } from './helpers/upgrade.js';
import { Volumes } from './helpers/volumes.js';

const dir = tempDir('upgrade-engine');
const files = tempDir('upgrade-engine-files');
let up: Proc | undefined;
let vols: Volumes;
let url = '';

interface EiView {
  metadata: { name: string };
  spec: { image: string };
  status?: { state?: string; refCount?: number; nodeDeploymentMap?: Record<string, boolean>; version?: string; controllerAPIVersion?: number; incompatible?: boolean };
}
interface VolView {
  metadata: { name: string };
  spec: { image?: string; nodeID?: string };
  status?: { currentImage?: string; currentNodeID?: string };
}

const RELEASE = `release: 1.2.0
defaults:
  engine: stratum-engine:v2
images:
  - { name: stratum-engine:v2, from: stratum-engine:v1, version: 2.0.0 }
`;

before(async () => {
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
  const s = await vols.req('PUT', '/v1/settings/concurrent-automatic-engine-upgrade-per-node-limit', { value: '1' });
  assert.equal(s.status, 200, JSON.stringify(s.json));
});

after(async () => {
  await up?.stop('SIGINT', 60_000);
  killRecordedCluster(dir.path);
  dir.remove();
  files.remove();
});

const ei = (image: string) => getJson<EiView>(url, `${BASE}/engineimages/${engineImageName(image)}`);
const volume = (name: string) => getJson<VolView>(url, `${BASE}/volumes/${name}`);

test('engine images: EngineImage objects, volume images, an offline roll at most one per node, the attached volume waits and says why, manual engineUpgrade', async () => {
  const names = ['ev-1', 'ev-2', 'ev-3', 'ev-4', 'ev-5', 'ev-6'];
  for (const n of names) {
    const r = await vols.create(n, { size: String(8 * MiB), numberOfReplicas: 1, frontend: 'nbd' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
  }
  await vols.attach('ev-6', 'node-1');
  // Every volume runs the default engine image; its EngineImage is deployed on every node and counts them.
  for (const n of names) await waitFor(`${n} on stratum-engine:v1`, async () => (await volume(n)).status?.currentImage === 'stratum-engine:v1', 30_000);
  const v1 = await waitFor('EngineImage of stratum-engine:v1 deployed with 6 users', async () => {
    const e = await ei('stratum-engine:v1');
    return e.status?.state === 'deployed' && e.status.refCount === 6 ? e : undefined;
  }, 30_000);
  assert.deepEqual(v1.status?.nodeDeploymentMap, { 'node-1': true, 'node-2': true, 'node-3': true });
  assert.equal(v1.status?.version, '1.0.0');
  assert.equal(v1.status?.controllerAPIVersion, 1);
  const table = await kubectl(url, ['-n', 'longhorn-system', 'get', 'engineimages.longhorn.io']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`${v1.metadata.name}\\s+false\\s+deployed\\s+stratum-engine:v1\\s+6`));

  // The upgrade to a release with a new engine image, with a watch on the volumes from before it.
  const rv = (await getJson<{ metadata: { resourceVersion: string } }>(url, `${BASE}/volumes`)).metadata.resourceVersion;
  const file = releaseFile(files.path, 'release-1.2.0.yaml', RELEASE);
  const r = await run(process.execPath, [CLI, '--server', url, 'upgrade', '--images', file, '--wait', '--timeout', '3m'], { timeoutMs: 200_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /default-engine-image: stratum-engine:v1 -> stratum-engine:v2/);
  assert.match(r.stdout, /volumes: \d of 6 run engine image stratum-engine:v2; attached ones on another image wait \(live engine swap not implemented yet\): ev-6/);
  const detached = names.slice(0, 5);
  for (const n of detached) await waitFor(`${n} moved offline to stratum-engine:v2`, async () => (await volume(n)).status?.currentImage === 'stratum-engine:v2', 60_000);
  // The attached one stays and says why.
  const att = await volume('ev-6');
  assert.equal(att.status?.currentImage, 'stratum-engine:v1');
  await waitFor('the attached volume says why it waits', async () => (await vols.eventsFor('ev-6')).some((m) => /live engine swap is not implemented yet/.test(m)), 30_000);

  // The watch: never more than one volume of a node between spec.image and status.currentImage.
  const w = await kubectl(url, ['get', '--raw', `${BASE}/volumes?watch=1&resourceVersion=${rv}&timeoutSeconds=2`]);
  assert.equal(w.code, 0, w.stderr);
  const state = new Map<string, VolView>();
  const replicasNode = new Map<string, string>();
  for (const n of detached) replicasNode.set(n, (await vols.replicas(n))[0]?.spec.nodeID ?? '');
  let most = 0;
  for (const line of w.stdout.split('\n').filter((l) => l.trim())) {
    const ev = JSON.parse(line) as { type: string; object: VolView };
    state.set(ev.object.metadata.name, ev.object);
    const perNode = new Map<string, number>();
    for (const [n, v] of state) {
      if (!v.spec.image || !v.status?.currentImage || v.spec.image === v.status.currentImage) continue;
      const node = v.status.currentNodeID || replicasNode.get(n) || '?';
      perNode.set(node, (perNode.get(node) ?? 0) + 1);
    }
    const m = Math.max(0, ...perNode.values());
    assert.ok(m <= 1, `at most one volume per node upgrading at once; at one event: ${JSON.stringify([...perNode])}`);
    most = Math.max(most, m);
  }
  assert.equal(most, 1, 'the watch saw upgrades in progress');
  const v2 = await waitFor('EngineImage of stratum-engine:v2 with its 5 users', async () => {
    const e = await ei('stratum-engine:v2');
    return e.status?.refCount === 5 ? e : undefined;
  }, 30_000);
  assert.equal(v2.status?.version, '2.0.0');
  assert.equal(v2.status?.state, 'deployed');

  // Manual: one volume back to v1 through the CLI (the /v1 action), an unknown image refused. Automatic upgrade
  // off first: it would move the volume back to the default.
  const off = await vols.req('PUT', '/v1/settings/concurrent-automatic-engine-upgrade-per-node-limit', { value: '0' });
  assert.equal(off.status, 200, JSON.stringify(off.json));
  const m = await stratum(url, ['volume', 'upgrade', 'ev-1', '--image', 'stratum-engine:v1', '--wait', '--timeout', '60s']);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stdout, /ev-1 upgraded to stratum-engine:v1/);
  assert.equal((await volume('ev-1')).status?.currentImage, 'stratum-engine:v1');
  const bad = await vols.req<{ message?: string }>('POST', '/v1/volumes/ev-2?action=engineUpgrade', { image: 'no-such-engine:v9' });
  assert.equal(bad.status, 422, JSON.stringify(bad.json));
  assert.match(bad.json.message ?? '', /no EngineImage ei-\w+ for it/);
});
