// The node admission check through the real store (in-memory SQLite): a disk leaves spec.disks only when no replica
// and no backing-image copy is on it; the refusal names them and how to move them. Other node writes pass.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BackingImage } from '../../api/backing-image.js';
import { DEFAULT_NAMESPACE as NS, LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { isInvalid } from '../../store/errors.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { nodeAdmission } from './admission.js';

let store: ResourceStore;
let closeStore: () => Promise<void>;
const disk = (path: string) => ({ path, allowScheduling: true, evictionRequested: false, storageReserved: 0, tags: [] });

before(async () => {
  ({ store, close: closeStore } = await openStore({ path: ':memory:', admission: [nodeAdmission] }));
  const { object: node } = await store.create<Node>({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Node',
    metadata: { name: 'n1', namespace: NS },
    spec: { disks: { a: disk('/a'), b: disk('/b'), c: disk('/c'), d: disk('/d') } },
  } as Node);
  const st = (uuid: string) => ({ diskUUID: uuid, diskPath: '', storageAvailable: 0, storageMaximum: 0, storageScheduled: 0, conditions: [] });
  await store.update<Node>({ ...node, status: { conditions: [], diskStatus: { a: st('uuid-a'), b: st('uuid-b'), c: st('uuid-c') } } } as Node, { subresource: 'status' });
  await store.create<Replica>({ apiVersion: LONGHORN_API_VERSION, kind: 'Replica', metadata: { name: 'v1-r-1', namespace: NS }, spec: { volumeName: 'v1', nodeID: 'n1', diskID: 'uuid-a' } } as Replica);
  await store.create<BackingImage>({ apiVersion: LONGHORN_API_VERSION, kind: 'BackingImage', metadata: { name: 'img', namespace: NS }, spec: { sourceType: 'download', sourceParameters: { url: 'https://example.com/x' }, diskFileSpecMap: { 'uuid-a': {}, 'uuid-b': {} } } } as unknown as BackingImage);
});

after(() => closeStore());

async function removeDisk(name: string): Promise<unknown> {
  const node = await store.get<Node>('Node', NS, 'n1');
  const disks = { ...(node.spec?.disks ?? {}) };
  delete disks[name];
  return store.update<Node>({ ...node, spec: { ...node.spec, disks } } as Node);
}

test('a disk holding a replica and a copy cannot be removed; the refusal names both and how to move them', async () => {
  await assert.rejects(removeDisk('a'), (err: Error) => {
    assert.ok(isInvalid(err));
    assert.equal(
      err.message,
      'Node "n1" is invalid: spec.disks.a: Forbidden: disk a (uuid-a) still holds replica v1-r-1 and a copy of backing image img: they move to other disks by themselves once spec.disks.a.evictionRequested is true (a replica once its replacement holds the data); remove the disk once it holds nothing',
    );
    return true;
  });
  await assert.rejects(removeDisk('b'), /disk b \(uuid-b\) still holds a copy of backing image img: they move to other disks by themselves once spec\.disks\.b\.evictionRequested is true; remove/);
});

test('an empty disk, a disk never registered, and writes that keep every disk pass', async () => {
  await removeDisk('c');
  await removeDisk('d');
  const node = await store.get<Node>('Node', NS, 'n1');
  assert.deepEqual(Object.keys(node.spec?.disks ?? {}).sort(), ['a', 'b']);
  await store.update<Node>({ ...node, spec: { ...node.spec, allowScheduling: false } } as Node);
});
