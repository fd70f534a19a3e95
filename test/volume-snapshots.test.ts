// End-to-end: volume snapshots on `stratum up` (manager, three node agents, real instance managers). A volume on a
// raw backing image, written through its NBD export against a byte model: write, snapshot, write, snapshot, write,
// with a rebuild of a new replica in the middle of the chain (updateReplicaCount 2 → 3); every replica then has
// every snapshot; revert (attached without a frontend) to each reads as the model; delete and purge keep the model.
// Snapshots are taken and listed with the `stratum` CLI and the /v1 actions.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../src/frontend/nbd/index.js';
import { replicaDirOf } from '../src/api/disk-layout.js';
import { mulberry32 } from '../src/util/prng.js';
import { killRecordedCluster, Proc, startUp } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { CLI, freePort, run, tempDir, waitFor } from './helpers/processes.js';
import { parseNbdUri, Volumes } from './helpers/volumes.js';

const MiB = 1024 * 1024;
const IMAGE = 'snap-base';
const SIZE = 32 * MiB;
const IMAGE_SIZE = 24 * MiB;

const dir = tempDir('snapshots');
const files = tempDir('snapshot-images');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let vols: Volumes;
let url = '';
let base: Buffer;

before(async () => {
  const rand = mulberry32(13);
  base = Buffer.alloc(IMAGE_SIZE);
  for (let i = 0; i < base.length; i += 4) base.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  writeFileSync(join(files.path, 'base.raw'), base);
  web = await staticServer(files.path);
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
  const s = await vols.req('PUT', '/v1/settings/allow-private-download-urls', { value: 'true' });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  const bi = await vols.req('POST', '/v1/backingimages', { name: IMAGE, sourceType: 'download', parameters: { url: `${web.url}/base.raw` } });
  assert.equal(bi.status, 200, JSON.stringify(bi.json));
  await waitFor('the backing image has a ready copy', async () => {
    const r = await vols.req<{ diskFileStatusMap?: Record<string, { state: string }> }>('GET', `/v1/backingimages/${IMAGE}`);
    return Object.values(r.json.diskFileStatusMap ?? {}).some((f) => f.state === 'ready');
  }, 60_000);
});

