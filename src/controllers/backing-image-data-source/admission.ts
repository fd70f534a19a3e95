// Admission of BackingImageDataSources: `spec.diskPath` must be a disk registered on `spec.nodeID` (and, when
// given, the disk of `spec.diskUUID`). The data-source pod writes under that path; without this check anyone who
// may create the resource could make a node write into any directory.

import { invalid } from '../../api/field-errors.js';
import type { FieldError } from '../../api/kind.js';
import type { KubeObject } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { BackingImageDataSourceSpec } from '../../api/backing-image-data-source.js';
import { LEASE_NAMESPACE } from '../../api/node-contract.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { AdmissionPlugin } from '../../store/resource-store.js';
import type { Store } from '../../store/types.js';

async function check(obj: KubeObject, store: Store): Promise<void> {
  const spec = (obj.spec ?? {}) as BackingImageDataSourceSpec;
  const path = spec.diskPath ?? '';
  if (path === '') return;
  let node: Node | undefined;
  try {
    node = spec.nodeID ? await store.get<Node>('Node', LEASE_NAMESPACE, spec.nodeID) : undefined;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const disks = Object.entries(node?.spec?.disks ?? {});
  const match = disks.find(([name, d]) => d.path === path && (!spec.diskUUID || node?.status?.diskStatus?.[name]?.diskUUID === spec.diskUUID));
  if (match) return;
  const causes: FieldError[] = [
    invalid('spec.diskPath', path, node ? `is not a disk of node "${spec.nodeID ?? ''}"${spec.diskUUID ? ` with UUID ${spec.diskUUID}` : ''} (disks: ${disks.map(([, d]) => d.path).join(', ') || 'none'})` : `node "${spec.nodeID ?? ''}" is not registered`),
  ];
  const name = obj.metadata.name ?? '';
  throw new StoreError('Invalid', `BackingImageDataSource "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`, {
    causes,
    details: { kind: 'backingimagedatasources.longhorn.io', name },
  });
}

export const backingImageDataSourceAdmission: AdmissionPlugin = {
  kinds: ['BackingImageDataSource'],
  validateCreate: (obj, store) => check(obj, store),
  validateUpdate: async (obj, old, store) => {
    const p = (o: KubeObject) => (o.spec as BackingImageDataSourceSpec | undefined)?.diskPath;
    if (p(obj) !== p(old)) await check(obj, store);
  },
};
