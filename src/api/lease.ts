// Lease (coordination.k8s.io/v1): a time-bounded claim. Each node agent renews one Lease per node as its
// heartbeat; the node controller marks a node down when `renewTime + leaseDurationSeconds` has passed.

import { ageColumn } from './common.js';
import type { KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import { int, obj, resourceSchema, str } from './schema.js';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** RFC 3339 with microseconds (metav1.MicroTime). */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export type Lease = KubeObject<LeaseSpec, never>;

const schema = resourceSchema({
  description: 'Lease is a time-bounded claim; node heartbeats are Leases.',
  spec: obj({
    holderIdentity: str({ nullable: true }),
    leaseDurationSeconds: int({ minimum: 1, nullable: true }),
    acquireTime: str({ nullable: true }),
    renewTime: str({ nullable: true }),
    leaseTransitions: int({ minimum: 0, nullable: true }),
  }),
});

export const leaseInfo: KindInfo = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  listKind: 'LeaseList',
  plural: 'leases',
  singular: 'lease',
  shortNames: [],
  namespaced: true,
  hasStatusSubresource: false,
  hasSpec: true,
  printerColumns: [
    { name: 'Holder', jsonPath: '.spec.holderIdentity', type: 'string' },
    { name: 'Renewed', jsonPath: '.spec.renewTime', type: 'date', priority: 1 },
    ageColumn,
  ],
  schema,
};
