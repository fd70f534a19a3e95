// Snapshot (longhorn.io/v1beta2, `lhsnap`): one snapshot of a volume, Longhorn's shape. `spec.createSnapshot: true`
// asks for the snapshot to be taken (its name is the object's); the status mirrors the snapshot as the volume's
// engine reports it (parent, children, size, removed). Deleting the object deletes the snapshot (marked removed
// while it has children, merged by a purge). The snapshot controller (src/controllers/snapshot) does both.

import { ageColumn, immutableField, specOf, stringField } from './common.js';
import type { FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type KubeObject } from './meta.js';
import { bool, int64, mapOf, obj, resourceSchema, str, strMap } from './schema.js';

export interface SnapshotSpec {
  /** The volume the snapshot belongs to. */
  volume: string;
  /** Take the snapshot (false: the object only mirrors a snapshot taken otherwise). */
  createSnapshot?: boolean;
  labels?: Record<string, string> | null;
}

export interface SnapshotStatus {
  parent?: string;
  children?: Record<string, boolean> | null;
  markRemoved?: boolean;
  userCreated?: boolean;
  creationTime?: string;
  volumeCreated?: string;
  qcow2?: boolean;
  size?: number;
  labels?: Record<string, string> | null;
  ownerID?: string;
  error?: string;
  restoreSize?: number;
  readyToUse?: boolean;
  checksum?: string;
}

export type Snapshot = KubeObject<SnapshotSpec, SnapshotStatus>;

/** The label naming a Snapshot's volume (list by volume with a label selector). */
export const SNAPSHOT_VOLUME_LABEL = 'longhornvolume';

const schema = resourceSchema({
  description: 'Snapshot is a point-in-time copy of a volume, kept in its replicas.',
  spec: obj(
    {
      volume: str({ minLength: 1 }),
      createSnapshot: bool(),
      labels: strMap({ nullable: true }),
    },
    { required: ['volume'] },
  ),
  status: obj(
    {
      parent: str(),
      children: mapOf(bool(), { nullable: true }),
      markRemoved: bool(),
      userCreated: bool(),
      creationTime: str(),
      volumeCreated: str(),
      qcow2: bool(),
      size: int64(),
      labels: strMap({ nullable: true }),
      ownerID: str(),
      error: str(),
      restoreSize: int64(),
      readyToUse: bool(),
      checksum: str(),
    },
    { preserveUnknown: true },
  ),
  required: ['spec'],
});

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  if (old === undefined) return [];
  return immutableField('spec.volume', stringField(specOf(o), 'volume'), stringField(specOf(old), 'volume'));
}

export const snapshotInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'Snapshot',
  listKind: 'SnapshotList',
  plural: 'snapshots',
  singular: 'snapshot',
  shortNames: ['lhsnap'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Volume', jsonPath: '.spec.volume', type: 'string', description: 'The volume of the snapshot' },
    { name: 'CreationTime', jsonPath: '.status.creationTime', type: 'string', description: 'When the snapshot was taken' },
    { name: 'ReadyToUse', jsonPath: '.status.readyToUse', type: 'boolean', description: 'Whether the snapshot exists in the volume' },
    { name: 'RestoreSize', jsonPath: '.status.restoreSize', type: 'string', description: 'The volume size a restore needs' },
    { name: 'Size', jsonPath: '.status.size', type: 'string', description: 'Bytes of data the snapshot holds' },
    ageColumn,
  ],
  schema,
  validate,
};
