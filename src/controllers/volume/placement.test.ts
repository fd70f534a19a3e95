import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { expansionShortfalls } from './expansion-room.js';
import { placeReplica } from './placement.js';
import { failureOf, robustnessEvent, robustnessOf } from './robustness.js';

const ready = [{ type: 'Ready', status: 'True' }, { type: 'Schedulable', status: 'True' }];
/** A node whose disks have `max` bytes, `free` of them available (all of it unless said). */
function node(name: string, disks: Record<string, { max: number; free?: number; tags?: string[] }>, tags: string[] = []): DeepReadonly<Node> {
  return {
    metadata: { name },
    spec: { allowScheduling: true, tags, disks: Object.fromEntries(Object.entries(disks).map(([d, x]) => [d, { path: `/${name}/${d}`, allowScheduling: true, tags: x.tags ?? [] }])) },
    status: {
      conditions: [{ type: 'Ready', status: 'True' }],
      diskStatus: Object.fromEntries(Object.entries(disks).map(([d, x]) => [d, { diskUUID: `${name}-${d}`, diskPath: `/${name}/${d}`, storageMaximum: x.max, storageAvailable: x.free ?? x.max, conditions: ready }])),
    },
  } as unknown as DeepReadonly<Node>;
}
const replica = (nodeID: string, diskID: string, size = 0, extra: Record<string, unknown> = {}) =>
  ({ metadata: { name: `r-${diskID}` }, spec: { nodeID, diskID, volumeSize: String(size), ...extra }, status: {} }) as unknown as DeepReadonly<Replica>;

const GiB = 2 ** 30;
const limits = { overProvisioningPercent: 100, minimalAvailablePercent: 25 };
const base = { allReplicas: [], siblings: [], size: GiB, softAntiAffinity: false, limits };

test('a replica goes to a node that holds none of the volume, the one with most room', () => {
  const nodes = [node('n1', { d1: { max: 10 * GiB } }), node('n2', { d1: { max: 20 * GiB } }), node('n3', { d1: { max: 5 * GiB } })];
  const p = placeReplica({ ...base, nodes, siblings: [replica('n2', 'n2-d1')] });
  assert.ok('disk' in p);
  assert.equal(p.disk.nodeName, 'n1');
});

test('volume sizes promised to a disk count against it, up to storage-over-provisioning-percentage of its size', () => {
  const nodes = [node('n1', { d1: { max: 3 * GiB } }), node('n2', { d1: { max: 2 * GiB } })];
  const promised = [replica('n1', 'n1-d1', 2.5 * GiB)];
  const p = placeReplica({ ...base, nodes, allReplicas: promised });
  assert.ok('disk' in p);
  assert.equal(p.disk.nodeName, 'n2', 'n1 can take only 0.5 GiB more');
  const full = placeReplica({ ...base, nodes, allReplicas: [...promised, replica('n2', 'n2-d1', 1.5 * GiB)] });
  assert.ok('reason' in full);
  assert.match(full.reason, /n1\/d1 can take 512\.0 MiB more of volume sizes \(storage-over-provisioning-percentage 100% of 3\.0 GiB, 2\.5 GiB promised to replicas\), needs 1\.0 GiB/);
  const over = placeReplica({ ...base, nodes, allReplicas: promised, limits: { ...limits, overProvisioningPercent: 200 } });
  assert.ok('disk' in over);
  assert.equal(over.disk.nodeName, 'n1', 'at 200% n1 can take 3.5 GiB more');
  assert.ok('reason' in placeReplica({ ...base, nodes, limits: { ...limits, overProvisioningPercent: 0 } }), '0% takes nothing');
});

test('what replicas wrote is not charged twice: a disk their data filled still takes volumes up to its limit', () => {
  // A 10 GiB disk whose 6 GiB volume wrote all of it: 4 GiB available, 4 GiB of volume sizes left to promise.
  const nodes = [node('n1', { d1: { max: 10 * GiB, free: 4 * GiB } })];
  const p = placeReplica({ ...base, nodes, size: 4 * GiB, allReplicas: [replica('n1', 'n1-d1', 6 * GiB)] });
  assert.ok('disk' in p);
  assert.ok('reason' in placeReplica({ ...base, nodes, size: 4 * GiB + 1, allReplicas: [replica('n1', 'n1-d1', 6 * GiB)] }));
});

