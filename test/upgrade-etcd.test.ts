// End-to-end (issue 12) on the etcd control plane (`stratum up --store etcd --managers 3`): a system upgrade to a
// release with a new engine image and a new (compatible) backing-image manager, while a volume on a backing image is
// attached with data written. The release is stored in etcd, every manager is restarted on it (`stratum version`
// through each one shows it), the backing-image managers roll, the attached volume moves to the new engine image
// live (its Engine object's spec.image and status.currentImage, and `stratum version`'s row for it, follow), and
// the volume reads back what was written.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { hasEtcd } from '../src/store/etcd/local-cluster.js';
import { rememberCluster } from './helpers/credentials.js';
import { killRecordedCluster, killRecordedPods, readCluster, startUp, type Proc } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { CLI, freePort, run, stratum, tempDir, waitFor } from './helpers/processes.js';
import { BASE, bims, getJson, MiB, randomImage, releaseFile, VolumeModel } from './helpers/upgrade.js';
import { Volumes } from './helpers/volumes.js';

const skip = hasEtcd() ? false : 'etcd is not installed (Debian package etcd-server)';
const dir = tempDir('upgrade-etcd');
const files = tempDir('upgrade-etcd-files');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;

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

after(async () => {
  await up?.stop('SIGINT', 90_000);
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

async function isFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/** A base port whose managers' ports (base..base+2) and etcd's (base+100..base+105) are all free now. */
async function basePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = await freePort();
    if (base > 65_000) continue;
    const all = [base + 1, base + 2, ...Array.from({ length: 6 }, (_, i) => base + 100 + i)];
    if ((await Promise.all(all.map(isFree))).every(Boolean)) return base;
  }
  throw new Error('found no free range of ports');
}

