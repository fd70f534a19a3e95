// End-to-end (issue 12), seed scenario 3 on `stratum up`: an upgrade of the manager with the backing-image
// manager image unchanged, mocked as the seed says by removing every manager "pod" at once — here the manager and
// the three node agents (longhorn-manager's control and node halves), killed -9 together and started again, ten
// times. A watch (kubectl, from the resourceVersion before each kill) shows every disk file of the image go
// `unknown` then `ready`, and no backing-image data-source pod is launched; attached volumes read back what was
// written.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { killRecordedCluster, killRecordedPods, Proc, readCluster, startUp } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { freePort, kubectl, tempDir, waitFor } from './helpers/processes.js';
import { BASE, bims, getJson, MiB, randomImage, VolumeModel } from './helpers/upgrade.js';
import { Volumes } from './helpers/volumes.js';

const IMAGE = 'bi-restart';
const ROUNDS = 10;
const dir = tempDir('upgrade-restart');
const files = tempDir('upgrade-restart-files');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let vols: Volumes;
let url = '';
/** The processes this test started in place of the ones `stratum up` started (name → process). */
const replaced = new Map<string, Proc>();

before(async () => {
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
  const s = await vols.req('PUT', '/v1/settings/allow-private-download-urls', { value: 'true' });
  assert.equal(s.status, 200, JSON.stringify(s.json));
});

after(async () => {
  // Agents first, with their pods (SIGUSR2), then the manager; then `up` for whatever it still runs.
  for (const [name, p] of replaced) if (name !== 'manager') await p.stop('SIGUSR2', 60_000);
  await replaced.get('manager')?.stop('SIGTERM', 20_000);
  await up?.stop('SIGINT', 60_000);
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

interface WatchEvent<T> {
  type: string;
  object: T;
}
type BiObj = { metadata: { name: string }; status?: { diskFileStatusMap?: Record<string, { state: string }> } };
type PodObj = { metadata: { name: string } };

/** `kubectl get --raw` of a watch from `rv`, ended by the server after `seconds`. */
async function watchFrom<T>(path: string, rv: string, seconds: number): Promise<WatchEvent<T>[]> {
  const r = await kubectl(url, ['get', '--raw', `${path}?watch=1&resourceVersion=${rv}&timeoutSeconds=${seconds}`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as WatchEvent<T>);
}

test(`scenario 3: the manager and agents killed together ${ROUNDS} times: every copy goes unknown then ready, no data-source pod is launched, volumes keep their data`, async (t) => {
  // 1-3. A backing image with a copy on every disk, and two volumes on it, attached, with data written.
  const image = randomImage(join(files.path, 'image.raw'), 16, 33);
  web = await staticServer(files.path);
  const c = await vols.req('POST', '/v1/backingimages', { name: IMAGE, sourceType: 'download', parameters: { url: `${web.url}/image.raw` }, expectedChecksum: image.sha512, minNumberOfCopies: 3 });
  assert.ok(c.status < 300, JSON.stringify(c.json));
  const allReady = async () => {
    const bi = await getJson<BiObj>(url, `${BASE}/backingimages/${IMAGE}`);
    const states = Object.values(bi.status?.diskFileStatusMap ?? {}).map((f) => f.state);
    return states.length === 3 && states.every((s) => s === 'ready');
  };
  await waitFor('a ready copy of the image on all three disks', allReady, 120_000);
  const models: VolumeModel[] = [];
  for (const [i, node] of [[1, 'node-1'], [2, 'node-3']] as const) {
    const name = `vol-${i}`;
    const r = await vols.create(name, { size: String(24 * MiB), numberOfReplicas: 2, backingImage: IMAGE, frontend: 'nbd' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    await vols.attach(name, node);
    const m = new VolumeModel(name, image.data, 24 * MiB);
    await m.writeRandom(vols, 4, 200 + i);
    models.push(m);
  }
  const bimPids = new Map((await bims(url)).map((m) => [m.metadata.name, m.metadata.uid]));
  const cluster = readCluster(dir.path);
  const names = ['manager', 'node-1', 'node-2', 'node-3'];
  for (let round = 1; round <= ROUNDS; round++) {
    const rv = (await getJson<{ metadata: { resourceVersion: string } }>(url, `${BASE}/backingimages`)).metadata.resourceVersion;
    // 5. Every manager process at once, as removing all longhorn-manager pods does.
    const procs = names.map((n) => ({ n, pid: replaced.get(n)?.pid ?? cluster.processes?.[n]?.pid ?? 0, argv: cluster.processes?.[n]?.argv ?? [] }));
    for (const p of procs) {
      assert.ok(p.pid > 0 && p.argv.length > 0, `${p.n} is known`);
      process.kill(p.pid, 'SIGKILL');
    }
    await Promise.all(names.map((n) => replaced.get(n)?.exited));
    // Kubernetes would start them again: so does the test, manager first.
    const manager = new Proc(procs[0]?.argv ?? []);
    replaced.set('manager', manager);
    await waitFor('the manager answering again', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 30_000);
    for (const p of procs.slice(1)) replaced.set(p.n, new Proc(p.argv));
    // 6. Every copy is ready again …
    await waitFor(`round ${round}: every copy ready again`, allReady, 60_000);
    // … after having been unknown, as the watch from before the kill shows, per disk.
    const events = await watchFrom<BiObj>(`${BASE}/backingimages/${IMAGE}`.replace(`/${IMAGE}`, ''), rv, 2);
    const seq = new Map<string, string[]>();
    for (const e of events) {
      if (e.object.metadata.name !== IMAGE) continue;
      for (const [disk, f] of Object.entries(e.object.status?.diskFileStatusMap ?? {})) {
        const s = seq.get(disk) ?? [];
        if (s.at(-1) !== f.state) s.push(f.state);
        seq.set(disk, s);
      }
    }
    assert.equal(seq.size, 3, `round ${round}: events for three disks: ${JSON.stringify([...seq])}`);
    for (const [disk, s] of seq) {
      const u = s.indexOf('unknown');
      assert.ok(u >= 0 && s.indexOf('ready', u) > u, `round ${round}: disk ${disk} went ${s.join(' -> ')}`);
    }
    // 7. No data-source pod was launched for the image.
    const podEvents = await watchFrom<PodObj>('/api/v1/namespaces/longhorn-system/pods', rv, 1);
    const ds = podEvents.filter((e) => e.object.metadata.name.startsWith('backing-image-ds-'));
    assert.deepEqual(ds.map((e) => `${e.type} ${e.object.metadata.name}`), [], `round ${round}`);
    t.diagnostic(`round ${round}: ${[...seq.values()].map((s) => s.join('->')).join(', ')}`);
  }
  // The same managers (no new BackingImageManager objects), and the volumes read back what was written.
  assert.deepEqual(new Map((await bims(url)).map((m) => [m.metadata.name, m.metadata.uid])), bimPids);
  for (const m of models) assert.equal(await m.verify(vols), undefined);
});
