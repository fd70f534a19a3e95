// Volume (longhorn.io/v1beta2, `lhv`): a replicated block device, optionally created from a backing image. The
// spec lists every field of Longhorn's current CRD (deprecated ones included) so exported manifests validate;
// Stratum acts on a subset (size, numberOfReplicas, backingImage, frontend, nodeID, selectors, dataLocality).

import {
  ageColumn,
  checkDataEngineOnCreate,
  DATA_ENGINES,
  type DataEngine,
  immutableField,
  specOf,
  stringField,
} from './common.js';
import { invalid } from './field-errors.js';
import type { DefaultingContext, FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type Condition, type KubeObject } from './meta.js';
import { dns1123SubdomainErrors } from './names.js';
import { arrayOf, bool, enumOf, int, int64, int64String, obj, resourceSchema, str } from './schema.js';
import { settingInt, settingValueFor, settingDefault } from './settings.js';
import { volumeStatusSchema } from './volume-status.js';

export const VOLUME_STATES = ['creating', 'attached', 'detached', 'attaching', 'detaching', 'deleting'] as const;
export type VolumeState = (typeof VOLUME_STATES)[number];
export const VOLUME_ROBUSTNESS = ['healthy', 'degraded', 'faulted', 'unknown'] as const;
export type VolumeRobustness = (typeof VOLUME_ROBUSTNESS)[number];
// `nbd` is Stratum's: the engine's NBD export is the frontend (its URI is in the engine's status.endpoint).
export const VOLUME_FRONTENDS = ['blockdev', 'nbd', 'iscsi', 'nvmf', 'ublk', ''] as const;
export type VolumeFrontend = (typeof VOLUME_FRONTENDS)[number];
export const DATA_LOCALITIES = ['disabled', 'best-effort', 'strict-local'] as const;
export const ACCESS_MODES = ['rwo', 'rwop', 'rwx'] as const;
const IGNORED_ENABLED_DISABLED = ['ignored', 'enabled', 'disabled'] as const;

/** Volume condition types and reasons that concern backing images. */
export const VolumeCondition = {
  scheduled: 'Scheduled',
  restore: 'Restore',
  tooManySnapshots: 'TooManySnapshots',
  waitForBackingImage: 'WaitForBackingImage',
  backingImageIncompatible: 'BackingImageIncompatible',
} as const;
export const VolumeConditionReason = {
  waitForBackingImageFailed: 'GetBackingImageFailed',
  waitForBackingImageWaiting: 'Waiting',
  backingImageVirtualSizeTooLarge: 'BackingImageVirtualSizeTooLarge',
  replicaSchedulingFailure: 'ReplicaSchedulingFailure',
} as const;

/** Longhorn rounds volume sizes up to this on create; replica and engine I/O relies on the alignment. */
export const VOLUME_SIZE_ALIGNMENT = 2 * 1024 * 1024;
const MAX_REPLICAS = 20;

export interface VolumeSpec {
  /** Bytes, as a decimal string (Longhorn's wire format). */
  size?: string;
  frontend?: VolumeFrontend;
  fromBackup?: string;
  restoreVolumeRecurringJob?: string;
  dataSource?: string;
  dataLocality?: (typeof DATA_LOCALITIES)[number];
  staleReplicaTimeout?: number;
  nodeID?: string;
  engineNodeID?: string;
  migrationNodeID?: string;
  /** Deprecated by Longhorn in favour of `image`. */
  engineImage?: string;
  image?: string;
  backingImage?: string;
  Standby?: boolean;
  diskSelector?: string[];
  nodeSelector?: string[];
  disableFrontend?: boolean;
  revisionCounterDisabled?: boolean;
  unmapMarkSnapChainRemoved?: string;
  replicaSoftAntiAffinity?: string;
  replicaZoneSoftAntiAffinity?: string;
  replicaDiskSoftAntiAffinity?: string;
  lastAttachedBy?: string;
  accessMode?: (typeof ACCESS_MODES)[number];
  migratable?: boolean;
  encrypted?: boolean;
  numberOfReplicas?: number;
  replicaAutoBalance?: string;
  snapshotDataIntegrity?: string;
  backupCompressionMethod?: string;
  backupBlockSize?: string;
  /** Deprecated by Longhorn in favour of `dataEngine`. */
  backendStoreDriver?: string;
  dataEngine?: DataEngine;
  snapshotMaxCount?: number;
  snapshotMaxSize?: string;
  freezeFilesystemForSnapshot?: string;
  backupTargetName?: string;
  offlineRebuilding?: string;
  rebuildConcurrentSyncLimit?: number;
  replicaRebuildingBandwidthLimit?: number;
  ublkNumberOfQueue?: number;
  ublkQueueDepth?: number;
  cloneMode?: string;
  nvmeTcpNrIoQueues?: number;
  snapshotHashingRequestedAt?: string;
  dataLayout?: Record<string, unknown>;
  topologyRequirement?: { zone?: string; region?: string }[];
}

