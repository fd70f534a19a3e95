// Engine (longhorn.io/v1beta2, `lhe`): the process that serves one volume's frontend and writes to every
// healthy replica. `spec.replicaAddressMap` (replica name → address) is the set of replicas it should use;
// `status.replicaModeMap` reports each one as RW, WO (rebuilding) or ERR.

import { ageColumn } from './common.js';
import { instanceSpecProperties, instanceStatusProperties, type InstanceSpec, type InstanceStatus } from './instance.js';
import type { KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type KubeObject } from './meta.js';
import { bool, enumOf, int, int64String, mapOf, obj, resourceSchema, str, strMap } from './schema.js';
import { VOLUME_FRONTENDS, type VolumeFrontend } from './volume.js';

export const REPLICA_MODES = ['RW', 'WO', 'ERR'] as const;
export type ReplicaMode = (typeof REPLICA_MODES)[number];

export interface EngineSpec extends InstanceSpec {
  frontend?: VolumeFrontend;
  disableFrontend?: boolean;
  replicaAddressMap?: Record<string, string>;
  upgradedReplicaAddressMap?: Record<string, string>;
  backupVolume?: string;
  requestedBackupRestore?: string;
  requestedDataSource?: string;
  revisionCounterDisabled?: boolean;
  unmapMarkSnapChainRemovedEnabled?: boolean;
  active?: boolean;
  snapshotMaxCount?: number;
  snapshotMaxSize?: string;
  rebuildConcurrentSyncLimit?: number;
  ublkNumberOfQueue?: number;
  ublkQueueDepth?: number;
}

/** One snapshot in Engine.status.snapshots, as Longhorn has it. */
export interface EngineSnapshotStatus {
  name: string;
  /** '' for the oldest. */
  parent: string;
  /** Names of its children (`volume-head` when the live data sits on it) → true. */
  children: Record<string, boolean>;
  /** Deleted while it had children: kept until a purge merges it into its child. */
  removed: boolean;
  usercreated: boolean;
  /** RFC 3339; '' for volume-head. */
  created: string;
  /** Data bytes of its layer, a decimal string. */
  size: string;
  labels: Record<string, string>;
}

/** A snapshot as an engine's control API lists it (`SnapshotInfo` of src/replica/control.ts, which satisfies it). */
export interface EngineSnapshotReport {
  name: string;
  parent: string;
  children: readonly string[];
  created: string;
  removed: boolean;
  userCreated: boolean;
  labels: Record<string, string>;
  /** Data bytes of its layer. */
  size: number;
}

/** Longhorn's shape of a snapshot the engine lists: Engine.status.snapshots, and the /v1 snapshot resource's fields. */
export function snapshotStatusOf(s: EngineSnapshotReport): EngineSnapshotStatus {
  return {
    name: s.name,
    parent: s.parent,
    children: Object.fromEntries(s.children.map((c) => [c, true])),
    removed: s.removed,
    usercreated: s.userCreated,
    created: s.created,
    size: String(s.size),
    labels: s.labels,
  };
}

export interface EngineStatus extends InstanceStatus {
  currentSize?: string;
  currentReplicaAddressMap?: Record<string, string> | null;
  replicaModeMap?: Record<string, ReplicaMode> | null;
  replicaTransitionTimeMap?: Record<string, string>;
  endpoint?: string;
  lastRestoredBackup?: string;
  backupStatus?: Record<string, Record<string, unknown>> | null;
  restoreStatus?: Record<string, Record<string, unknown>> | null;
  purgeStatus?: Record<string, Record<string, unknown>> | null;
  rebuildStatus?: Record<string, Record<string, unknown>> | null;
  cloneStatus?: Record<string, Record<string, unknown>> | null;
  /** The engine's snapshots by name, `volume-head` included (Longhorn's shape; the engine controller writes them). */
  snapshots?: Record<string, EngineSnapshotStatus> | null;
  snapshotsError?: string;
  isExpanding?: boolean;
  lastExpansionError?: string;
  lastExpansionFailedAt?: string;
  unmapMarkSnapChainRemovedEnabled?: boolean;
  snapshotMaxCount?: number;
  snapshotMaxSize?: string;
  rebuildConcurrentSyncLimit?: number;
}

export type Engine = KubeObject<EngineSpec, EngineStatus>;

/** Per-replica or per-snapshot status records: typed loosely, they are written by our own controllers. */
const looseMap = mapOf(obj({}, { preserveUnknown: true }), { nullable: true });

const schema = resourceSchema({
  description: 'Engine serves a volume and writes to its replicas.',
  spec: obj({
    ...instanceSpecProperties,
    frontend: enumOf(VOLUME_FRONTENDS),
    disableFrontend: bool(),
    replicaAddressMap: strMap(),
    upgradedReplicaAddressMap: strMap(),
    backupVolume: str(),
    requestedBackupRestore: str(),
    requestedDataSource: str(),
    revisionCounterDisabled: bool(),
    unmapMarkSnapChainRemovedEnabled: bool(),
    active: bool(),
    snapshotMaxCount: int(),
    snapshotMaxSize: int64String(),
    rebuildConcurrentSyncLimit: int({ minimum: 0, maximum: 5 }),
    ublkNumberOfQueue: int(),
    ublkQueueDepth: int(),
  }),
  status: obj(
    {
      ...instanceStatusProperties,
      currentSize: int64String(),
      currentReplicaAddressMap: strMap({ nullable: true }),
      replicaModeMap: strMap({ nullable: true }),
      replicaTransitionTimeMap: strMap(),
      endpoint: str(),
      lastRestoredBackup: str(),
      backupStatus: looseMap,
      restoreStatus: looseMap,
      purgeStatus: looseMap,
      rebuildStatus: looseMap,
      cloneStatus: looseMap,
      snapshots: looseMap,
      snapshotsError: str(),
      isExpanding: bool(),
      lastExpansionError: str(),
      lastExpansionFailedAt: str(),
      unmapMarkSnapChainRemovedEnabled: bool(),
      snapshotMaxCount: int(),
      snapshotMaxSize: int64String(),
      rebuildConcurrentSyncLimit: int({ minimum: 0 }),
    },
    { preserveUnknown: true },
  ),
});

export const engineInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'Engine',
  listKind: 'EngineList',
  plural: 'engines',
  singular: 'engine',
  shortNames: ['lhe'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Data Engine', jsonPath: '.spec.dataEngine', type: 'string', description: 'The data engine of the engine' },
    { name: 'State', jsonPath: '.status.currentState', type: 'string', description: 'The current state of the engine' },
    { name: 'Node', jsonPath: '.spec.nodeID', type: 'string', description: 'The node that the engine is on' },
    {
      name: 'InstanceManager',
      jsonPath: '.status.instanceManagerName',
      type: 'string',
      description: 'The instance manager of the engine',
    },
    { name: 'Image', jsonPath: '.status.currentImage', type: 'string', description: 'The current image of the engine' },
    ageColumn,
  ],
  schema,
};