after(async () => {
  await up?.stop('SIGINT', 60_000);
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

async function nbd(uri: string): Promise<NbdClient> {
  const ep = parseNbdUri(uri);
  return NbdClient.connect({ host: ep.host, port: ep.port }, { exportName: ep.exportName });
}

async function cli(...args: string[]): Promise<string> {
  const r = await run(process.execPath, [CLI, '--server', url, ...args], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `stratum ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function action<T>(volume: string, name: string, body: unknown = {}): Promise<T> {
  const r = await vols.req<T>('POST', `/v1/volumes/${volume}?action=${name}`, body);
  assert.equal(r.status, 200, `${name}: ${JSON.stringify(r.json)}`);
  return r.json;
}

/** Attach through /v1 (disableFrontend for a revert) and wait for the engine's NBD export. */
async function attach(volume: string, node: string, disableFrontend: boolean): Promise<string> {
  await action(volume, 'attach', { hostId: node, disableFrontend });
  await vols.waitVolume(volume, `${volume} attached`, (v) => v.status?.state === 'attached', 120_000);
  const e = await waitFor(`engine of ${volume} has its NBD export`, async () => {
    const x = await vols.engine(volume);
    return (x.status as { nbdEndpoint?: string } | undefined)?.nbdEndpoint ? x : undefined;
  });
  return (e.status as { nbdEndpoint: string }).nbdEndpoint;
}

async function writeRandom(client: NbdClient, model: Buffer, rand: () => number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const len = 512 * (1 + Math.floor(rand() * 64));
    const off = 512 * Math.floor(rand() * ((SIZE - len) / 512));
    const data = Buffer.alloc(len);
    for (let k = 0; k + 4 <= len; k += 4) data.writeUInt32LE(Math.floor(rand() * 2 ** 32), k);
    await client.write(off, data);
    data.copy(model, off);
  }
  await client.flush();
}

async function readAll(uri: string): Promise<Buffer> {
  const c = await nbd(uri);
  try {
    const out = Buffer.alloc(SIZE);
    for (let at = 0; at < SIZE; at += 4 * MiB) Buffer.from(await c.read(at, 4 * MiB)).copy(out, at);
    return out;
  } finally {
    await c.disconnect();
  }
}

test('snapshot chain: write, snapshot, write (rebuild), snapshot, write; revert to each, delete and purge match the model', async () => {
  const c = await vols.create('vol-s', { size: String(SIZE), numberOfReplicas: 2, backingImage: IMAGE, frontend: 'nbd' });
  assert.equal(c.status, 201, JSON.stringify(c.json));
  let uri = await attach('vol-s', 'node-1', false);
  const model = Buffer.alloc(SIZE);
  base.copy(model);
  const rand = mulberry32(99);
  const at: Record<string, Buffer> = {};
  let client = await nbd(uri);

  await writeRandom(client, model, rand, 200);
  assert.equal((await cli('volume', 'snapshot', 'create', 'vol-s', 'snap-1')).trim(), 'snap-1');
  at['snap-1'] = Buffer.from(model);
  await writeRandom(client, model, rand, 200);

  // A third replica, rebuilt while the chain has one snapshot; writes go on meanwhile.
  await action('vol-s', 'updateReplicaCount', { replicaCount: 3 });
  const writing = writeRandom(client, model, rand, 300);
  await waitFor('three RW replicas', async () => {
    const e = await vols.engine('vol-s');
    const modes = Object.values(e.status?.replicaModeMap ?? {});
    return modes.length === 3 && modes.every((m) => m === 'RW');
  }, 180_000);
  await writing;

  assert.equal((await action<{ name: string }>('vol-s', 'snapshotCreate', { name: 'snap-2' })).name, 'snap-2');
  at['snap-2'] = Buffer.from(model);
  await writeRandom(client, model, rand, 200);
  assert.ok(Buffer.from(await readAll(uri)).equals(model), 'the volume reads as the model');

  const listed = await action<{ data: { name: string; parent: string; children: Record<string, boolean> }[] }>('vol-s', 'snapshotList');
  assert.deepEqual(listed.data.map((s) => [s.name, s.parent]).sort(), [['snap-1', ''], ['snap-2', 'snap-1'], ['volume-head', 'snap-2']]);
  const table = await cli('volume', 'snapshot', 'ls', 'vol-s');
  assert.match(table, /snap-1/);
  assert.match(table, /snap-2/);
  // Every replica directory holds the chain (the rebuilt one included): two frozen layers and a head.
  const replicas = await vols.replicas('vol-s');
  assert.equal(replicas.length, 3);
  for (const r of replicas) {
    const chain = JSON.parse(readFileSync(join(replicaDirOf(r.spec.diskPath, r.spec.dataDirectoryName), 'chain.json'), 'utf8')) as { layers: { name: string }[] };
    assert.deepEqual(chain.layers.map((l) => l.name), ['snap-1', 'snap-2'], `replica ${r.metadata.name} on ${r.spec.nodeID} has the chain`);
  }

  // Snapshot objects mirror the volume's snapshots; one created with createSnapshot is taken; deleting one deletes it.
  const NSP = '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/snapshots';
  await waitFor('Snapshot objects of snap-1 and snap-2', async () => {
    const r = await vols.req<{ items: { metadata: { name: string }; spec: { volume: string }; status?: { readyToUse?: boolean; parent?: string } }[] }>('GET', NSP);
    const mine = r.json.items.filter((s) => s.spec.volume === 'vol-s' && s.status?.readyToUse);
    return mine.length === 2 && mine.find((s) => s.metadata.name === 'snap-2')?.status?.parent === 'snap-1' ? true : undefined;
  }, 60_000);
  const created = await vols.req('POST', NSP, { apiVersion: 'longhorn.io/v1beta2', kind: 'Snapshot', metadata: { name: 'snap-k', namespace: 'longhorn-system' }, spec: { volume: 'vol-s', createSnapshot: true } });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  await waitFor('snap-k taken by the snapshot controller', async () => {
    const l = await action<{ data: { name: string }[] }>('vol-s', 'snapshotList');
    return l.data.some((s) => s.name === 'snap-k') ? true : undefined;
  }, 60_000);
  assert.ok([200, 202].includes((await vols.req('DELETE', `${NSP}/snap-k`)).status));
  // The head sits on snap-k: it is marked removed (a purge merges it), and its object is gone.
  await waitFor('snap-k deleted with its object', async () => {
    const l = await action<{ data: { name: string; removed: boolean }[] }>('vol-s', 'snapshotList');
    const gone = (await vols.req('GET', `${NSP}/snap-k`)).status === 404;
    return gone && l.data.find((s) => s.name === 'snap-k')?.removed === true ? true : undefined;
  }, 60_000);

  // A revert needs the volume without a frontend.
  const refused = await vols.req<{ message: string }>('POST', '/v1/volumes/vol-s?action=snapshotRevert', { name: 'snap-1' });
  assert.equal(refused.status, 409, JSON.stringify(refused.json));
  assert.match(refused.json.message, /frontend/);
  await client.disconnect();
  await vols.detach('vol-s');
  uri = await attach('vol-s', 'node-2', true);
  for (const name of ['snap-2', 'snap-1']) {
    await cli('volume', 'snapshot', 'revert', 'vol-s', name);
    assert.ok((await readAll(uri)).equals(at[name]!), `reverted to ${name}: the volume reads as the model did then`);
  }
  // Each replica alone holds the reverted content: detach and attach on each node in turn with one replica.
  client = await nbd(uri);
  const live = Buffer.from(at['snap-1']!);
  await writeRandom(client, live, rand, 100);
  await client.disconnect();

  // snap-1 has two children (snap-2 and the head): marked removed; snap-2 has none: gone at once; purge merges snap-1.
  await cli('volume', 'snapshot', 'rm', 'vol-s', 'snap-1');
  const marked = await action<{ data: { name: string; removed: boolean }[] }>('vol-s', 'snapshotList');
  assert.equal(marked.data.find((s) => s.name === 'snap-1')?.removed, true);
  await cli('volume', 'snapshot', 'rm', 'vol-s', 'snap-2');
  await cli('volume', 'snapshot', 'purge', 'vol-s');
  const after = await action<{ data: { name: string }[] }>('vol-s', 'snapshotList');
  assert.deepEqual(after.data.map((s) => s.name), ['volume-head']);
  assert.ok((await readAll(uri)).equals(live), 'after delete and purge the volume reads as the model');

  // Every replica serves the same content: reattach with a frontend on another node and compare again.
  await vols.detach('vol-s');
  uri = await attach('vol-s', 'node-3', false);
  assert.ok((await readAll(uri)).equals(live), 'after re-attach');
  await vols.detach('vol-s');
});
