// PersistentVolume (core v1, cluster-scoped, `pv`): a provisioned piece of storage, bound to one claim through
// `spec.claimRef`. Stratum's provisioner creates one per claim with `csi.driver: driver.longhorn.io` and
// `csi.volumeHandle` naming the Longhorn Volume. Phases as in Kubernetes: Available, Bound, Released (its claim
// was deleted; a Retain volume stays Released), Failed. The `kubernetes.io/pv-protection` finalizer is removed
// only once the volume is no longer bound, so a bound PV cannot vanish under its claim.

import { ageColumn, immutableField, specOf } from './common.js';
import { required } from './field-errors.js';
import type { DefaultingContext, FieldError, KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import { accessModesCell, PV_ACCESS_MODES, type PvAccessMode, type VolumeMode, VOLUME_MODES } from './persistent-volume-claim.js';
import { arrayOf, bool, enumOf, intOrString, mapOf, obj, resourceSchema, str, strMap, PRESERVE_UNKNOWN } from './schema.js';
import { RECLAIM_POLICIES, type ReclaimPolicy } from './storage-class.js';

export const PV_PROTECTION_FINALIZER = 'kubernetes.io/pv-protection';
export const PV_PHASES = ['Pending', 'Available', 'Bound', 'Released', 'Failed'] as const;
export type PvPhase = (typeof PV_PHASES)[number];
/** Set on PVs a provisioner created, with the provisioner's name (Kubernetes' key). */
export const PROVISIONED_BY_ANNOTATION = 'pv.kubernetes.io/provisioned-by';

export interface ClaimRef {
  kind?: string;
  apiVersion?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  resourceVersion?: string;
}

export interface PersistentVolumeSpec {
  capacity?: { storage?: string };
  accessModes?: PvAccessMode[];
  persistentVolumeReclaimPolicy?: ReclaimPolicy;
  storageClassName?: string;
  volumeMode?: VolumeMode;
  claimRef?: ClaimRef;
  csi?: { driver: string; volumeHandle: string; fsType?: string; readOnly?: boolean; volumeAttributes?: Record<string, string> };
  mountOptions?: string[];
}

export interface PersistentVolumeStatus {
  phase?: PvPhase;
  message?: string;
  reason?: string;
  lastPhaseTransitionTime?: string;
}

export type PersistentVolume = KubeObject<PersistentVolumeSpec, PersistentVolumeStatus>;

const schema = resourceSchema({
  description: 'PersistentVolume is a provisioned piece of storage, bound to one claim.',
  spec: obj({
    capacity: mapOf(intOrString()),
    accessModes: arrayOf(enumOf(PV_ACCESS_MODES)),
    persistentVolumeReclaimPolicy: enumOf(RECLAIM_POLICIES),
    storageClassName: str(),
    volumeMode: enumOf(VOLUME_MODES),
    claimRef: obj({ kind: str(), apiVersion: str(), namespace: str(), name: str(), uid: str(), resourceVersion: str(), fieldPath: str() }, { nullable: true }),
    csi: obj(
      { driver: str({ minLength: 1 }), volumeHandle: str({ minLength: 1 }), fsType: str(), readOnly: bool(), volumeAttributes: strMap() },
      { required: ['driver', 'volumeHandle'] },
    ),
    mountOptions: arrayOf(str()),
    nodeAffinity: { type: 'object', [PRESERVE_UNKNOWN]: true },
  }),
  status: obj(
    { phase: enumOf(PV_PHASES), message: str(), reason: str(), lastPhaseTransitionTime: str() },
    { preserveUnknown: true },
  ),
  required: ['spec'],
});

function defaultOnCreate(o: KubeObject, ctx: DefaultingContext): void {
  const pv = o as PersistentVolume;
  const spec = (pv.spec ??= {});
  spec.persistentVolumeReclaimPolicy ??= 'Retain';
  spec.volumeMode ??= 'Filesystem';
  const fin = (pv.metadata.finalizers ??= []);
  if (!fin.includes(PV_PROTECTION_FINALIZER)) fin.push(PV_PROTECTION_FINALIZER);
  pv.status = { phase: 'Pending', lastPhaseTransitionTime: ctx.now().toISOString().replace(/\.\d+Z$/, 'Z') };
}

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(o);
  const errs: FieldError[] = [];
  if (spec['capacity'] === undefined) errs.push(required('spec.capacity'));
  if (!Array.isArray(spec['accessModes']) || spec['accessModes'].length === 0) errs.push(required('spec.accessModes'));
  // Kubernetes: the volume source of a PV never changes once created.
  if (old !== undefined) errs.push(...immutableField('spec.csi', spec['csi'], specOf(old)['csi']));
  return errs;
}

export const persistentVolumeInfo: KindInfo = {
  group: '',
  version: 'v1',
  kind: 'PersistentVolume',
  listKind: 'PersistentVolumeList',
  plural: 'persistentvolumes',
  singular: 'persistentvolume',
  shortNames: ['pv'],
  namespaced: false,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Capacity', jsonPath: '.spec.capacity.storage', type: 'string' },
    { name: 'Access Modes', jsonPath: '.spec.accessModes', type: 'string', value: (o) => accessModesCell((o as PersistentVolume).spec?.accessModes) },
    { name: 'Reclaim Policy', jsonPath: '.spec.persistentVolumeReclaimPolicy', type: 'string' },
    { name: 'Status', jsonPath: '.status.phase', type: 'string' },
    {
      name: 'Claim',
      jsonPath: '.spec.claimRef',
      type: 'string',
      value: (o) => {
        const ref = (o as PersistentVolume).spec?.claimRef;
        return ref?.name ? `${ref.namespace ?? ''}/${ref.name}` : '';
      },
    },
    { name: 'StorageClass', jsonPath: '.spec.storageClassName', type: 'string' },
    { name: 'Reason', jsonPath: '.status.reason', type: 'string' },
    ageColumn,
    { name: 'VolumeMode', jsonPath: '.spec.volumeMode', type: 'string', priority: 1 },
  ],
  schema,
  defaultOnCreate,
  validate,
};