export interface VolumeStatus {
  ownerID?: string;
  state?: VolumeState | '';
  robustness?: VolumeRobustness | '';
  currentNodeID?: string;
  currentEngineNodeID?: string;
  currentImage?: string;
  kubernetesStatus?: Record<string, unknown>;
  conditions?: Condition[] | null;
  lastBackup?: string;
  lastBackupAt?: string;
  currentMigrationNodeID?: string;
  frontendDisabled?: boolean;
  restoreRequired?: boolean;
  restoreInitiated?: boolean;
  cloneStatus?: VolumeCloneStatus;
  remountRequestedAt?: string;
  expansionRequired?: boolean;
  isStandby?: boolean;
  actualSize?: number;
  lastDegradedAt?: string;
  shareEndpoint?: string;
  shareState?: string;
  /** Stratum: the attached volume's block device path or NBD URI. */
  endpoint?: string;
  /** Stratum: the attached volume's NBD URI, whatever the frontend. */
  nbdEndpoint?: string;
}

export type Volume = KubeObject<VolumeSpec, VolumeStatus>;

/**
 * `Volume.status.cloneStatus` (Longhorn's shape; `message` is Stratum's): where a clone's data comes from and how
 * far it got. `state` '' for a volume that is not a clone.
 */
export interface VolumeCloneStatus {
  sourceVolume?: string;
  snapshot?: string;
  state?: '' | 'initiated' | 'completed' | 'failed';
  attemptCount?: number;
  nextAllowedAttemptAt?: string;
  /** Stratum: what the clone waits for, or why it failed. */
  message?: string;
}

/** A volume's `spec.dataSource`: `vol://<volume>` (its content now) or `snap://<volume>/<snapshot>` (Longhorn's). */
export type VolumeDataSource = { kind: 'volume'; volume: string } | { kind: 'snapshot'; volume: string; snapshot: string };

/** Parses `spec.dataSource`; throws an Error saying what is wrong. Names must be DNS-1123 subdomains (no `..`, `/`). */
export function parseVolumeDataSource(ds: string): VolumeDataSource {
  const bad = (why: string) => new Error(`dataSource "${ds}" ${why}; expected vol://<volume> or snap://<volume>/<snapshot>`);
  const m = /^(vol|snap):\/\/(.*)$/.exec(ds);
  if (!m) throw bad('has an unknown scheme');
  const parts = m[2]!.split('/');
  const want = m[1] === 'vol' ? 1 : 2;
  if (parts.length !== want) throw bad(`has ${parts.length} path part(s), not ${want}`);
  for (const p of parts) {
    const errs = dns1123SubdomainErrors(p);
    if (errs.length > 0) throw bad(`names "${p}", which is not a valid name (${errs.join('; ')})`);
  }
  return m[1] === 'vol' ? { kind: 'volume', volume: parts[0]! } : { kind: 'snapshot', volume: parts[0]!, snapshot: parts[1]! };
}

export const volumeDataSourceFor = (volume: string, snapshot?: string) => (snapshot ? `snap://${volume}/${snapshot}` : `vol://${volume}`);

/** A clone that is not completed: its volume is attached without a frontend only (for the copy). */
export function clonePending(v: { readonly spec?: { readonly dataSource?: string } | undefined; readonly status?: { readonly cloneStatus?: { readonly state?: string } | undefined } | undefined }): boolean {
  return !!v.spec?.dataSource && v.status?.cloneStatus?.state !== 'completed';
}

