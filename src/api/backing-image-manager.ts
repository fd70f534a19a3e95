// BackingImageManager (longhorn.io/v1beta2, `lhbim`): one per disk × manager image; its pod owns every backing
// image file on that disk. `spec.backingImages` (name → uuid) is what the manager must hold; the status map is
// what it reports per file.

import { ageColumn, immutableOnceSet, record, specOf, stringField } from './common.js';
import type { BackingImageState } from './backing-image.js';
import type { FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type KubeObject } from './meta.js';
import { validateAbsolutePath, validatePathComponentMap } from './names.js';
import { int, int64, mapOf, obj, resourceSchema, str, strMap } from './schema.js';

export const BACKING_IMAGE_MANAGER_STATES = ['error', 'running', 'stopped', 'starting', 'unknown'] as const;
export type BackingImageManagerState = (typeof BACKING_IMAGE_MANAGER_STATES)[number];

export interface BackingImageManagerSpec {
  image?: string;
  nodeID?: string;
  diskUUID?: string;
  diskPath?: string;
  /** Backing image name → its status.uuid; both become the file path component `<name>-<uuid>`. */
  backingImages?: Record<string, string>;
}

export interface BackingImageFileInfo {
  name?: string;
  uuid?: string;
  size?: number;
  virtualSize?: number;
  realSize?: number;
  state?: BackingImageState | '';
  currentChecksum?: string;
  message?: string;
  sendingReference?: number;
  /** For a copy received from peers: the first peer it syncs from (empty for a copy from a data source). */
  senderManagerAddress?: string;
  progress?: number;
  /** Stratum: when every byte of the copy was last read and found to hash to its SHA-512 (ready copies; a scrub). */
  verifiedAt?: string;
  /** Stratum: the `stratum.io/scrub-requested` value the copy's last scrub answered. */
  scrubRequest?: string;
}

/**
 * Whether a copy is work a compatible manager of a retired image finishes before it goes (docs/upgrade.md): a copy it
 * prepares from a data source, the seed's "current downloading". A copy it receives from a peer
 * (`senderManagerAddress` set) is not: it is cut, and the new manager of the disk finds it half-received, marks it
 * failed and syncs it again after the backoff (seed step 7.2.2). A `pending` copy is not being worked on.
 */
export function isInFlightWork(f: { state?: string; senderManagerAddress?: string }): boolean {
  return (f.state === 'starting' || f.state === 'in-progress') && !f.senderManagerAddress;
}

/** How the message of a ready copy that a scrub repaired begins; the next clean scrub clears it. */
export const SCRUB_REPAIRED = 'repaired by a scrub';

export interface BackingImageManagerStatus {
  ownerID?: string;
  currentState?: BackingImageManagerState | '';
  backingImageFileMap?: Record<string, BackingImageFileInfo> | null;
  ip?: string;
  storageIP?: string;
  apiMinVersion?: number;
  apiVersion?: number;
}

export type BackingImageManager = KubeObject<BackingImageManagerSpec, BackingImageManagerStatus>;

const schema = resourceSchema({
  description: 'BackingImageManager owns the backing image files on one disk.',
  spec: obj({
    image: str(),
    nodeID: str(),
    diskUUID: str(),
    diskPath: str(),
    backingImages: strMap(),
  }),
  status: obj(
    {
      ownerID: str(),
      currentState: str(),
      backingImageFileMap: mapOf(
        obj({
          name: str(),
          uuid: str(),
          size: int64(),
          virtualSize: int64(),
          realSize: int64(),
          state: str(),
          currentChecksum: str(),
          message: str(),
          sendingReference: int(),
          senderManagerAddress: str(),
          progress: int(),
          verifiedAt: str(),
          scrubRequest: str(),
        }),
        { nullable: true },
      ),
      ip: str(),
      storageIP: str(),
      apiMinVersion: int(),
      apiVersion: int(),
    },
    { preserveUnknown: true },
  ),
});

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(o);
  const errs: FieldError[] = [...validatePathComponentMap('spec.backingImages', record(spec, 'backingImages'))];
  const diskPath = stringField(spec, 'diskPath');
  if (diskPath !== '') errs.push(...validateAbsolutePath('spec.diskPath', diskPath));
  if (old !== undefined) {
    // The manager's name is derived from image and disk, so neither may drift under an existing object.
    const oldSpec = specOf(old);
    errs.push(...immutableOnceSet('spec.diskUUID', stringField(spec, 'diskUUID'), stringField(oldSpec, 'diskUUID')));
    errs.push(...immutableOnceSet('spec.image', stringField(spec, 'image'), stringField(oldSpec, 'image')));
  }
  return errs;
}

export const backingImageManagerInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'BackingImageManager',
  listKind: 'BackingImageManagerList',
  plural: 'backingimagemanagers',
  singular: 'backingimagemanager',
  shortNames: ['lhbim', 'bim'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'State', jsonPath: '.status.currentState', type: 'string', description: 'The current state of the manager' },
    { name: 'Image', jsonPath: '.spec.image', type: 'string', description: 'The image the manager pod will use' },
    { name: 'Node', jsonPath: '.spec.nodeID', type: 'string', description: 'The node the manager is on' },
    { name: 'DiskUUID', jsonPath: '.spec.diskUUID', type: 'string', description: 'The disk the manager is responsible for' },
    { name: 'DiskPath', jsonPath: '.spec.diskPath', type: 'string', description: 'The disk path the manager is using' },
    ageColumn,
  ],
  schema,
  validate,
};
