// PersistentVolumeClaim (core v1, `pvc`): a request for storage of a class. The provisioner of the class creates
// a PersistentVolume and binds the two (`spec.volumeName`, `status.phase: Bound`). As in Kubernetes a claim gets
// the `kubernetes.io/pvc-protection` finalizer on create, which is removed only once no pod uses the claim, so a
// claim deleted under a running pod stays until the pod is gone.

import { ageColumn, immutableField, immutableOnceSet, record, specOf, stringField } from './common.js';
import { forbidden, invalid, required } from './field-errors.js';
import type { DefaultingContext, FieldError, KindInfo } from './kind.js';
import type { Condition, KubeObject } from './meta.js';
import { parseQuantity } from './quantity.js';
import { arrayOf, conditionsSchema, enumOf, intOrString, mapOf, obj, resourceSchema, str, PRESERVE_UNKNOWN, type Schema } from './schema.js';

export const PVC_PROTECTION_FINALIZER = 'kubernetes.io/pvc-protection';
export const PV_ACCESS_MODES = ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'] as const;
export type PvAccessMode = (typeof PV_ACCESS_MODES)[number];
export const VOLUME_MODES = ['Filesystem', 'Block'] as const;
export type VolumeMode = (typeof VOLUME_MODES)[number];
export const PVC_PHASES = ['Pending', 'Bound', 'Lost'] as const;
export type PvcPhase = (typeof PVC_PHASES)[number];
/** Set by the scheduler on a WaitForFirstConsumer claim once a pod using it has a node, as Kubernetes does. */
export const SELECTED_NODE_ANNOTATION = 'volume.kubernetes.io/selected-node';
/** Set on claims the provisioner has taken on (Kubernetes' external-provisioner sets this key too). */
export const STORAGE_PROVISIONER_ANNOTATION = 'volume.kubernetes.io/storage-provisioner';

export interface PersistentVolumeClaimSpec {
  accessModes?: PvAccessMode[];
  resources?: { requests?: { storage?: string }; limits?: { storage?: string } };
  storageClassName?: string;
  volumeName?: string;
  volumeMode?: VolumeMode;
  selector?: Record<string, unknown>;
  dataSource?: Record<string, unknown>;
}

export interface PersistentVolumeClaimStatus {
  phase?: PvcPhase;
  accessModes?: PvAccessMode[];
  capacity?: { storage?: string };
  conditions?: Condition[] | null;
}

export type PersistentVolumeClaim = KubeObject<PersistentVolumeClaimSpec, PersistentVolumeClaimStatus>;

const quantityMap: Schema = mapOf(intOrString());
const preserved: Schema = { type: 'object', [PRESERVE_UNKNOWN]: true };

/** The claim spec; also the spec of a StatefulSet's volumeClaimTemplates. */
export const pvcSpecSchema: Schema = obj({
  accessModes: arrayOf(enumOf(PV_ACCESS_MODES)),
  resources: obj({ requests: quantityMap, limits: quantityMap }),
  storageClassName: str({ nullable: true }),
  volumeName: str(),
  volumeMode: enumOf(VOLUME_MODES),
  selector: preserved,
  dataSource: preserved,
  dataSourceRef: preserved,
  volumeAttributesClassName: str({ nullable: true }),
});

const schema = resourceSchema({
  description: 'PersistentVolumeClaim is a request for storage of a StorageClass.',
  spec: pvcSpecSchema,
  status: obj(
    { phase: enumOf(PVC_PHASES), accessModes: arrayOf(str()), capacity: quantityMap, conditions: conditionsSchema },
    { preserveUnknown: true },
  ),
  required: ['spec'],
});

/** Bytes requested by a claim (spec.resources.requests.storage), or undefined when absent or malformed. */
export function requestedBytes(pvc: { readonly spec?: { readonly resources?: { readonly requests?: { readonly storage?: string } } } }): number | undefined {
  return parseQuantity(pvc.spec?.resources?.requests?.storage);
}