const schema = resourceSchema({
  description: 'Volume is a replicated block device, optionally created from a backing image.',
  spec: obj({
    size: int64String(),
    frontend: enumOf(VOLUME_FRONTENDS),
    fromBackup: str(),
    restoreVolumeRecurringJob: enumOf(IGNORED_ENABLED_DISABLED),
    dataSource: str(),
    dataLocality: enumOf(DATA_LOCALITIES),
    staleReplicaTimeout: int(),
    nodeID: str(),
    engineNodeID: str(),
    migrationNodeID: str(),
    engineImage: str({ description: 'Deprecated: use image.' }),
    image: str(),
    backingImage: str(),
    Standby: bool(),
    diskSelector: arrayOf(str()),
    nodeSelector: arrayOf(str()),
    disableFrontend: bool(),
    revisionCounterDisabled: bool(),
    unmapMarkSnapChainRemoved: enumOf(['ignored', 'disabled', 'enabled']),
    replicaSoftAntiAffinity: enumOf(IGNORED_ENABLED_DISABLED),
    replicaZoneSoftAntiAffinity: enumOf(IGNORED_ENABLED_DISABLED),
    replicaDiskSoftAntiAffinity: enumOf(IGNORED_ENABLED_DISABLED),
    lastAttachedBy: str(),
    accessMode: enumOf(ACCESS_MODES),
    migratable: bool(),
    encrypted: bool(),
    numberOfReplicas: int(),
    replicaAutoBalance: enumOf(['ignored', 'disabled', 'least-effort', 'best-effort']),
    snapshotDataIntegrity: enumOf(['ignored', 'disabled', 'enabled', 'fast-check']),
    backupCompressionMethod: enumOf(['none', 'lz4', 'gzip']),
    backupBlockSize: enumOf(['2097152', '16777216'], { format: 'int64' }),
    backendStoreDriver: str({ description: 'Deprecated: use dataEngine.' }),
    dataEngine: enumOf(DATA_ENGINES),
    snapshotMaxCount: int(),
    snapshotMaxSize: int64String(),
    freezeFilesystemForSnapshot: enumOf(IGNORED_ENABLED_DISABLED),
    backupTargetName: str(),
    offlineRebuilding: enumOf(['ignored', 'disabled', 'enabled']),
    rebuildConcurrentSyncLimit: int({ minimum: 0, maximum: 5 }),
    replicaRebuildingBandwidthLimit: int64({ minimum: 0 }),
    ublkNumberOfQueue: int(),
    ublkQueueDepth: int(),
    cloneMode: enumOf(['', 'full-copy', 'linked-clone']),
    nvmeTcpNrIoQueues: int(),
    snapshotHashingRequestedAt: str(),
    dataLayout: obj({
      type: enumOf(['replicated', 'sharded', '']),
      mode: enumOf(['raid1', 'erasureCoding', '']),
      dataChunks: int({ minimum: 0 }),
      parityChunks: int({ minimum: 0 }),
      stripSizeKB: int({ minimum: 0 }),
    }),
    topologyRequirement: arrayOf(obj({ zone: str(), region: str() })),
  }),
  status: volumeStatusSchema,
});

