// The volume controller over the in-memory store, with no data plane: a new volume is "creating" until every
// replica that can be placed exists. On one node, a 3-replica volume gets one replica and becomes "detached" (it can
// be attached, degraded) with Scheduled=False saying why the other two cannot be placed; a volume for which no
// node qualifies stays "creating", with the same condition.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { MAINTENANCE_ATTACH_PREFIX, type Volume } from '../../api/volume.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { MemoryStore, runControllers } from '../../controller-kit/testing.js';
import { volumeController } from './index.js';

const NS = 'longhorn-system';
const GiB = 2 ** 30;
const store = new MemoryStore();
let stop: () => Promise<void>;

/** A Ready node with one schedulable 100 GiB disk (`uuid`); the status write is what makes it schedulable. */
async function readyNode(name: string, uuid: string): Promise<void> {
  const { object: node } = await store.create<Node>({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'Node',
    metadata: { name, namespace: NS },
    spec: { allowScheduling: true, tags: [], disks: { 'disk-1': { path: '/d1', allowScheduling: true, tags: [] } } },
  } as Node);
  const ok = (type: string) => ({ type, status: 'True', reason: '', message: '', lastProbeTime: '', lastTransitionTime: '' });
  node.status = {
    conditions: [ok('Ready'), ok('Schedulable')],
    diskStatus: { 'disk-1': { diskUUID: uuid, diskPath: '/d1', storageAvailable: 100 * GiB, storageMaximum: 100 * GiB, storageScheduled: 0, conditions: [ok('Ready'), ok('Schedulable')] } },
  } as NonNullable<Node['status']>;
  await store.update(node, { subresource: 'status' });
}

before(async () => {
  await readyNode('node-1', 'uuid-1');
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'volume-controller', logger: silentLogger, registry: new Registry() });
  stop = await runControllers(informers, volumeController({ store, informers, events }));
});

after(() => stop());

async function settled(name: string): Promise<Volume> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await store.get<Volume>('Volume', NS, name);
    const scheduled = v.status?.conditions?.find((c) => c.type === 'Scheduled');
    if (scheduled?.status === 'False' && v.status?.state) return v;
    if (Date.now() > deadline) assert.fail(`volume ${name} never reported Scheduled=False: ${JSON.stringify(v.status)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a volume with some replicas placed is detached, not creating; Scheduled says why the rest are not', async () => {
  await store.create<Volume>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Volume', metadata: { name: 'three', namespace: NS }, spec: { size: String(GiB), numberOfReplicas: 3 } });
  const v = await settled('three');
  const replicas = (await store.list<Replica>('Replica', { namespace: NS })).items.filter((r) => r.spec?.volumeName === 'three');
  assert.equal(replicas.length, 1, 'one replica on the one node');
  assert.equal(v.status?.state, 'detached');
  const scheduled = v.status?.conditions?.find((c) => c.type === 'Scheduled');
  assert.match(scheduled?.message ?? '', /^2 of 3 replicas cannot be scheduled: .*already holds a replica/);
});

test('a volume no replica of which can be placed stays creating, and says why', async () => {
  await store.create<Volume>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Volume', metadata: { name: 'nowhere', namespace: NS }, spec: { size: String(GiB), numberOfReplicas: 1, nodeSelector: ['gpu'] } });
  const v = await settled('nowhere');
  assert.equal(v.status?.state, 'creating');
  const scheduled = v.status?.conditions?.find((c) => c.type === 'Scheduled');
  assert.match(scheduled?.message ?? '', /^1 of 1 replicas cannot be scheduled: .*gpu/);
});

test('a volume short of replicas gets them when a node with room joins', async () => {
  const before = (await store.list<Replica>('Replica', { namespace: NS })).items.filter((r) => r.spec?.volumeName === 'three');
  assert.equal(before.length, 1);
  // Only the status write makes the node schedulable: the retry comes from the node's update, not from the volume.
  await readyNode('node-2', 'uuid-2');
  const deadline = Date.now() + 5000;
  for (;;) {
    const mine = (await store.list<Replica>('Replica', { namespace: NS })).items.filter((r) => r.spec?.volumeName === 'three');
    if (mine.length === 2) {
      assert.deepEqual(mine.map((r) => r.spec?.nodeID).sort(), ['node-1', 'node-2']);
      break;
    }
    if (Date.now() > deadline) assert.fail(`volume three still has ${mine.length} replica(s) after node-2 joined`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const v = await store.get<Volume>('Volume', NS, 'three');
  assert.match(v.status?.conditions?.find((c) => c.type === 'Scheduled')?.message ?? '', /^1 of 3 replicas cannot be scheduled/);
});

test("a user's attach of a clone that is not completed waits, also on the node the copy's own attach is on", async () => {
  const { object: v } = await store.create<Volume>({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'Volume',
    metadata: { name: 'clone', namespace: NS, annotations: { [`${MAINTENANCE_ATTACH_PREFIX}clone`]: 'node-1' } },
    spec: { size: String(GiB), numberOfReplicas: 1, dataSource: 'vol://src', nodeID: 'node-1' },
  });
  v.status = { ...v.status, cloneStatus: { sourceVolume: 'src', snapshot: 's', state: 'failed', message: 'the source replica is not running', attemptCount: 1, nextAllowedAttemptAt: '' } } as NonNullable<Volume['status']>;
  await store.update(v, { subresource: 'status' });
  const deadline = Date.now() + 5000;
  for (;;) {
    const got = await store.get<Volume>('Volume', NS, 'clone');
    const attached = got.status?.conditions?.find((c) => c.type === 'Attached');
    if (/is a clone of vol:\/\/src that is not completed \(failed: the source replica is not running\)/.test(attached?.message ?? '')) {
      assert.equal(got.status?.state, 'attaching');
      assert.equal((got.status as Record<string, unknown>)['nbdEndpoint'] ?? '', '', 'no endpoint is handed out for it');
      break;
    }
    if (Date.now() > deadline) assert.fail(`the attach was not held back for the clone: ${JSON.stringify(got.status)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
});
