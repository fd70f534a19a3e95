// Test helpers of the volume controller's tests: a Ready node with one Ready, schedulable disk.

import { LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Store } from '../../store/types.js';

const GiB = 2 ** 30;

export const trueCondition = (type: string) => ({ type, status: 'True', reason: '', message: '', lastProbeTime: '', lastTransitionTime: '' });

/** Node `name` with disk `disk-1` (UUID `uuid-<name>`, path `/<name>`) of `bytes`, all free; Ready and schedulable. */
export async function readyNode(store: Store, namespace: string, name: string, bytes = 100 * GiB): Promise<void> {
  const { object } = await store.create<Node>({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Node',
    metadata: { name, namespace },
    spec: { allowScheduling: true, tags: [], disks: { 'disk-1': { path: `/${name}`, allowScheduling: true, evictionRequested: false, tags: [] } } },
  } as Node);
  const ok = trueCondition;
  object.status = {
    conditions: [ok('Ready'), ok('Schedulable')],
    diskStatus: { 'disk-1': { diskUUID: `uuid-${name}`, diskPath: `/${name}`, storageAvailable: bytes, storageMaximum: bytes, storageScheduled: 0, conditions: [ok('Ready'), ok('Schedulable')] } },
  } as NonNullable<Node['status']>;
  await store.update(object, { subresource: 'status' });
}