function defaultOnCreate(o: KubeObject, ctx: DefaultingContext): void {
  const v = o as Volume;
  const spec = (v.spec ??= {});
  const lookup = (n: string): string | undefined => ctx.setting(n);
  if (spec.numberOfReplicas === undefined || spec.numberOfReplicas === 0) {
    spec.numberOfReplicas = settingInt('default-replica-count', lookup);
  }
  if (spec.frontend === undefined || (spec.frontend === '' && spec.disableFrontend !== true)) spec.frontend = 'blockdev';
  if (spec.dataEngine === undefined || (spec.dataEngine as string) === '') spec.dataEngine = 'v1';
  if (spec.accessMode === undefined || (spec.accessMode as string) === '') spec.accessMode = 'rwo';
  if (spec.dataLocality === undefined || (spec.dataLocality as string) === '') {
    const raw = settingValueFor(lookup('default-data-locality') ?? settingDefault('default-data-locality') ?? '');
    spec.dataLocality = (DATA_LOCALITIES as readonly string[]).includes(raw)
      ? (raw as (typeof DATA_LOCALITIES)[number])
      : 'disabled';
  }
  // "ignored" means: follow the global setting. Writing it down makes that explicit in the stored object.
  for (const k of [
    'replicaAutoBalance',
    'unmapMarkSnapChainRemoved',
    'snapshotDataIntegrity',
    'restoreVolumeRecurringJob',
    'replicaSoftAntiAffinity',
    'replicaZoneSoftAntiAffinity',
    'replicaDiskSoftAntiAffinity',
    'freezeFilesystemForSnapshot',
    'offlineRebuilding',
  ] as const) {
    if (spec[k] === undefined || spec[k] === '') spec[k] = 'ignored';
  }
  if (typeof spec.size === 'string') spec.size = roundVolumeSize(spec.size);
}

/** A size in bytes (decimal string) as a bigint; 0 for anything that is not one (unset, a quantity not yet rounded). */
export function sizeBytes(s: string | undefined): bigint {
  return s && /^[0-9]+$/.test(s) ? BigInt(s) : 0n;
}

/** A size in bytes (decimal string) rounded up to VOLUME_SIZE_ALIGNMENT, as on create; anything else unchanged. */
export function roundVolumeSize(size: string): string {
  if (!/^[0-9]+$/.test(size)) return size;
  const align = BigInt(VOLUME_SIZE_ALIGNMENT);
  return (((BigInt(size) + align - 1n) / align) * align).toString();
}

/** A changed `spec.size` is rounded as on create, so growing by any number of bytes gives an aligned volume. */
function defaultOnUpdate(o: KubeObject, old: KubeObject): void {
  const spec = (o as Volume).spec;
  if (typeof spec?.size === 'string' && spec.size !== (old as Volume).spec?.size) spec.size = roundVolumeSize(spec.size);
}

/**
 * Why a volume cannot be expanded now, or undefined: expansion is offline (the replicas grow when they next start),
 * so the volume must be detached, with no attach asked for. `it is attached to node-1`.
 */
export function expansionBlocker(v: { readonly spec?: { readonly nodeID?: string } | undefined; readonly status?: { readonly state?: string; readonly currentNodeID?: string } | undefined }): string | undefined {
  const state = v.status?.state ?? '';
  const node = v.status?.currentNodeID || v.spec?.nodeID || '';
  if (state === 'attached' || state === 'attaching') return `it is ${state} to ${node || 'a node'}`;
  if (state === 'detaching') return `it is detaching from ${node || 'a node'}`;
  if (state === 'deleting') return 'it is being deleted';
  if (v.spec?.nodeID) return `an attach to ${v.spec.nodeID} is asked for`;
  return undefined;
}

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs: FieldError[] = [];
  const spec = specOf(o);
  const oldSpec = specOf(old);
  const size = stringField(spec, 'size');
  if (size === '') errs.push({ field: 'spec.size', reason: 'FieldValueRequired', message: 'Required value' });
  else if (!/^[0-9]+$/.test(size) || BigInt(size) === 0n) {
    errs.push(invalid('spec.size', size, 'must be a positive number of bytes'));
  }
  const replicas = spec['numberOfReplicas'];
  if (typeof replicas !== 'number' || replicas < 1 || replicas > MAX_REPLICAS) {
    errs.push(invalid('spec.numberOfReplicas', replicas ?? 0, `must be between 1 and ${MAX_REPLICAS}`));
  }
  if (spec['dataLocality'] === 'strict-local' && replicas !== 1) {
    errs.push(invalid('spec.numberOfReplicas', replicas ?? 0, 'must be 1 when dataLocality is strict-local'));
  }
  const backingImage = stringField(spec, 'backingImage');
  if (backingImage !== '') {
    for (const d of dns1123SubdomainErrors(backingImage)) errs.push(invalid('spec.backingImage', backingImage, d));
  }
  errs.push(...checkDataEngineOnCreate('spec.dataEngine', stringField(spec, 'dataEngine'), old));
  const dataSource = stringField(spec, 'dataSource');
  if (dataSource !== '') {
    try {
      parseVolumeDataSource(dataSource);
    } catch (err) {
      errs.push(invalid('spec.dataSource', dataSource, (err as Error).message));
    }
  }
  if (old !== undefined) {
    errs.push(...immutableField('spec.backingImage', backingImage, stringField(oldSpec, 'backingImage')));
    errs.push(...immutableField('spec.dataSource', dataSource, stringField(oldSpec, 'dataSource')));
    errs.push(...immutableField('spec.encrypted', spec['encrypted'] === true, oldSpec['encrypted'] === true));
    errs.push(...immutableField('spec.dataEngine', stringField(spec, 'dataEngine'), stringField(oldSpec, 'dataEngine')));
    errs.push(...immutableField('spec.dataLayout', spec['dataLayout'], oldSpec['dataLayout']));
    errs.push(...immutableField('spec.topologyRequirement', spec['topologyRequirement'], oldSpec['topologyRequirement']));
    const oldSize = stringField(oldSpec, 'size');
    if (/^[0-9]+$/.test(size) && /^[0-9]+$/.test(oldSize) && BigInt(size) < BigInt(oldSize)) {
      errs.push(invalid('spec.size', size, `shrinking a volume is not supported (current size ${oldSize})`));
    } else if (/^[0-9]+$/.test(size) && /^[0-9]+$/.test(oldSize) && BigInt(size) > BigInt(oldSize)) {
      // The volume controller changes the replicas' and the engine's size only while they are stopped.
      const busy = expansionBlocker(old as Volume);
      if (busy) errs.push(invalid('spec.size', size, `a volume is expanded offline: detach it first (${busy})`));
    }
  }
  return errs;
}

