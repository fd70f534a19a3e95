// Node (longhorn.io/v1beta2, `lhn`): a storage node and its disks. The node agent registers it; users toggle
// scheduling, eviction and tags. Disk status carries what schedulers need, including `scheduledBackingImage`
// (backing image → bytes) which counts image copies against the disk's scheduled storage.

import { ageColumn, record, specOf } from './common.js';
import { childPath, duplicate, invalid, required } from './field-errors.js';
import type { FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type Condition, type KubeObject } from './meta.js';
import { validateAbsolutePath } from './names.js';
import {
  arrayOf, bool, conditionsSchema, enumOf, int, int64, mapOf, obj, resourceSchema, str,
} from './schema.js';

export const NodeCondition = { ready: 'Ready', schedulable: 'Schedulable', mountPropagation: 'MountPropagation' } as const;
export const DiskCondition = { ready: 'Ready', schedulable: 'Schedulable', error: 'Error' } as const;
export const DISK_TYPES = ['filesystem', 'block'] as const;
export const DISK_DRIVERS = ['', 'auto', 'aio', 'nvme'] as const;

export interface DiskSpec {
  diskType?: (typeof DISK_TYPES)[number];
  path?: string;
  diskDriver?: (typeof DISK_DRIVERS)[number];
  allowScheduling?: boolean;
  evictionRequested?: boolean;
  storageReserved?: number;
  tags?: string[];
}

export interface DiskStatus {
  conditions?: Condition[] | null;
  storageAvailable?: number;
  storageScheduled?: number;
  storageMaximum?: number;
  scheduledReplica?: Record<string, number> | null;
  /** Backing image name → real size of its copy on this disk. */
  scheduledBackingImage?: Record<string, number> | null;
  diskUUID?: string;
  diskName?: string;
  diskPath?: string;
  diskType?: string;
  diskDriver?: string;
  filesystemType?: string;
  instanceManagerName?: string;
}

export interface NodeSpec {
  name?: string;
  disks?: Record<string, DiskSpec>;
  allowScheduling?: boolean;
  evictionRequested?: boolean;
  tags?: string[];
  instanceManagerCPURequest?: number;
  upgradeRequested?: boolean;
}

export interface NodeStatus {
  conditions?: Condition[] | null;
  diskStatus?: Record<string, DiskStatus> | null;
  region?: string;
  zone?: string;
  snapshotCheckStatus?: { lastPeriodicCheckedAt?: string };
  autoEvicting?: boolean;
  cpuPolicy?: string;
}

export type Node = KubeObject<NodeSpec, NodeStatus>;

const int64Map = mapOf(int64(), { nullable: true });

const schema = resourceSchema({
  description: 'Node is a storage node and its disks.',
  spec: obj({
    name: str(),
    disks: mapOf(
      obj({
        diskType: enumOf(DISK_TYPES),
        path: str(),
        diskDriver: enumOf(DISK_DRIVERS),
        allowScheduling: bool(),
        evictionRequested: bool(),
        storageReserved: int64(),
        tags: arrayOf(str()),
      }),
    ),
    allowScheduling: bool(),
    evictionRequested: bool(),
    tags: arrayOf(str()),
    instanceManagerCPURequest: int(),
    upgradeRequested: bool(),
  }),
  status: obj(
    {
      conditions: conditionsSchema,
      diskStatus: mapOf(
        obj(
          {
            conditions: conditionsSchema,
            storageAvailable: int64(),
            storageScheduled: int64(),
            storageMaximum: int64(),
            scheduledReplica: int64Map,
            scheduledBackingImage: int64Map,
            diskUUID: str(),
            diskName: str(),
            diskPath: str(),
            diskType: str(),
            diskDriver: str(),
            filesystemType: str(),
            instanceManagerName: str(),
          },
          { preserveUnknown: true },
        ),
        { nullable: true },
      ),
      region: str(),
      zone: str(),
      snapshotCheckStatus: obj({ lastPeriodicCheckedAt: str() }),
      autoEvicting: bool(),
      cpuPolicy: str(),
    },
    { preserveUnknown: true },
  ),
});

function validate(o: KubeObject): FieldError[] {
  const errs: FieldError[] = [];
  const spec = specOf(o);
  const seen = new Map<string, string>();
  for (const [name, disk] of Object.entries(record(spec, 'disks'))) {
    const base = childPath('spec.disks', name);
    const d = typeof disk === 'object' && disk !== null ? (disk as Record<string, unknown>) : {};
    const path = d['path'];
    if (typeof path !== 'string' || path === '') {
      errs.push(required(childPath(base, 'path')));
    } else {
      errs.push(...validateAbsolutePath(childPath(base, 'path'), path));
      // Two disk entries on one directory would count its space twice and let two managers share it.
      const normal = path.replace(/\/+$/, '') || '/';
      if (seen.has(normal)) errs.push(duplicate(childPath(base, 'path'), path));
      seen.set(normal, name);
    }
    const reserved = d['storageReserved'];
    if (typeof reserved === 'number' && reserved < 0) {
      errs.push(invalid(childPath(base, 'storageReserved'), reserved, 'must be greater than or equal to 0'));
    }
  }
  const cpu = spec['instanceManagerCPURequest'];
  if (typeof cpu === 'number' && cpu < 0) {
    errs.push(invalid('spec.instanceManagerCPURequest', cpu, 'must be greater than or equal to 0'));
  }
  return errs;
}

function defaultOnCreate(o: KubeObject): void {
  const n = o as Node;
  const spec = (n.spec ??= {});
  spec.disks ??= {};
  spec.tags ??= [];
}

export const nodeInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'Node',
  listKind: 'NodeList',
  plural: 'nodes',
  singular: 'node',
  shortNames: ['lhn'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    {
      name: 'Ready',
      jsonPath: ".status.conditions[?(@.type=='Ready')].status",
      type: 'string',
      description: 'Indicate whether the node is ready',
    },
    {
      name: 'AllowScheduling',
      jsonPath: '.spec.allowScheduling',
      type: 'boolean',
      description: 'Indicate whether the user disabled/enabled replica scheduling for the node',
    },
    {
      name: 'Schedulable',
      jsonPath: ".status.conditions[?(@.type=='Schedulable')].status",
      type: 'string',
      description: 'Indicate whether Longhorn can schedule replicas on the node',
    },
    ageColumn,
  ],
  schema,
  defaultOnCreate,
  validate,
};
