// InstanceManager (longhorn.io/v1beta2, `lhim`): the per-node process (a pod) that hosts the engines and
// replicas of one image. Its status lists the instances it runs, which the engine and replica controllers read.

import { ageColumn } from './common.js';
import type { KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type Condition, type KubeObject } from './meta.js';
import { conditionsSchema, enumOf, int, int64, mapOf, obj, resourceSchema, str } from './schema.js';

export const INSTANCE_MANAGER_STATES = ['error', 'running', 'stopped', 'starting', 'unknown'] as const;
export type InstanceManagerState = (typeof INSTANCE_MANAGER_STATES)[number];
/** `aio` hosts both engines and replicas; `engine`/`replica` are Longhorn's deprecated split managers. */
export const INSTANCE_MANAGER_TYPES = ['aio', 'engine', 'replica'] as const;
export type InstanceManagerType = (typeof INSTANCE_MANAGER_TYPES)[number];

/** One hosted process, as reported by the instance manager. */
export interface InstanceProcess {
  spec?: { name?: string; dataEngine?: string; backendStoreDriver?: string };
  status?: {
    endpoint?: string;
    errorMsg?: string;
    conditions?: Record<string, boolean> | null;
    listen?: string;
    portStart?: number;
    portEnd?: number;
    targetPortStart?: number;
    targetPortEnd?: number;
    state?: string;
    type?: string;
    resourceVersion?: number;
    [extra: string]: unknown;
  };
}

export interface InstanceManagerSpec {
  image?: string;
  nodeID?: string;
  type?: InstanceManagerType;
  dataEngine?: string;
  dataEngineSpec?: { v2?: { cpuMask?: string; cpuIsolationEnabled?: string } };
  /** Deprecated by Longhorn in favour of `image`. */
  engineImage?: string;
  /** Deprecated by Longhorn in favour of `dataEngine`. */
  backendStoreDriver?: string;
}

export interface InstanceManagerStatus {
  ownerID?: string;
  currentState?: InstanceManagerState | '';
  instanceEngines?: Record<string, InstanceProcess> | null;
  instanceReplicas?: Record<string, InstanceProcess> | null;
  /** Deprecated by Longhorn in favour of instanceEngines and instanceReplicas. */
  instances?: Record<string, InstanceProcess> | null;
  ip?: string;
  apiMinVersion?: number;
  apiVersion?: number;
  proxyApiMinVersion?: number;
  proxyApiVersion?: number;
  conditions?: Condition[] | null;
  backingImages?: Record<string, Record<string, unknown>> | null;
  dataEngineStatus?: Record<string, unknown>;
}

export type InstanceManager = KubeObject<InstanceManagerSpec, InstanceManagerStatus>;

const processMap = mapOf(
  obj(
    {
      spec: obj({ name: str(), dataEngine: str(), backendStoreDriver: str() }, { preserveUnknown: true }),
      status: obj({ state: str(), errorMsg: str(), endpoint: str(), listen: str(), portStart: int(), portEnd: int() }, {
        preserveUnknown: true,
      }),
    },
    { preserveUnknown: true },
  ),
  { nullable: true },
);

const schema = resourceSchema({
  description: 'InstanceManager hosts the engines and replicas of one image on one node.',
  spec: obj({
    image: str(),
    nodeID: str(),
    type: enumOf(INSTANCE_MANAGER_TYPES),
    dataEngine: str(),
    dataEngineSpec: obj({ v2: obj({ cpuMask: str(), cpuIsolationEnabled: enumOf(['', 'true', 'false']) }) }),
    engineImage: str({ description: 'Deprecated: use image.' }),
    backendStoreDriver: str({ description: 'Deprecated: use dataEngine.' }),
  }),
  status: obj(
    {
      ownerID: str(),
      currentState: str(),
      instanceEngines: processMap,
      instanceReplicas: processMap,
      instances: processMap,
      ip: str(),
      apiMinVersion: int(),
      apiVersion: int(),
      proxyApiMinVersion: int(),
      proxyApiVersion: int(),
      conditions: conditionsSchema,
      backingImages: mapOf(
        obj(
          { name: str(), uuid: str(), diskUUID: str(), size: int64(), state: str(), progress: int(), currentChecksum: str(), message: str() },
          { preserveUnknown: true },
        ),
        { nullable: true },
      ),
      dataEngineStatus: obj({}, { preserveUnknown: true }),
    },
    { preserveUnknown: true },
  ),
});

export const instanceManagerInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'InstanceManager',
  listKind: 'InstanceManagerList',
  plural: 'instancemanagers',
  singular: 'instancemanager',
  shortNames: ['lhim'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Data Engine', jsonPath: '.spec.dataEngine', type: 'string', description: 'The data engine of the instance manager' },
    { name: 'State', jsonPath: '.status.currentState', type: 'string', description: 'The state of the instance manager' },
    { name: 'Type', jsonPath: '.spec.type', type: 'string', description: 'The type of the instance manager (engine or replica)' },
    { name: 'Node', jsonPath: '.spec.nodeID', type: 'string', description: 'The node that the instance manager is running on' },
    { name: 'Image', jsonPath: '.spec.image', type: 'string', description: 'The image used by the instance manager' },
    ageColumn,
  ],
  schema,
};