function defaultOnCreate(o: KubeObject, _ctx: DefaultingContext): void {
  const pvc = o as PersistentVolumeClaim;
  const spec = (pvc.spec ??= {});
  spec.volumeMode ??= 'Filesystem';
  const fin = (pvc.metadata.finalizers ??= []);
  if (!fin.includes(PVC_PROTECTION_FINALIZER)) fin.push(PVC_PROTECTION_FINALIZER);
  pvc.status = { phase: 'Pending' };
}

/** The rules of a claim spec, shared with StatefulSet's volumeClaimTemplates (`prefix` is the spec's path). */
export function pvcSpecErrors(spec: Record<string, unknown>, prefix: string): FieldError[] {
  const errs: FieldError[] = [];
  const modes = spec['accessModes'];
  if (!Array.isArray(modes) || modes.length === 0) errs.push(required(`${prefix}.accessModes`, 'at least 1 access mode is required'));
  const storage = record(record(spec, 'resources'), 'requests')['storage'];
  if (storage === undefined) errs.push(required(`${prefix}.resources.requests.storage`));
  else if (parseQuantity(storage as string | number) === undefined || parseQuantity(storage as string | number) === 0) {
    errs.push(invalid(`${prefix}.resources.requests.storage`, storage, 'must be a positive quantity such as 32Mi or 1Gi'));
  }
  return errs;
}

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(o);
  const errs = pvcSpecErrors(spec, 'spec');
  if (old !== undefined) {
    const before = specOf(old);
    // Kubernetes: a claim's spec is immutable except the size request (expansion) and the binding, set once.
    for (const f of ['accessModes', 'storageClassName', 'volumeMode', 'selector', 'dataSource']) {
      errs.push(...immutableField(`spec.${f}`, spec[f], before[f]));
    }
    errs.push(...immutableOnceSet('spec.volumeName', stringField(spec, 'volumeName'), stringField(before, 'volumeName')));
    // A bound claim may grow (the provisioner resizes its volume; src/controllers/provisioner/resize.ts), not shrink.
    const want = requestedBytes(o as PersistentVolumeClaim);
    const had = requestedBytes(old as PersistentVolumeClaim);
    if (stringField(before, 'volumeName') !== '' && want !== undefined && had !== undefined && want < had) {
      errs.push(forbidden('spec.resources.requests.storage', 'field can not be less than previous value'));
    }
  }
  return errs;
}

export const persistentVolumeClaimInfo: KindInfo = {
  group: '',
  version: 'v1',
  kind: 'PersistentVolumeClaim',
  listKind: 'PersistentVolumeClaimList',
  plural: 'persistentvolumeclaims',
  singular: 'persistentvolumeclaim',
  shortNames: ['pvc'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Status', jsonPath: '.status.phase', type: 'string' },
    { name: 'Volume', jsonPath: '.spec.volumeName', type: 'string' },
    { name: 'Capacity', jsonPath: '.status.capacity.storage', type: 'string' },
    { name: 'Access Modes', jsonPath: '.status.accessModes', type: 'string', value: (o) => accessModesCell((o as PersistentVolumeClaim).status?.accessModes) },
    { name: 'StorageClass', jsonPath: '.spec.storageClassName', type: 'string' },
    ageColumn,
    { name: 'VolumeMode', jsonPath: '.spec.volumeMode', type: 'string', priority: 1 },
  ],
  schema,
  defaultOnCreate,
  validate,
};

const MODE_SHORT: Record<string, string> = { ReadWriteOnce: 'RWO', ReadOnlyMany: 'ROX', ReadWriteMany: 'RWX', ReadWriteOncePod: 'RWOP' };

/** kubectl's `ACCESS MODES` cell: `RWO,RWX`. */
export function accessModesCell(modes: unknown): string {
  return Array.isArray(modes) ? modes.map((m) => MODE_SHORT[String(m)] ?? String(m)).join(',') : '';
}
