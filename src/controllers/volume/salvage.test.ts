// The volume controller over the in-memory store, with no data plane: a volume whose only replica with data keeps
// failing on its instance manager (a disk that went read-only) is salvaged once, then waits out a backoff, instead
// of marking the replica failed and taking it back in a tight loop of store writes; meanwhile it is faulted.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import type { Engine } from '../../api/engine.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import type { Volume } from '../../api/volume.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { MemoryStore, runControllers } from '../../controller-kit/testing.js';
import { engineNameFor } from '../../api/labels.js';
import { volumeController } from './index.js';

const NS = 'longhorn-system';
const store = new MemoryStore();
const ac = new AbortController();
let stop: () => Promise<void>;
const replicaWrites: string[] = [];

before(async () => {
  const { object: node } = await store.create<Node>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Node', metadata: { name: 'node-1', namespace: NS }, spec: {} });
  node.status = { conditions: [{ type: 'Ready', status: 'True', reason: '', message: '', lastProbeTime: '', lastTransitionTime: '' }] };
  await store.update(node, { subresource: 'status' });
  await store.create<Volume>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Volume', metadata: { name: 'v', namespace: NS }, spec: { size: '1048576', numberOfReplicas: 1 } });
  await store.create<Engine>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Engine', metadata: { name: engineNameFor('v'), namespace: NS }, spec: { volumeName: 'v', desireState: 'stopped' } });
  const { object: r } = await store.create<Replica>({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'Replica',
    metadata: { name: 'v-r-1', namespace: NS },
    spec: { volumeName: 'v', nodeID: 'node-1', healthyAt: '2026-01-01T00:00:00Z', desireState: 'running' },
  });
  r.status = { currentState: 'error', conditions: [{ type: 'InstanceReady', status: 'False', reason: 'error', message: 'storage failed: EROFS', lastProbeTime: '', lastTransitionTime: '' }] };
  await store.update(r, { subresource: 'status' });
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'volume-controller', logger: silentLogger, registry: new Registry() });
  const controller = volumeController({ store, informers, events });
  const watch = store.watch('Replica', { namespace: NS, signal: ac.signal });
  void (async () => {
    for await (const e of watch) replicaWrites.push(String((e.object as Replica).spec?.failedAt ?? ''));
  })().catch(() => {});
  stop = await runControllers(informers, controller);
});

after(async () => {
  ac.abort();
  await stop();
});

test('a replica that keeps failing is salvaged once, then waits: no storm of store writes', async () => {
  await new Promise((r) => setTimeout(r, 1500));
  // Changes of spec.failedAt, from the replica's first version on: '' → set is a failure mark, set → '' a salvage.
  const changes = replicaWrites.filter((f, i) => i > 0 && f !== replicaWrites[i - 1]);
  const failedMarks = changes.filter((f) => f !== '').length;
  const takenBack = changes.filter((f) => f === '').length;
  assert.ok(failedMarks >= 2, `the replica was marked failed, salvaged and marked failed again: ${JSON.stringify(replicaWrites)}`);
  assert.equal(takenBack, 1, `one salvage within the backoff: ${JSON.stringify(replicaWrites)}`);
  assert.ok(replicaWrites.length <= 6, `${replicaWrites.length} writes of the replica in 1.5 s`);
  const list = await store.list('Event', { namespace: NS });
  const salvaged = list.items.filter((e) => (e as { reason?: string }).reason === 'AutoSalvaged');
  assert.equal(salvaged.length, 1, 'one AutoSalvaged event');
  const v = await store.get<Volume>('Volume', NS, 'v');
  assert.equal(v.status?.robustness, 'faulted', 'while the salvage waits, the volume says it is faulted');
});