export const volumeInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'Volume',
  listKind: 'VolumeList',
  plural: 'volumes',
  singular: 'volume',
  shortNames: ['lhv'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Data Engine', jsonPath: '.spec.dataEngine', type: 'string', description: 'The data engine of the volume' },
    { name: 'State', jsonPath: '.status.state', type: 'string', description: 'The state of the volume' },
    { name: 'Robustness', jsonPath: '.status.robustness', type: 'string', description: 'The robustness of the volume' },
    {
      // Longhorn's CRD looks for type 'Schedulable', which volumes never have (their condition is 'Scheduled'),
      // so its column is always empty; this one shows the real condition.
      name: 'Scheduled',
      jsonPath: ".status.conditions[?(@.type=='Scheduled')].status",
      type: 'string',
      description: 'The scheduled condition of the volume',
    },
    { name: 'Size', jsonPath: '.spec.size', type: 'string', description: 'The size of the volume' },
    {
      name: 'Node',
      jsonPath: '.status.currentNodeID',
      type: 'string',
      description: 'The node that the volume is currently attaching to',
    },
    {
      name: 'Endpoint',
      jsonPath: '.status.endpoint',
      type: 'string',
      priority: 1,
      description: 'Where the attached volume is served: its block device or NBD URI (a Stratum addition)',
    },
    {
      name: 'BackingImage',
      jsonPath: '.spec.backingImage',
      type: 'string',
      priority: 1,
      description: 'The backing image the volume was created from',
    },
    ageColumn,
  ],
  schema,
  defaultOnCreate,
  defaultOnUpdate,
  validate,
};

/**
 * Annotations asking a detached volume to be attached for a while, without a frontend, on the node the value
 * names: one per requester (`<prefix><who>`), removed by it when done. Snapshot operations and exports of a detached
 * volume use them (Longhorn attaches such a volume the same way, by its own tickets). A user's attach (`spec.nodeID`)
 * wins over them.
 */
export const MAINTENANCE_ATTACH_PREFIX = 'stratum.io/maintenance-attach.';

/** The node a detached volume is to be attached to for maintenance (the first such annotation's), if any. */
export function maintenanceNode(annotations: Readonly<Record<string, string>> | undefined): string | undefined {
  const keys = Object.keys(annotations ?? {}).filter((k) => k.startsWith(MAINTENANCE_ATTACH_PREFIX)).sort();
  return keys.length > 0 ? annotations![keys[0]!] : undefined;
}
