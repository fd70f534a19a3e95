// End-to-end (issue 12) on `stratum up`: an upgrade that changes the instance-manager image while volumes are
// attached. Instance managers of the new image start beside the old ones; what the old ones host stays there (it is
// never started a second time — the instance managers' status, at every event of a watch, never lists one name on
// two managers); volumes detached and attached again start on the new ones; the old managers are retired once empty
// and their pods removed; the volumes read back what was written.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { killRecordedCluster, startUp, type Proc } from './helpers/cluster.js';
import { CLI, freePort, kubectl, run, stratum, tempDir, waitFor } from './helpers/processes.js';
import { BASE, getJson, MiB, pods, releaseFile, VolumeModel } from './helpers/upgrade.js';
import { Volumes } from './helpers/volumes.js';

const dir = tempDir('upgrade-im');
const files = tempDir('upgrade-im-files');
let up: Proc | undefined;
let vols: Volumes;
let url = '';

interface ImView {
  metadata: { name: string };
  spec: { image: string; nodeID: string };
  status?: { currentState?: string; instanceEngines?: Record<string, unknown>; instanceReplicas?: Record<string, unknown> };
}

const RELEASE = `release: 1.3.0
defaults:
  instance-manager: stratum-im:v2
images:
  - { name: stratum-im:v2, from: stratum-im:v1, version: 2.0.0 }
`;

before(async () => {
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
});

after(async () => {
  await up?.stop('SIGINT', 60_000);
  killRecordedCluster(dir.path);
  dir.remove();
  files.remove();
});

const ims = async () => (await getJson<{ items: ImView[] }>(url, `${BASE}/instancemanagers`)).items;

test('a new instance-manager image while volumes are attached: no instance on two managers, old managers retired once empty', async () => {
  const models: VolumeModel[] = [];
  for (const [name, node] of [['iv-1', 'node-1'], ['iv-2', 'node-2']] as const) {
    const r = await vols.create(name, { size: String(16 * MiB), numberOfReplicas: 2, frontend: 'nbd' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    await vols.attach(name, node);
    const m = new VolumeModel(name, Buffer.alloc(0), 16 * MiB);
    await m.writeRandom(vols, 5, name.length * 7 + models.length);
    models.push(m);
  }
  const rv = (await getJson<{ metadata: { resourceVersion: string } }>(url, `${BASE}/instancemanagers`)).metadata.resourceVersion;
  const oldNames = (await ims()).map((m) => m.metadata.name);
  const file = releaseFile(files.path, 'release-1.3.0.yaml', RELEASE);
  const r = await run(process.execPath, [CLI, '--server', url, 'upgrade', '--images', file, '--wait', '--timeout', '3m'], { timeoutMs: 200_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /instance managers of an older image, retired once empty/);
  // New managers of the new image on every node, running beside the old ones that host the attached volumes.
  await waitFor('an instance manager of stratum-im:v2 running on every node', async () => (await ims()).filter((m) => m.spec.image === 'stratum-im:v2' && m.status?.currentState === 'running').length === 3, 60_000);
  for (const m of models) assert.equal(await m.verify(vols), undefined, `${m.name} still served by the old managers`);
  // Detach and attach again: the instances stop on the old managers and start on the new ones.
  for (const [m, node] of [[models[0], 'node-1'], [models[1], 'node-2']] as const) {
    await vols.detach(m?.name ?? '');
    await vols.attach(m?.name ?? '', node);
  }
  await waitFor('the old instance managers retired', async () => {
    const names = (await ims()).map((m) => m.metadata.name);
    return oldNames.every((n) => !names.includes(n));
  }, 90_000);
  // Their pods go too (graceful deletion: the agent stops the process first).
  let podNames: string[] = [];
  await waitFor('the old instance managers\' pods gone', async () => {
    podNames = (await pods(url)).map((p) => p.metadata.name);
    return oldNames.every((n) => !podNames.includes(n));
  }, 60_000).catch((err: Error) => assert.fail(`${err.message}: ${podNames.join(', ')}`));
  // … and their files: nothing under the agents' directories names them any more.
  const leftovers: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 6) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (oldNames.some((n) => e.name.includes(n))) leftovers.push(join(d, e.name));
      if (e.isDirectory()) walk(join(d, e.name), depth + 1);
    }
  };
  for (const n of ['node-1', 'node-2', 'node-3']) walk(join(dir.path, n, 'agent'), 0);
  assert.deepEqual(leftovers, []);
  for (const m of await ims()) assert.equal(m.spec.image, 'stratum-im:v2');
  const hosted = (await ims()).flatMap((m) => [...Object.keys(m.status?.instanceEngines ?? {}), ...Object.keys(m.status?.instanceReplicas ?? {})]);
  assert.equal(hosted.length, 6, `2 engines and 4 replicas on the new managers: ${hosted.join(', ')}`);
  for (const m of models) {
    // A new connection: the engine moved to another process with another NBD listener.
    const fresh = new VolumeModel(m.name, Buffer.alloc(0), 16 * MiB);
    m.model.copy(fresh.model);
    assert.equal(await fresh.verify(vols), undefined, `${m.name} reads back what was written`);
  }
  // The watch: at no event did two instance managers list the same instance.
  const w = await kubectl(url, ['get', '--raw', `${BASE}/instancemanagers?watch=1&resourceVersion=${rv}&timeoutSeconds=2`]);
  assert.equal(w.code, 0, w.stderr);
  const state = new Map<string, ImView | undefined>();
  let events = 0;
  for (const line of w.stdout.split('\n').filter((l) => l.trim())) {
    const ev = JSON.parse(line) as { type: string; object: ImView };
    state.set(ev.object.metadata.name, ev.type === 'DELETED' ? undefined : ev.object);
    events++;
    const where = new Map<string, string[]>();
    for (const [name, m] of state) {
      for (const i of [...Object.keys(m?.status?.instanceEngines ?? {}), ...Object.keys(m?.status?.instanceReplicas ?? {})]) where.set(i, [...(where.get(i) ?? []), name]);
    }
    const twice = [...where].filter(([, on]) => on.length > 1);
    assert.deepEqual(twice, [], `event ${events}: an instance listed by two instance managers`);
  }
  assert.ok(events > 10, `the watch saw the roll (${events} events)`);
  const ver = await stratum(url, ['version']);
  for (const n of ['node-1', 'node-2', 'node-3']) assert.match(ver.stdout, new RegExp(`${n}\\s+instance-manager\\s+instance-manager-\\w+\\s+stratum-im:v2\\s+2\\.0\\.0`));
});
