// BackingImageDataSource (longhorn.io/v1beta2, `lhbids`): the one-shot preparation of a backing image's first
// file on one disk (download, upload, export from a volume, ...). Named after its BackingImage and owned by it;
// created by the backing-image controller, never by users.

import { ageColumn, immutableOnceSet, specOf, stringField } from './common.js';
import {
  BACKING_IMAGE_SOURCE_TYPES,
  type BackingImageSourceType,
  type BackingImageState,
} from './backing-image.js';
import type { FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type KubeObject } from './meta.js';
import { validateAbsolutePath, validatePathComponent } from './names.js';
import { bool, enumOf, int, int64, obj, resourceSchema, str, strMap } from './schema.js';

/** Label put on data sources of export-from-volume images, valued with the volume name. */
export const EXPORT_FROM_VOLUME_LABEL = 'longhorn.io/export-from-volume';

/**
 * The data source's staging area on its disk, `<disk>/tmp/<name>-<uuid>/`, and the finished file in it. A
 * backing-image manager's fetch takes files from there only (never from anywhere else on the disk).
 */
export const DATA_SOURCE_STAGING_DIR = 'tmp';
export const DATA_SOURCE_FINISHED_FILE = 'backing';

export interface BackingImageDataSourceSpec {
  nodeID?: string;
  /** The BackingImage's status.uuid. */
  uuid?: string;
  diskUUID?: string;
  diskPath?: string;
  checksum?: string;
  sourceType?: BackingImageSourceType;
  parameters?: Record<string, string>;
  /** Set once the disk's manager has taken the file over; the data source pod can then go. */
  fileTransferred?: boolean;
  recoveryRequested?: boolean;
}

export interface BackingImageDataSourceStatus {
  ownerID?: string;
  /** Parameters actually passed to the pod (snapshot-name, sender-address, ...). */
  runningParameters?: Record<string, string> | null;
  currentState?: BackingImageState | '';
  ip?: string;
  storageIP?: string;
  size?: number;
  progress?: number;
  checksum?: string;
  message?: string;
  retryCount?: number;
}

export type BackingImageDataSource = KubeObject<BackingImageDataSourceSpec, BackingImageDataSourceStatus>;

const schema = resourceSchema({
  description: 'BackingImageDataSource prepares the first file of a backing image on one disk.',
  spec: obj({
    nodeID: str(),
    uuid: str(),
    diskUUID: str(),
    diskPath: str(),
    checksum: str(),
    sourceType: enumOf(BACKING_IMAGE_SOURCE_TYPES),
    parameters: strMap(),
    fileTransferred: bool(),
    recoveryRequested: bool(),
  }),
  status: obj(
    {
      ownerID: str(),
      runningParameters: strMap({ nullable: true }),
      currentState: str(),
      ip: str(),
      storageIP: str(),
      size: int64(),
      progress: int(),
      checksum: str(),
      message: str(),
      retryCount: int(),
    },
    { preserveUnknown: true },
  ),
});

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(o);
  const errs: FieldError[] = [...validatePathComponent('metadata.name', o.metadata.name ?? '')];
  const uuid = stringField(spec, 'uuid');
  if (uuid !== '') errs.push(...validatePathComponent('spec.uuid', uuid));
  const diskPath = stringField(spec, 'diskPath');
  if (diskPath !== '') errs.push(...validateAbsolutePath('spec.diskPath', diskPath));
  if (old !== undefined) {
    const oldSpec = specOf(old);
    errs.push(...immutableOnceSet('spec.uuid', uuid, stringField(oldSpec, 'uuid')));
    errs.push(...immutableOnceSet('spec.diskUUID', stringField(spec, 'diskUUID'), stringField(oldSpec, 'diskUUID')));
  }
  return errs;
}

export const backingImageDataSourceInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'BackingImageDataSource',
  listKind: 'BackingImageDataSourceList',
  plural: 'backingimagedatasources',
  singular: 'backingimagedatasource',
  shortNames: ['lhbids', 'bids'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    {
      name: 'UUID',
      jsonPath: '.spec.uuid',
      type: 'string',
      description: 'The system generated UUID of the provisioned backing image file',
    },
    {
      name: 'State',
      jsonPath: '.status.currentState',
      type: 'string',
      description: 'The current state of the pod used to provision the backing image file from source',
    },
    { name: 'SourceType', jsonPath: '.spec.sourceType', type: 'string', description: 'The data source type' },
    { name: 'Size', jsonPath: '.status.size', type: 'string', description: 'The backing image file size' },
    { name: 'Node', jsonPath: '.spec.nodeID', type: 'string', description: 'The node the backing image file will be prepared on' },
    {
      name: 'DiskUUID',
      jsonPath: '.spec.diskUUID',
      type: 'string',
      description: 'The disk the backing image file will be prepared on',
    },
    ageColumn,
  ],
  schema,
  validate,
};