test('upgrade on the etcd control plane: every manager restarts on the release stored in etcd, the data plane rolls, the attached volume reads back', { skip, timeout: 900_000 }, async () => {
  const port = await basePort();
  const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${port + i}`);
  up = await startUp(dir.path, port, ['--store', 'etcd', '--managers', '3']);
  for (const u of urls) rememberCluster(u, dir.path);
  const url = urls[0] ?? '';
  const vols = new Volumes(url);
  for (const [name, value] of [['allow-private-download-urls', 'true'], ['concurrent-automatic-engine-upgrade-per-node-limit', '1']]) {
    const s = await vols.req('PUT', `/v1/settings/${name}`, { value });
    assert.equal(s.status, 200, JSON.stringify(s.json));
  }
  // A backing image, ready; a volume on it attached, random data written over it.
  const img = randomImage(join(files.path, 'image.raw'), 8, 5);
  web = await staticServer(files.path);
  const c = await vols.req('POST', '/v1/backingimages', { name: 'bi-etcd', sourceType: 'download', parameters: { url: `${web.url}/image.raw` }, expectedChecksum: img.sha512 });
  assert.ok(c.status < 300, JSON.stringify(c.json));
  await waitFor('bi-etcd ready on a disk', async () => (await bims(url)).some((m) => m.status?.backingImageFileMap?.['bi-etcd']?.state === 'ready'), 180_000);
  const r = await vols.create('vol-etcd', { size: String(32 * MiB), numberOfReplicas: 2, backingImage: 'bi-etcd', frontend: 'nbd' });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await vols.attach('vol-etcd', 'node-1', 180_000);
  const model = new VolumeModel('vol-etcd', img.data, 32 * MiB);
  assert.equal(await model.verify(vols), undefined, 'the volume shows the image');
  await model.writeRandom(vols, 6, 21);
  const engineRow = (image: string) => new RegExp(`^node-1\\s+engine\\s+vol-etcd-e-\\w+\\s+${image.replace('.', '\\.')}\\s+\\S+.*\\s+running\\s+volume vol-etcd\\s*$`, 'm');
  const verBefore = await stratum(url, ['version']);
  assert.match(verBefore.stdout, engineRow('stratum-engine:v1'), verBefore.stdout);
  const pidsBefore = [1, 2, 3].map((i) => readCluster(dir.path).processes?.[`manager-${i}`]?.pid);

  // The upgrade, through the second manager (any manager takes it).
  const file = releaseFile(files.path, 'release-1.1.0.yaml', RELEASE);
  const upgrade = await run(process.execPath, [CLI, '--server', urls[1] ?? '', 'upgrade', '--images', file, '--wait', '--timeout', '10m'], { timeoutMs: 660_000 });
  assert.equal(upgrade.code, 0, `${upgrade.stdout}\n${upgrade.stderr}\n--- up:\n${up.output}`);
  assert.match(upgrade.stdout, /upgraded to release 1\.1\.0 \(from 1\.0\.0\)/);
  assert.match(upgrade.stdout, /default-backing-image-manager-image: stratum-bim:v1 -> stratum-bim:v2/);
  assert.match(upgrade.stdout, /default-engine-image: stratum-engine:v1 -> stratum-engine:v2/);
  assert.match(up.output, /restarting every manager/);

  // Every manager was restarted and runs the release: `stratum version` through each one says so.
  const pidsAfter = [1, 2, 3].map((i) => readCluster(dir.path).processes?.[`manager-${i}`]?.pid);
  for (const [i, pid] of pidsAfter.entries()) assert.ok(pid && pid !== pidsBefore[i], `manager-${i + 1} restarted: ${pidsBefore[i]} -> ${pid}`);
  assert.ok(existsSync(join(dir.path, 'manager', 'release.yaml')), 'the managers copied the release from etcd');
  for (const u of urls) {
    const v = await waitFor(`${u} answers`, async () => {
      const x = await stratum(u, ['version']);
      return x.code === 0 ? x : undefined;
    }, 60_000);
    assert.match(v.stdout, /^manager: release 1\.1\.0 /m, `${u}: ${v.stdout}${v.stderr}`);
    assert.match(v.stdout, /default-engine-image=stratum-engine:v2/, u);
  }

  // The data plane rolled: only new backing-image managers, each with its copy ready; the volume on the new engine
  // image (moved live: it stayed attached), reading back what was written.
  await waitFor('backing-image managers of stratum-bim:v2 only, copies ready', async () => {
    const ms = await bims(url);
    return ms.length > 0 && ms.every((m) => m.spec.image === 'stratum-bim:v2' && Object.values(m.status?.backingImageFileMap ?? {}).every((f) => f.state === 'ready')) || undefined;
  }, 240_000);
  await waitFor('vol-etcd on stratum-engine:v2', async () => (await getJson<{ status?: { currentImage?: string } }>(url, `${BASE}/volumes/vol-etcd`)).status?.currentImage === 'stratum-engine:v2' || undefined, 240_000);
  assert.ok((await vols.eventsFor('vol-etcd')).some((m) => /^live: engine .* swapped from image stratum-engine:v1 to stratum-engine:v2/.test(m)), 'moved live');
  const v = await vols.get('vol-etcd');
  assert.equal(v.status?.state, 'attached');
  assert.equal(await model.verify(vols), undefined, 'the volume reads back what was written');
  // The Engine object: what it should run and what its instance manager says it runs; `stratum version` shows it.
  const e = await waitFor('the engine reports stratum-engine:v2', async () => {
    const x = await vols.engine('vol-etcd') as { spec?: { image?: string }; status?: { currentImage?: string } };
    return x.status?.currentImage === 'stratum-engine:v2' ? x : undefined;
  }, 60_000);
  assert.equal(e.spec?.image, 'stratum-engine:v2');
  const verAfter = await stratum(url, ['version']);
  assert.match(verAfter.stdout, engineRow('stratum-engine:v2'), verAfter.stdout);
  assert.match(verAfter.stdout, /^node-1\s+engine\s+vol-etcd-e-\w+\s+stratum-engine:v2\s+2\.0\.0\s/m);
  await vols.detach('vol-etcd');
  await vols.delete('vol-etcd');
});
