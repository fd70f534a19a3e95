// End-to-end (issue 12) on `stratum up`: engine images. EngineImage objects in Longhorn's shape; Volume.spec.image /
// status.currentImage; an upgrade to a release with a new engine image moves detached volumes offline and attached
// ones live — fio verifying on an NBD and on a block-device frontend through it, no I/O error — at most
// `concurrent-automatic-engine-upgrade-per-node-limit` (1) per node at a time as a watch of the volumes shows; the
// /v1 action engineUpgrade and `stratum volume upgrade` move one volume.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { engineImageName } from '../src/api/engine-image.js';
import { killRecordedCluster, startUp, type Proc } from './helpers/cluster.js';
import { CLI, freePort, hasTool, kubectl, run, stratum, tempDir, waitFor } from './helpers/processes.js';
import { BASE, getJson, MiB, releaseFile, VolumeModel } from './helpers/upgrade.js';
import { Volumes } from './helpers/volumes.js';

const TOOLS = ['fio', 'nbdfuse', 'losetup'];
const missing = TOOLS.filter((t) => !hasTool(t));
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root (the block-device frontend)' : false;
const BLOCKDEV = 'upgrade-engine-bd';
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
  if (skip) return;
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

function fio(name: string, target: string[], seconds: number) {
  return run('fio', [`--name=${name}`, ...target, '--rw=randwrite', '--bs=4k', '--iodepth=8', `--size=${12 * MiB}`, '--time_based', `--runtime=${seconds}`,
    '--verify=crc32c', '--verify_backlog=256', '--verify_fatal=1', '--output-format=terse'], { timeoutMs: (seconds + 120) * 1000 });
}

test('engine images: EngineImage objects, volume images, offline and live upgrades at most one per node with fio verifying, manual engineUpgrade', { skip }, async () => {
  const detached = ['ev-1', 'ev-2', 'ev-3', 'ev-4', 'ev-5'];
  const attached = ['ev-6', 'ev-7', BLOCKDEV];
  const names = [...detached, ...attached];
  for (const n of names) {
    const r = await vols.create(n, { size: String(16 * MiB), numberOfReplicas: n.startsWith('ev-') && detached.includes(n) ? 1 : 2, frontend: n === BLOCKDEV ? 'blockdev' : 'nbd' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
  }
  await vols.attach('ev-6', 'node-1');
  await vols.attach('ev-7', 'node-1');
  await vols.attach(BLOCKDEV, 'node-1');
  // Every volume runs the default engine image; its EngineImage is deployed on every node and counts them.
  for (const n of names) await waitFor(`${n} on stratum-engine:v1`, async () => (await volume(n)).status?.currentImage === 'stratum-engine:v1', 30_000);
  const v1 = await waitFor('EngineImage of stratum-engine:v1 deployed with 8 users', async () => {
    const e = await ei('stratum-engine:v1');
    return e.status?.state === 'deployed' && e.status.refCount === 8 ? e : undefined;
  }, 30_000);
  assert.deepEqual(v1.status?.nodeDeploymentMap, { 'node-1': true, 'node-2': true, 'node-3': true });
  assert.equal(v1.status?.version, '1.0.0');
  assert.equal(v1.status?.controllerAPIVersion, 1);
  const table = await kubectl(url, ['-n', 'longhorn-system', 'get', 'engineimages.longhorn.io']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`${v1.metadata.name}\\s+false\\s+deployed\\s+stratum-engine:v1\\s+8`));
  // Data on ev-7 to read back; fio verifying on ev-6 (NBD) and on the block device through the whole upgrade.
  const model = new VolumeModel('ev-7', Buffer.alloc(0), 16 * MiB);
  await model.writeRandom(vols, 6, 77);
  const nbd = (await vols.get('ev-6')).status?.endpoint ?? '';
  const dev = (await vols.get(BLOCKDEV)).status?.endpoint ?? '';
  assert.equal(dev, `/dev/longhorn/${BLOCKDEV}`);
  const fios = [fio('nbd', ['--ioengine=nbd', `--uri=${nbd}`], 40), fio('blockdev', ['--ioengine=psync', `--filename=${dev}`, '--direct=1'], 40)];
  await new Promise((r) => setTimeout(r, 2000));

  // The upgrade to a release with a new engine image, with a watch on the volumes from before it.
  const rv = (await getJson<{ metadata: { resourceVersion: string } }>(url, `${BASE}/volumes`)).metadata.resourceVersion;
  const file = releaseFile(files.path, 'release-1.2.0.yaml', RELEASE);
  const r = await run(process.execPath, [CLI, '--server', url, 'upgrade', '--images', file, '--wait', '--timeout', '3m'], { timeoutMs: 200_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /default-engine-image: stratum-engine:v1 -> stratum-engine:v2/);
  assert.match(r.stdout, /volumes: 8 of 8 run engine image stratum-engine:v2\n/);
  for (const n of names) assert.equal((await volume(n)).status?.currentImage, 'stratum-engine:v2', n);
  // The attached ones moved live: their engines were swapped under open connections, and fio saw no error.
  for (const n of attached) assert.ok((await vols.eventsFor(n)).some((m) => /^live: engine .* swapped from image stratum-engine:v1 to stratum-engine:v2/.test(m)), `${n}: a live swap event`);
  for (const f of await Promise.all(fios)) assert.equal(f.code, 0, `fio: ${f.stdout}${f.stderr}`);
  for (const n of attached) assert.equal((await vols.get(n)).status?.robustness, 'healthy', n);
  assert.equal(await model.verify(vols), undefined, 'ev-7 reads back what was written');

  // The watch: never more than one volume of a node between spec.image and status.currentImage.
  const w = await kubectl(url, ['get', '--raw', `${BASE}/volumes?watch=1&resourceVersion=${rv}&timeoutSeconds=2`]);
  assert.equal(w.code, 0, w.stderr);
  const state = new Map<string, VolView>();
  const replicasNode = new Map<string, string>();
  for (const n of detached) replicasNode.set(n, (await vols.replicas(n)).map((x) => x.spec.nodeID).sort()[0] ?? '');
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
  const v2 = await waitFor('EngineImage of stratum-engine:v2 with its 8 users', async () => {
    const e = await ei('stratum-engine:v2');
    return e.status?.refCount === 8 ? e : undefined;
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
  for (const n of attached) await vols.detach(n);
});
