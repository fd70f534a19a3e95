// snapshot.storage.k8s.io/v1 VolumeSnapshotClass, VolumeSnapshot and VolumeSnapshotContent, as the CSI external
// snapshotter serves them, for Longhorn's `driver.longhorn.io` classes. A class's `parameters.type` says what a
// snapshot of a claim is: `bi` a backing image exported from the claim's volume (`export-type` raw or qcow2,
// node and disk selectors from the class), `snap` a Longhorn snapshot of the volume. The content's snapshot handle
// names it: `bi://backing?backingImageDataSourceType=…&backingImage=…&<source parameters>` or
// `snap://<volume>/<snapshot>` (Longhorn's handles). The volume-snapshot controller acts on them
// (src/controllers/volume-snapshot); a claim with a VolumeSnapshot `dataSource` restores from a `bi` one.

import { ageColumn, immutableField, specOf } from './common.js';
import { BACKING_IMAGE_SOURCE_TYPES, type BackingImageSourceType } from './backing-image.js';
import type { FieldError, KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import { bool, enumOf, obj, resourceSchema, str, strMap } from './schema.js';

export const SNAPSHOT_GROUP = 'snapshot.storage.k8s.io';
export const DELETION_POLICIES = ['Delete', 'Retain'] as const;
export type DeletionPolicy = (typeof DELETION_POLICIES)[number];

export interface VolumeSnapshotClass extends KubeObject<never, never> {
  driver: string;
  deletionPolicy: DeletionPolicy;
  parameters?: Record<string, string>;
}

export interface VolumeSnapshotSpec {
  source: { persistentVolumeClaimName?: string; volumeSnapshotContentName?: string };
  volumeSnapshotClassName?: string;
}

export interface VolumeSnapshotStatus {
  boundVolumeSnapshotContentName?: string;
  creationTime?: string;
  readyToUse?: boolean;
  restoreSize?: string;
  error?: { time?: string; message?: string } | null;
}

export type VolumeSnapshot = KubeObject<VolumeSnapshotSpec, VolumeSnapshotStatus>;

export interface VolumeSnapshotContentSpec {
  driver: string;
  deletionPolicy: DeletionPolicy;
  source: { volumeHandle?: string; snapshotHandle?: string };
  volumeSnapshotRef: { name?: string; namespace?: string; uid?: string; kind?: string; apiVersion?: string };
  volumeSnapshotClassName?: string;
}

export interface VolumeSnapshotContentStatus {
  snapshotHandle?: string;
  creationTime?: number;
  readyToUse?: boolean;
  restoreSize?: number;
  error?: { time?: string; message?: string } | null;
}

export type VolumeSnapshotContent = KubeObject<VolumeSnapshotContentSpec, VolumeSnapshotContentStatus>;

/** Finalizers the snapshotter puts on a VolumeSnapshot and on its content while they are bound. */
export const VOLUME_SNAPSHOT_FINALIZER = 'snapshot.storage.kubernetes.io/volumesnapshot-bound-protection';
export const CONTENT_FINALIZER = 'snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection';

// ---------------------------------------------------------------------------------------------------------------
// Snapshot handles

export interface BiHandle {
  kind: 'bi';
  backingImage: string;
  sourceType: BackingImageSourceType;
  parameters: Record<string, string>;
  checksum?: string;
}

export interface SnapHandle {
  kind: 'snap';
  volume: string;
  snapshot: string;
}

export function formatBiHandle(h: Omit<BiHandle, 'kind'>): string {
  const q = new URLSearchParams({ backingImageDataSourceType: h.sourceType, backingImage: h.backingImage, ...h.parameters, ...(h.checksum ? { backingImageChecksum: h.checksum } : {}) });
  return `bi://backing?${q.toString()}`;
}

export function formatSnapHandle(volume: string, snapshot: string): string {
  return `snap://${volume}/${snapshot}`;
}

/** A handle as a content carries it; throws Error saying what is wrong with one that cannot be used. */
export function parseSnapshotHandle(handle: string): BiHandle | SnapHandle {
  if (handle.startsWith('snap://')) {
    const [volume = '', snapshot = ''] = handle.slice('snap://'.length).split('/');
    if (!volume || !snapshot) throw new Error(`snapshot handle "${handle}" is not snap://<volume>/<snapshot>`);
    return { kind: 'snap', volume, snapshot };
  }
  if (!handle.startsWith('bi://backing?')) throw new Error(`snapshot handle "${handle}" is neither bi://backing?… nor snap://…`);
  const q = new URLSearchParams(handle.slice('bi://backing?'.length));
  const backingImage = q.get('backingImage') ?? '';
  const sourceType = q.get('backingImageDataSourceType') ?? '';
  if (!backingImage) throw new Error(`snapshot handle "${handle}" names no backingImage`);
  if (!(BACKING_IMAGE_SOURCE_TYPES as readonly string[]).includes(sourceType)) {
    throw new Error(`snapshot handle "${handle}": backingImageDataSourceType must be one of ${BACKING_IMAGE_SOURCE_TYPES.join(', ')}`);
  }
  const parameters: Record<string, string> = {};
  let checksum: string | undefined;
  for (const [k, v] of q) {
    if (k === 'backingImage' || k === 'backingImageDataSourceType') continue;
    if (k === 'backingImageChecksum') checksum = v.trim().toLowerCase();
    else parameters[k] = v;
  }
  return { kind: 'bi', backingImage, sourceType: sourceType as BackingImageSourceType, parameters, ...(checksum ? { checksum } : {}) };
}

// ---------------------------------------------------------------------------------------------------------------
// Kinds

const open = { preserveUnknown: true };

const classSchema = resourceSchema({
  description: 'VolumeSnapshotClass names the driver and parameters of snapshots taken with it.',
  topLevel: { driver: str({ minLength: 1 }), deletionPolicy: enumOf(DELETION_POLICIES), parameters: strMap() },
  required: ['driver', 'deletionPolicy'],
});

const snapshotSchema = resourceSchema({
  description: 'VolumeSnapshot is a user request for a snapshot of a volume.',
  spec: obj(
    {
      source: obj({ persistentVolumeClaimName: str(), volumeSnapshotContentName: str() }),
      volumeSnapshotClassName: str(),
    },
    { required: ['source'] },
  ),
  status: obj({ boundVolumeSnapshotContentName: str(), creationTime: str(), readyToUse: bool(), restoreSize: str() }, open),
  required: ['spec'],
});

const contentSchema = resourceSchema({
  description: 'VolumeSnapshotContent is a snapshot taken in the storage system.',
  spec: obj(
    {
      driver: str({ minLength: 1 }),
      deletionPolicy: enumOf(DELETION_POLICIES),
      source: obj({ volumeHandle: str(), snapshotHandle: str() }),
      volumeSnapshotRef: obj({}, open),
      volumeSnapshotClassName: str(),
    },
    { required: ['driver', 'deletionPolicy', 'source', 'volumeSnapshotRef'] },
  ),
  status: obj({ snapshotHandle: str(), readyToUse: bool() }, open),
  required: ['spec'],
});

function validateSource(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  if (old === undefined) return [];
  return immutableField('spec.source', specOf(o)['source'], specOf(old)['source']);
}

export const volumeSnapshotClassInfo: KindInfo = {
  group: SNAPSHOT_GROUP,
  version: 'v1',
  kind: 'VolumeSnapshotClass',
  listKind: 'VolumeSnapshotClassList',
  plural: 'volumesnapshotclasses',
  singular: 'volumesnapshotclass',
  shortNames: ['vsclass', 'vsclasses'],
  namespaced: false,
  hasStatusSubresource: false,
  hasSpec: false,
  printerColumns: [
    { name: 'Driver', jsonPath: '.driver', type: 'string' },
    { name: 'DeletionPolicy', jsonPath: '.deletionPolicy', type: 'string' },
    ageColumn,
  ],
  schema: classSchema,
};

export const volumeSnapshotInfo: KindInfo = {
  group: SNAPSHOT_GROUP,
  version: 'v1',
  kind: 'VolumeSnapshot',
  listKind: 'VolumeSnapshotList',
  plural: 'volumesnapshots',
  singular: 'volumesnapshot',
  shortNames: ['vs'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'ReadyToUse', jsonPath: '.status.readyToUse', type: 'boolean' },
    { name: 'SourcePVC', jsonPath: '.spec.source.persistentVolumeClaimName', type: 'string' },
    { name: 'SourceSnapshotContent', jsonPath: '.spec.source.volumeSnapshotContentName', type: 'string' },
    { name: 'RestoreSize', jsonPath: '.status.restoreSize', type: 'string' },
    { name: 'SnapshotClass', jsonPath: '.spec.volumeSnapshotClassName', type: 'string' },
    { name: 'SnapshotContent', jsonPath: '.status.boundVolumeSnapshotContentName', type: 'string' },
    ageColumn,
  ],
  schema: snapshotSchema,
  validate: validateSource,
};

export const volumeSnapshotContentInfo: KindInfo = {
  group: SNAPSHOT_GROUP,
  version: 'v1',
  kind: 'VolumeSnapshotContent',
  listKind: 'VolumeSnapshotContentList',
  plural: 'volumesnapshotcontents',
  singular: 'volumesnapshotcontent',
  shortNames: ['vsc', 'vscs'],
  namespaced: false,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'ReadyToUse', jsonPath: '.status.readyToUse', type: 'boolean' },
    { name: 'RestoreSize', jsonPath: '.status.restoreSize', type: 'integer' },
    { name: 'DeletionPolicy', jsonPath: '.spec.deletionPolicy', type: 'string' },
    { name: 'Driver', jsonPath: '.spec.driver', type: 'string' },
    { name: 'VolumeSnapshotClass', jsonPath: '.spec.volumeSnapshotClassName', type: 'string' },
    ageColumn,
  ],
  schema: contentSchema,
  validate: validateSource,
};
