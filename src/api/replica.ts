// Replica (longhorn.io/v1beta2, `lhr`): one copy of a volume's data on one disk. A replica of a volume with a
// backing image layers its writes over that image's file on the same disk, so it may start only once the
// disk's copy is ready (condition WaitForBackingImage until then).

import { ageColumn, immutableOnceSet, specOf, stringField } from './common.js';
import { invalid } from './field-errors.js';
import { instanceSpecProperties, instanceStatusProperties, type InstanceSpec, type InstanceStatus } from './instance.js';
import type { FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type KubeObject } from './meta.js';
import { dns1123SubdomainErrors, validateAbsolutePath, validatePathComponent } from './names.js';
import { bool, int, int64String, obj, resourceSchema, str } from './schema.js';

/** Labels Longhorn puts on replicas so that dependants can be found by selector. */
export const ReplicaLabel = {
  backingImage: 'longhorn.io/backing-image',
  diskUUID: 'longhorn.io/disk-uuid',
  node: 'longhorn.io/node',
  volume: 'longhorn.io/volume',
} as const;

export const ReplicaCondition = { waitForBackingImage: 'WaitForBackingImage' } as const;

export interface ReplicaSpec extends InstanceSpec {
  engineName?: string;
  healthyAt?: string;
  lastHealthyAt?: string;
  failedAt?: string;
  lastFailedAt?: string;
  diskID?: string;
  diskPath?: string;
  /** Directory of this replica's data under `<diskPath>/replicas/`. */
  dataDirectoryName?: string;
  backingImage?: string;
  active?: boolean;
  hardNodeAffinity?: string;
  revisionCounterDisabled?: boolean;
  unmapMarkDiskChainRemovedEnabled?: boolean;
  rebuildRetryCount?: number;
  evictionRequested?: boolean;
  snapshotMaxCount?: number;
  snapshotMaxSize?: string;
  migrationEngineName?: string;
  linkedCloneSrcReplicaName?: string;
}

export type ReplicaStatus = InstanceStatus;

export type Replica = KubeObject<ReplicaSpec, ReplicaStatus>;

const schema = resourceSchema({
  description: 'Replica is one copy of a volume on one disk.',
  spec: obj({
    ...instanceSpecProperties,
    engineName: str(),
    healthyAt: str(),
    lastHealthyAt: str(),
    failedAt: str(),
    lastFailedAt: str(),
    diskID: str(),
    diskPath: str(),
    dataDirectoryName: str(),
    backingImage: str(),
    active: bool(),
    hardNodeAffinity: str(),
    revisionCounterDisabled: bool(),
    unmapMarkDiskChainRemovedEnabled: bool(),
    rebuildRetryCount: int(),
    evictionRequested: bool(),
    snapshotMaxCount: int(),
    snapshotMaxSize: int64String(),
    migrationEngineName: str(),
    linkedCloneSrcReplicaName: str(),
  }),
  status: obj(instanceStatusProperties, { preserveUnknown: true }),
});

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(o);
  const errs: FieldError[] = [];
  const dir = stringField(spec, 'dataDirectoryName');
  if (dir !== '') errs.push(...validatePathComponent('spec.dataDirectoryName', dir));
  const diskPath = stringField(spec, 'diskPath');
  if (diskPath !== '') errs.push(...validateAbsolutePath('spec.diskPath', diskPath));
  const bi = stringField(spec, 'backingImage');
  if (bi !== '') for (const d of dns1123SubdomainErrors(bi)) errs.push(invalid('spec.backingImage', bi, d));
  if (old !== undefined) {
    const oldSpec = specOf(old);
    errs.push(...immutableOnceSet('spec.dataDirectoryName', dir, stringField(oldSpec, 'dataDirectoryName')));
    errs.push(...immutableOnceSet('spec.backingImage', bi, stringField(oldSpec, 'backingImage')));
  }
  return errs;
}

export const replicaInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'Replica',
  listKind: 'ReplicaList',
  plural: 'replicas',
  singular: 'replica',
  shortNames: ['lhr'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Data Engine', jsonPath: '.spec.dataEngine', type: 'string', description: 'The data engine of the replica' },
    { name: 'State', jsonPath: '.status.currentState', type: 'string', description: 'The current state of the replica' },
    { name: 'Node', jsonPath: '.spec.nodeID', type: 'string', description: 'The node that the replica is on' },
    { name: 'Disk', jsonPath: '.spec.diskID', type: 'string', description: 'The disk that the replica is on' },
    {
      name: 'InstanceManager',
      jsonPath: '.status.instanceManagerName',
      type: 'string',
      description: 'The instance manager of the replica',
    },
    { name: 'Image', jsonPath: '.status.currentImage', type: 'string', description: 'The current image of the replica' },
    ageColumn,
  ],
  schema,
  validate,
};
