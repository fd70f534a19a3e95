// The node controller on a FakeClock over the in-memory store: Ready=False within node-down-timeout after
// heartbeats stop (with an actionable message), True again when they resume, only the affected node enqueued,
// and the setting honoured.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import type { BackingImage } from '../../api/backing-image.js';
import type { Lease } from '../../api/lease.js';
import type { Replica } from '../../api/replica.js';
import type { Node } from '../../api/node.js';
import { FakeClock, settle } from '../../controller-kit/clock.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { MemoryStore, runControllers } from '../../controller-kit/testing.js';
import { computeReadiness, LEASE_NAMESPACE, microTimestamp, nodeController } from './index.js';

const NS = LEASE_NAMESPACE;
const clock = new FakeClock(Math.floor(Date.now() / 1000) * 1000);
const store = new MemoryStore();
const adds: string[] = [];
let stop: () => Promise<void>;

async function ready(name: string): Promise<{ status?: string; reason?: string; message?: string } | undefined> {
  const n = await store.get<Node>('Node', NS, name);
  return n.status?.conditions?.find((c) => c.type === 'Ready');
}

async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await fn()) return;
    await settle(2);
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function renew(name: string): Promise<void> {
  const lease = await store.get<Lease>('Lease', NS, name);
  lease.spec = { ...lease.spec, renewTime: microTimestamp(clock.now()) };
  await store.update(lease);
}

before(async () => {
  for (const name of ['node-1', 'node-2']) {
    await store.create<Node>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Node', metadata: { name, namespace: NS }, spec: {} });
    await store.create<Lease>({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: NS }, spec: { holderIdentity: name, renewTime: microTimestamp(clock.now()) } });
  }
  await store.create({ apiVersion: 'longhorn.io/v1beta2', kind: 'Setting', metadata: { name: 'node-down-timeout', namespace: NS }, value: '30' });
  const registry = new Registry();
  const informers = new InformerFactory({ store, clock, logger: silentLogger });
  const controller = nodeController({
    store,
    informers,
    clock,
    logger: silentLogger,
    registry,
    recorder: new EventRecorder({ store, component: 'node-controller', clock, logger: silentLogger, registry }),
  });
  const add = controller.queue.add.bind(controller.queue);
  controller.queue.add = (key: string) => {
    adds.push(key);
    add(key);
  };
  stop = await runControllers(informers, controller);
});

after(() => stop());

test('nodes with fresh heartbeats become Ready', async () => {
  await until('both nodes Ready', async () => (await ready('node-1'))?.status === 'True' && (await ready('node-2'))?.status === 'True');
});

test('a node whose heartbeats stop is Ready=False within node-down-timeout, with an actionable message', async () => {
  // node-1 keeps renewing every 5 s; node-2 stops.
  for (let t = 0; t < 25; t += 5) {
    await renew('node-1');
    await clock.advanceAndSettle(5000);
  }
  assert.equal((await ready('node-2'))?.status, 'True', 'still Ready 25 s after its last heartbeat');
  adds.length = 0;
  await renew('node-1');
  await until('node-1 reconciled', async () => adds.includes(`${NS}/node-1`));
  assert.deepEqual([...new Set(adds)], [`${NS}/node-1`], 'a heartbeat enqueues only its own node');
  await clock.advanceAndSettle(5001);
  await until('node-2 down', async () => (await ready('node-2'))?.status === 'False');
  const cond = await ready('node-2');
  assert.equal(cond?.reason, 'NodeHeartbeatTimeout');
  assert.match(cond?.message ?? '', /^no heartbeat from node-2 for 30 s \(node-down-timeout 30 s\): is `stratum node --name node-2` running there\?$/);
  assert.equal((await ready('node-1'))?.status, 'True');
  const events = await store.list('Event');
  assert.ok(events.items.some((e) => e['reason'] === 'NodeNotReady' && String(e['message']).includes('node-2')));
});

test('the message stays put while the node stays down, and Ready returns with the heartbeat', async () => {
  const before = await ready('node-2');
  await clock.advanceAndSettle(20_000);
  await renew('node-1');
  await settle(10);
  assert.equal((await ready('node-2'))?.message, before?.message);
  await renew('node-2');
  await until('node-2 Ready again', async () => (await ready('node-2'))?.status === 'True');
});

