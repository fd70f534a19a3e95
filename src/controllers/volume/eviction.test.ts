// The volume controller over the in-memory store, with no data plane: a replica on a disk whose eviction is asked for
// gets a replacement on another node at once, and is deleted only once the replacement holds the data. The volume is
// detached: it is attached without a frontend on the node of a replica that stays (the engine's status is written
// here as the data plane would), and released once the evicted replica is gone. Nothing is lost meanwhile.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import type { Engine } from '../../api/engine.js';
import { engineNameFor, LONGHORN_FINALIZER } from '../../api/labels.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import type { Volume } from '../../api/volume.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { MemoryStore, runControllers } from '../../controller-kit/testing.js';
import { volumeController } from './index.js';
import { readyNode } from './testing.js';

const NS = 'longhorn-system';
const GiB = 2 ** 30;
const store = new MemoryStore();
let stop: () => Promise<void>;

const node = (name: string) => readyNode(store, NS, name);

async function replica(name: string, nodeName: string): Promise<void> {
  await store.create<Replica>({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'Replica',
    metadata: { name, namespace: NS },
    spec: { volumeName: 'v', nodeID: nodeName, diskID: `uuid-${nodeName}`, volumeSize: String(GiB), healthyAt: '2026-01-01T00:00:00Z', desireState: 'stopped' },
  } as Replica);
}

const mine = async () => (await store.list<Replica>('Replica', { namespace: NS })).items.filter((r) => r.spec?.volumeName === 'v' && !r.metadata.deletionTimestamp);

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify((await mine()).map((r) => [r.metadata.name, r.spec?.nodeID, r.spec?.healthyAt]))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  for (const n of ['node-1', 'node-2', 'node-3']) await node(n);
  await store.create<Volume>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Volume', metadata: { name: 'v', namespace: NS, finalizers: [LONGHORN_FINALIZER] }, spec: { size: String(GiB), numberOfReplicas: 2 } });
  await store.create<Engine>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Engine', metadata: { name: engineNameFor('v'), namespace: NS }, spec: { volumeName: 'v', desireState: 'stopped' } });
  await replica('v-r-1', 'node-1');
  await replica('v-r-2', 'node-2');
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'volume-controller', logger: silentLogger, registry: new Registry() });
  stop = await runControllers(informers, volumeController({ store, informers, events }));
});

after(() => stop());

test("a replica on an evicted disk is replaced on another node, and goes only once the replacement holds the data", async () => {
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await mine()).length, 2, 'nothing moves before an eviction');
  await store.patch<Node>('Node', NS, 'node-1', 'merge', { spec: { disks: { 'disk-1': { evictionRequested: true } } } });

  const added = await until('a replacement on node-3', async () => (await mine()).find((r) => r.spec?.nodeID === 'node-3'));
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual((await mine()).map((r) => r.metadata.name).sort(), ['v-r-1', 'v-r-2', added.metadata.name].sort(), 'the evicted replica stays while its replacement holds nothing');

  const vol = await store.get<Volume>('Volume', NS, 'v');
  assert.equal(vol.metadata.annotations?.['stratum.io/maintenance-attach.eviction'], 'node-2', 'attached for the move on the node of the replica that stays');

  // The engine runs and has rebuilt the replacement: both staying replicas are RW. The replica processes start as
  // their instance managers would start them.
  const engine = await until('the engine to be started', async () => {
    for (const r of await mine()) {
      if (r.spec?.desireState !== 'running' || r.status?.currentState === 'running') continue;
      await store.update<Replica>({ ...r, status: { ...r.status, currentState: 'running', ip: '127.0.0.1', storageIP: '127.0.0.1', port: 7000 } } as Replica, { subresource: 'status' });
    }
    const e = await store.get<Engine>('Engine', NS, engineNameFor('v'));
    return e.spec?.desireState === 'running' ? e : undefined;
  });
  await store.update<Engine>({ ...engine, status: { ...engine.status, currentState: 'running', replicaModeMap: { 'v-r-2': 'RW', [added.metadata.name ?? '']: 'RW' } } } as Engine, { subresource: 'status' });
  await until('the evicted replica to go', async () => ((await mine()).some((r) => r.metadata.name === 'v-r-1') ? undefined : true));
  await until('the volume to be released', async () => ((await store.get<Volume>('Volume', NS, 'v')).metadata.annotations?.['stratum.io/maintenance-attach.eviction'] === undefined ? true : undefined));
  assert.deepEqual((await mine()).map((r) => r.spec?.nodeID).sort(), ['node-2', 'node-3']);
  const events = (await store.list('Event', { namespace: NS })).items.map((e) => e as { reason?: string; message?: string });
  assert.ok(events.some((e) => e.reason === 'ReplicaEvicted' && /v-r-1 on node node-1: its disk is being evicted/.test(e.message ?? '')));
});
