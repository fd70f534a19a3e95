import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { placeReplica } from './placement.js';
import { failureOf, robustnessOf } from './robustness.js';

const ready = [{ type: 'Ready', status: 'True' }, { type: 'Schedulable', status: 'True' }];
function node(name: string, disks: Record<string, { free: number; tags?: string[] }>, tags: string[] = []): DeepReadonly<Node> {
  return {
    metadata: { name },
    spec: { allowScheduling: true, tags, disks: Object.fromEntries(Object.entries(disks).map(([d, x]) => [d, { path: `/${name}/${d}`, allowScheduling: true, tags: x.tags ?? [] }])) },
    status: {
      conditions: [{ type: 'Ready', status: 'True' }],
      diskStatus: Object.fromEntries(Object.entries(disks).map(([d, x]) => [d, { diskUUID: `${name}-${d}`, diskPath: `/${name}/${d}`, storageAvailable: x.free, conditions: ready }])),
    },
  } as unknown as DeepReadonly<Node>;
}
const replica = (nodeID: string, diskID: string, size = 0, extra: Record<string, unknown> = {}) =>
  ({ metadata: { name: `r-${diskID}` }, spec: { nodeID, diskID, volumeSize: String(size), ...extra }, status: {} }) as unknown as DeepReadonly<Replica>;

const GiB = 2 ** 30;
const base = { allReplicas: [], siblings: [], size: GiB, softAntiAffinity: false };

test('a replica goes to a node that holds none of the volume, the one with most free space', () => {
  const nodes = [node('n1', { d1: { free: 10 * GiB } }), node('n2', { d1: { free: 20 * GiB } }), node('n3', { d1: { free: 5 * GiB } })];
  const p = placeReplica({ ...base, nodes, siblings: [replica('n2', 'n2-d1')] });
  assert.ok('disk' in p);
  assert.equal(p.disk.nodeName, 'n1');
});

test('space promised to other replicas counts against a disk', () => {
  const nodes = [node('n1', { d1: { free: 3 * GiB } }), node('n2', { d1: { free: 2 * GiB } })];
  const p = placeReplica({ ...base, nodes, allReplicas: [replica('n1', 'n1-d1', 2.5 * GiB)] });
  assert.ok('disk' in p);
  assert.equal(p.disk.nodeName, 'n2');
});

test('no second replica on a node without soft anti-affinity; the reason says why', () => {
  const nodes = [node('n1', { d1: { free: 10 * GiB }, d2: { free: 10 * GiB } })];
  const siblings = [replica('n1', 'n1-d1')];
  const hard = placeReplica({ ...base, nodes, siblings });
  assert.ok('reason' in hard);
  assert.match(hard.reason, /already holds a replica/);
  const soft = placeReplica({ ...base, nodes, siblings, softAntiAffinity: true });
  assert.ok('disk' in soft);
  assert.equal(soft.disk.diskUUID, 'n1-d2');
});

test('selectors and space failures are named', () => {
  const nodes = [node('n1', { d1: { free: 10 * GiB, tags: ['ssd'] } }, ['fast'])];
  const sel = placeReplica({ ...base, nodes, diskSelector: ['nvme'] });
  assert.ok('reason' in sel);
  assert.match(sel.reason, /disk selector \[nvme\]/);
  const big = placeReplica({ ...base, nodes, size: 20 * GiB, nodeSelector: ['fast'], diskSelector: ['ssd'] });
  assert.ok('reason' in big);
  assert.match(big.reason, /^no disk has room: n1\/d1 has 10\.0 GiB available, needs 20\.0 GiB for the replica/);
});

test('a disk without a copy of the backing image needs room for one too; the reason names the image', () => {
  const nodes = [node('n1', { d1: { free: 3 * GiB } }), node('n2', { d1: { free: 4 * GiB } }), node('n3', { d1: { free: 2.5 * GiB } })];
  const image = { name: 'ubuntu', bytes: 2 * GiB, disks: new Set(['n1-d1']) };
  // n2 has the most free space, but a copy would take 2 GiB of it: n1, which holds one, has more room left.
  const first = placeReplica({ ...base, nodes, backingImage: image });
  assert.ok('disk' in first);
  assert.equal(first.disk.nodeName, 'n1');
  const without = placeReplica({ ...base, nodes });
  assert.ok('disk' in without);
  assert.equal(without.disk.nodeName, 'n2', 'without the image n2 would be chosen');
  const third = placeReplica({ ...base, nodes, size: 1.5 * GiB, backingImage: image, siblings: [replica('n1', 'n1-d1'), replica('n2', 'n2-d1')] });
  assert.ok('reason' in third, 'n3: 2.5 GiB free is short of 1.5 GiB + a 2 GiB copy');
  assert.equal(
    third.reason,
    'no disk has room: n3/d1 has 2.5 GiB available, needs 1.5 GiB for the replica + 2.0 GiB for a copy of backing image ubuntu (available: free space less the sizes of the replicas already on the disk); n1, n2 already hold a replica of this volume',
  );
  // Where the copy is already (being) made, only the replica's own size counts.
  const there = placeReplica({ ...base, nodes, size: 1.5 * GiB, backingImage: { ...image, disks: new Set(['n3-d1']) }, siblings: [replica('n1', 'n1-d1'), replica('n2', 'n2-d1')] });
  assert.ok('disk' in there);
  assert.equal(there.disk.nodeName, 'n3');
});

test('robustness: healthy, degraded, faulted while attached; unknown or faulted detached', () => {
  const live = ['a', 'b', 'c'];
  assert.equal(robustnessOf({ attached: true, wanted: 3, modes: { a: 'RW', b: 'RW', c: 'RW' }, liveReplicas: live }), 'healthy');
  assert.equal(robustnessOf({ attached: true, wanted: 3, modes: { a: 'RW', b: 'WO', c: 'ERR' }, liveReplicas: live }), 'degraded');
  assert.equal(robustnessOf({ attached: true, wanted: 3, modes: { a: 'ERR' }, liveReplicas: live }), 'faulted');
  assert.equal(robustnessOf({ attached: false, wanted: 3, modes: {}, liveReplicas: live }), 'unknown');
  assert.equal(robustnessOf({ attached: false, wanted: 3, modes: {}, liveReplicas: [] }), 'faulted');
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
