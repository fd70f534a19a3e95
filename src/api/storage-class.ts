// StorageClass (storage.k8s.io/v1, `sc`): names a provisioner and its parameters. A class with
// `provisioner: driver.longhorn.io` is served by Stratum's provisioner (src/controllers/provisioner), whose
// parameters are Longhorn's (numberOfReplicas, backingImage, backingImageDataSourceParameters, ...). As in
// Kubernetes the class has no spec: its fields sit at the top level, and parameters, provisioner and the policies
// cannot change after create (delete and re-create the class to change them).

import { ageColumn, immutableField } from './common.js';
import type { DefaultingContext, FieldError, KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import { arrayOf, bool, enumOf, resourceSchema, str, strMap, PRESERVE_UNKNOWN } from './schema.js';

export const STORAGE_GROUP = 'storage.k8s.io';
export const RECLAIM_POLICIES = ['Delete', 'Retain', 'Recycle'] as const;
export type ReclaimPolicy = (typeof RECLAIM_POLICIES)[number];
export const VOLUME_BINDING_MODES = ['Immediate', 'WaitForFirstConsumer'] as const;
export type VolumeBindingMode = (typeof VOLUME_BINDING_MODES)[number];

export interface StorageClass extends KubeObject<never, never> {
  provisioner: string;
  parameters?: Record<string, string>;
  reclaimPolicy?: ReclaimPolicy;
  volumeBindingMode?: VolumeBindingMode;
  allowVolumeExpansion?: boolean;
  mountOptions?: string[];
}

const schema = resourceSchema({
  description: 'StorageClass names a provisioner and the parameters of the volumes it provisions.',
  topLevel: {
    provisioner: str({ minLength: 1 }),
    parameters: strMap(),
    reclaimPolicy: enumOf(RECLAIM_POLICIES),
    volumeBindingMode: enumOf(VOLUME_BINDING_MODES),
    allowVolumeExpansion: bool(),
    mountOptions: arrayOf(str()),
    allowedTopologies: arrayOf({ type: 'object', [PRESERVE_UNKNOWN]: true }),
  },
  required: ['provisioner'],
});

function defaultOnCreate(o: KubeObject, _ctx: DefaultingContext): void {
  o['reclaimPolicy'] ??= 'Delete';
  o['volumeBindingMode'] ??= 'Immediate';
}

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  if (old === undefined) return [];
  // Kubernetes forbids these updates: volumes already provisioned from the class would no longer match it.
  return ['provisioner', 'parameters', 'reclaimPolicy', 'volumeBindingMode'].flatMap((f) => immutableField(f, o[f], old[f]));
}

export const storageClassInfo: KindInfo = {
  group: STORAGE_GROUP,
  version: 'v1',
  kind: 'StorageClass',
  listKind: 'StorageClassList',
  plural: 'storageclasses',
  singular: 'storageclass',
  shortNames: ['sc'],
  namespaced: false,
  hasStatusSubresource: false,
  hasSpec: false,
  printerColumns: [
    { name: 'Provisioner', jsonPath: '.provisioner', type: 'string' },
    { name: 'ReclaimPolicy', jsonPath: '.reclaimPolicy', type: 'string' },
    { name: 'VolumeBindingMode', jsonPath: '.volumeBindingMode', type: 'string' },
    { name: 'AllowVolumeExpansion', jsonPath: '.allowVolumeExpansion', type: 'boolean' },
    ageColumn,
  ],
  schema,
  defaultOnCreate,
  validate,
};