test('leases that belong to no node enqueue nothing; a timeout change re-checks every node', async () => {
  await settle(10);
  adds.length = 0;
  await store.create<Lease>({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'leader', namespace: NS }, spec: { holderIdentity: 'x' } });
  await settle(10);
  assert.equal(adds.length, 0, `enqueued: ${adds.join(", ")}`);
  const setting = await store.get('Setting', NS, 'node-down-timeout');
  await store.update({ ...setting, value: '5' });
  await until('both nodes re-checked', async () => adds.includes(`${NS}/node-1`) && adds.includes(`${NS}/node-2`));
  await clock.advanceAndSettle(6000);
  await until('both down after the shorter timeout', async () => (await ready('node-1'))?.status === 'False' && (await ready('node-2'))?.status === 'False');
  assert.match((await ready('node-1'))?.message ?? '', /node-down-timeout 5 s/);
});

test('computeReadiness: a node that never heartbeated gets one timeout of grace, then False', () => {
  const base = { nodeName: 'n', createdAtMs: 0, lease: undefined, timeoutSeconds: 30, current: undefined };
  const early = computeReadiness({ ...base, nowMs: 10_000 });
  assert.equal(early.status, 'Unknown');
  assert.equal(early.recheckAfterMs, 20_000);
  const late = computeReadiness({ ...base, nowMs: 31_000 });
  assert.equal(late.status, 'False');
  assert.equal(late.reason, 'NoHeartbeat');
  assert.match(late.message, /never sent a heartbeat/);
});

test('each disk shows what is scheduled on it: replicas by volume size, backing-image copies by bytes', async () => {
  const GiB = 2 ** 30;
  const n = await store.get<Node>('Node', NS, 'node-1');
  n.status = { ...n.status, diskStatus: { 'disk-1': { diskUUID: 'uuid-1', storageMaximum: 10 * GiB, storageAvailable: 9 * GiB, conditions: [] }, 'disk-2': { diskUUID: 'uuid-2', conditions: [] } } };
  await store.update(n, { subresource: 'status' });
  const disk = async (d: string) => (await store.get<Node>('Node', NS, 'node-1')).status?.diskStatus?.[d];
  const replica = (name: string, diskID: string, size: number) =>
    ({ apiVersion: 'longhorn.io/v1beta2', kind: 'Replica', metadata: { name, namespace: NS }, spec: { nodeID: 'node-1', diskID, volumeName: 'v', volumeSize: String(size) } }) as Replica;
  await store.create<Replica>(replica('r1', 'uuid-1', 2 * GiB));
  await store.create<Replica>(replica('r2', 'uuid-1', 3 * GiB));
  await store.create<Replica>({ ...replica('r3', 'uuid-x', GiB), spec: { nodeID: 'node-2', diskID: 'uuid-x', volumeSize: String(GiB) } });
  await store.create<BackingImage>({ apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name: 'bi', namespace: NS }, spec: { diskFileSpecMap: { 'uuid-2': {} } }, status: { size: 600, realSize: 400 } } as BackingImage);
  await until('disk-1 scheduled 5 GiB', async () => (await disk('disk-1'))?.storageScheduled === 5 * GiB);
  assert.deepEqual((await disk('disk-1'))?.scheduledReplica, { r1: 2 * GiB, r2: 3 * GiB });
  await until('disk-2 lists the copy', async () => (await disk('disk-2'))?.scheduledBackingImage?.['bi'] === 400);
  assert.equal((await disk('disk-2'))?.storageScheduled, 0);
  await store.delete('Replica', NS, 'r1');
  await until('r1 gone from disk-1', async () => (await disk('disk-1'))?.storageScheduled === 3 * GiB);
  assert.deepEqual((await disk('disk-1'))?.scheduledReplica, { r2: 3 * GiB });
  await store.delete('BackingImage', NS, 'bi');
  await until('the copy gone from disk-2', async () => Object.keys((await disk('disk-2'))?.scheduledBackingImage ?? {}).length === 0);
});