test('storageReserved is taken off the size before over-provisioning applies', () => {
  const n = node('n1', { d1: { max: 10 * GiB } }) as unknown as Node;
  n.spec!.disks!['d1']!.storageReserved = 8 * GiB;
  const p = placeReplica({ ...base, nodes: [n as DeepReadonly<Node>], size: 3 * GiB });
  assert.ok('reason' in p);
  assert.match(p.reason, /can take 2\.0 GiB more of volume sizes \(storage-over-provisioning-percentage 100% of 2\.0 GiB/);
});

test('no second replica on a node without soft anti-affinity; the reason says why', () => {
  const nodes = [node('n1', { d1: { max: 10 * GiB }, d2: { max: 10 * GiB } })];
  const siblings = [replica('n1', 'n1-d1')];
  const hard = placeReplica({ ...base, nodes, siblings });
  assert.ok('reason' in hard);
  assert.match(hard.reason, /already holds a replica/);
  const soft = placeReplica({ ...base, nodes, siblings, softAntiAffinity: true });
  assert.ok('disk' in soft);
  assert.equal(soft.disk.diskUUID, 'n1-d2');
});

test('selectors and space failures are named', () => {
  const nodes = [node('n1', { d1: { max: 10 * GiB, tags: ['ssd'] } }, ['fast'])];
  const sel = placeReplica({ ...base, nodes, diskSelector: ['nvme'] });
  assert.ok('reason' in sel);
  assert.match(sel.reason, /disk selector \[nvme\]/);
  const big = placeReplica({ ...base, nodes, size: 20 * GiB, nodeSelector: ['fast'], diskSelector: ['ssd'] });
  assert.ok('reason' in big);
  assert.match(big.reason, /^no disk has room: n1\/d1 can take 10\.0 GiB more of volume sizes .*needs 20\.0 GiB$/);
});

test('a disk without a copy of the backing image needs free space for one above the minimal available share; the reason names the image', () => {
  const nodes = [node('n1', { d1: { max: 8 * GiB, free: 3 * GiB } }), node('n2', { d1: { max: 8 * GiB, free: 5 * GiB } }), node('n3', { d1: { max: 8 * GiB, free: 4 * GiB } })];
  const image = { name: 'ubuntu', bytes: 2 * GiB, disks: new Set(['n1-d1']) };
  // n2 has the most free space, but a copy would take 2 GiB of it: n1, which holds one, has more left.
  const first = placeReplica({ ...base, nodes, backingImage: image });
  assert.ok('disk' in first);
  assert.equal(first.disk.nodeName, 'n1');
  const without = placeReplica({ ...base, nodes });
  assert.ok('disk' in without);
  assert.equal(without.disk.nodeName, 'n2', 'without the image n2 would be chosen');
  // n3: 4 GiB free less a 2 GiB copy leaves 2 GiB, not above 25% of 8 GiB.
  const third = placeReplica({ ...base, nodes, backingImage: image, siblings: [replica('n1', 'n1-d1'), replica('n2', 'n2-d1')] });
  assert.ok('reason' in third);
  assert.equal(
    third.reason,
    'no disk has room: n3/d1 has 4.0 GiB free, and a 2.0 GiB copy of backing image ubuntu would leave less than the 2.0 GiB that must stay free (storage-minimal-available-percentage 25%); n1, n2 already hold a replica of this volume',
  );
  // Where the copy is already (being) made, only the volume's size counts.
  const there = placeReplica({ ...base, nodes, backingImage: { ...image, disks: new Set(['n3-d1']) }, siblings: [replica('n1', 'n1-d1'), replica('n2', 'n2-d1')] });
  assert.ok('disk' in there);
  assert.equal(there.disk.nodeName, 'n3');
  const lower = placeReplica({ ...base, nodes, backingImage: image, siblings: [replica('n1', 'n1-d1'), replica('n2', 'n2-d1')], limits: { ...limits, minimalAvailablePercent: 10 } });
  assert.ok('disk' in lower, 'at 10% the copy fits');
});

test('robustness: healthy, degraded, faulted while attached; unknown detached, faulted once every replica made failed', () => {
  const live = ['a', 'b', 'c'];
  const base = { wanted: 3, liveReplicas: live, madeReplicas: 3 };
  assert.equal(robustnessOf({ ...base, attached: true, modes: { a: 'RW', b: 'RW', c: 'RW' } }), 'healthy');
  assert.equal(robustnessOf({ ...base, attached: true, modes: { a: 'RW', b: 'WO', c: 'ERR' } }), 'degraded');
  assert.equal(robustnessOf({ ...base, attached: true, modes: { a: 'ERR' } }), 'faulted');
  assert.equal(robustnessOf({ ...base, attached: false, modes: {} }), 'unknown');
  assert.equal(robustnessOf({ ...base, attached: false, modes: {}, liveReplicas: [] }), 'faulted');
  // A new volume, whose replicas are not made yet, is not faulted (nor does it get a Faulted warning).
  assert.equal(robustnessOf({ ...base, attached: false, modes: {}, liveReplicas: [], madeReplicas: 0 }), 'unknown');
});

test('robustness events: degraded and faulted name the replicas that are not RW; healthy only after either', () => {
  const live = ['v-r-a', 'v-r-b', 'v-r-c'];
  const ev = (from: Parameters<typeof robustnessEvent>[0]['from'], to: Parameters<typeof robustnessEvent>[0]['to'], modes: Record<string, string>, liveReplicas = live) =>
    robustnessEvent({ from, to, wanted: 3, modes, liveReplicas });
  assert.deepEqual(ev('healthy', 'degraded', { 'v-r-a': 'RW', 'v-r-b': 'WO', 'v-r-c': 'ERR' }), {
    type: 'Warning',
    reason: 'Degraded',
    message: 'volume is degraded: 1 of 3 replicas RW; v-r-b WO (rebuilding), v-r-c ERR',
  });
  assert.equal(ev('healthy', 'degraded', { 'v-r-a': 'RW', 'v-r-b': 'RW' })?.message, 'volume is degraded: 2 of 3 replicas RW; v-r-c not in the engine (its process is not started)');
  assert.equal(robustnessEvent({ from: 'healthy', to: 'degraded', wanted: 3, modes: { 'v-r-a': 'RW', 'v-r-b': 'RW' }, liveReplicas: live, processStates: { 'v-r-c': 'unknown' } })?.message,
    'volume is degraded: 2 of 3 replicas RW; v-r-c not in the engine (its process is unknown)');
  assert.equal(ev('healthy', 'degraded', { 'v-r-a': 'RW', 'v-r-b': 'RW' }, ['v-r-a', 'v-r-b'])?.message, 'volume is degraded: 2 of 3 replicas RW; the others are failed or not yet scheduled');
  assert.deepEqual(ev('degraded', 'faulted', { 'v-r-a': 'ERR' }, ['v-r-a']), { type: 'Warning', reason: 'Faulted', message: 'volume is faulted: no replica is RW; v-r-a ERR' });
  assert.equal(ev('unknown', 'faulted', {}, [])?.message, 'volume is faulted: no usable replica is left');
  assert.deepEqual(ev('degraded', 'healthy', { 'v-r-a': 'RW', 'v-r-b': 'RW', 'v-r-c': 'RW' }), { type: 'Normal', reason: 'Healthy', message: 'volume is healthy again: 3 of 3 replicas RW' });
  assert.equal(ev('unknown', 'healthy', { 'v-r-a': 'RW', 'v-r-b': 'RW', 'v-r-c': 'RW' }), undefined, 'an attach is no news');
  assert.equal(ev('', 'unknown', {}), undefined);
  assert.equal(ev('degraded', 'degraded', {}), undefined);
});

test('a replica fails on ERR in a running engine, a failed process, or a down node it is needed on', () => {
  const r = replica('n1', 'd1');
  const base2 = { replica: r, engineRunning: true, engineMode: 'RW', engineError: undefined, nodeReady: true, needed: true };
  assert.equal(failureOf(base2), undefined);
  assert.match(failureOf({ ...base2, engineMode: 'ERR', engineError: 'timed out' }) ?? '', /ERR: timed out/);
  assert.equal(failureOf({ ...base2, engineRunning: false, engineMode: 'ERR' }), undefined);
  assert.match(failureOf({ ...base2, nodeReady: false }) ?? '', /node n1 is down/);
  assert.equal(failureOf({ ...base2, nodeReady: false, needed: false }), undefined);
  assert.equal(failureOf({ ...base2, replica: replica('n1', 'd1', 0, { failedAt: 'x' }), engineMode: 'ERR' }), undefined);
});

test('expansion room: every disk holding a replica must stay within over-provisioning at the new size', () => {
  const nodes = [node('n1', { d1: { max: 10 * GiB } }), node('n2', { d1: { max: 4 * GiB } })];
  const mine = [replica('n1', 'n1-d1', 2 * GiB), replica('n2', 'n2-d1', 2 * GiB)];
  const other = { ...replica('n2', 'n2-d1', GiB), metadata: { name: 'other' } } as DeepReadonly<Replica>;
  const input = { replicas: mine, allReplicas: [...mine, other], nodes, limits };
  assert.deepEqual(expansionShortfalls({ ...input, growBy: GiB }), [], 'n2 holds 3 GiB of 4 GiB: one more fits');
  const short = expansionShortfalls({ ...input, growBy: 2 * GiB });
  assert.equal(short.length, 1);
  assert.match(short[0]!, /^n2\/d1 can take 1.0 GiB more of volume sizes \(storage-over-provisioning-percentage 100% of 4.0 GiB, 3.0 GiB promised to replicas\), needs 2.0 GiB$/);
  assert.deepEqual(expansionShortfalls({ ...input, growBy: 2 * GiB, limits: { ...limits, overProvisioningPercent: 200 } }), [], 'over-provisioning 200% makes room');
  assert.deepEqual(expansionShortfalls({ ...input, growBy: 0 }), []);
});
