// Resizing a bound claim (Kubernetes' external-resizer, for our class): a claim whose storage request exceeds its
// `status.capacity` grows its Volume's `spec.size` (rounded up to 2 MiB, as on create). Volumes are expanded offline:
// while the volume is attached the Volume's admission refuses, and the claim keeps the condition `Resizing` saying
// what it waits for; it is retried when the volume changes. Once the volume's engine has the new size (the volume
// controller gives it to a stopped engine; a running one runs with it), the PV's and the claim's capacity say the new
// size and the condition goes. A class without `allowVolumeExpansion` (admission refuses the claim's update; this
// is for a class changed or deleted since) gets a Warning event with Kubernetes' message.

import type { Engine } from '../../api/engine.js';
import { engineNameFor } from '../../api/labels.js';
import type { DeepReadonly } from '../../api/meta.js';
import { getCondition, setCondition } from '../../api/node-contract.js';
import type { PersistentVolume } from '../../api/persistent-volume.js';
import { requestedBytes, type PersistentVolumeClaim } from '../../api/persistent-volume-claim.js';
import { formatQuantity, parseQuantity } from '../../api/quantity.js';
import type { StorageClass } from '../../api/storage-class.js';
import { roundVolumeSize, sizeBytes as bytes, type Volume } from '../../api/volume.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { Informer } from '../../controller-kit/informer.js';
import { errorMessage } from '../../controller-kit/log.js';
import { isInvalid, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { mutateStatus } from '../common/status.js';
import { RESIZE_NOT_ALLOWED } from './admission.js';
import { LONGHORN_PROVISIONER } from './parameters.js';

type RO<T> = DeepReadonly<T>;

/** The claim condition while a resize waits (Kubernetes' `Resizing`). */
export const CLAIM_RESIZING = 'Resizing';
/** A volume still refusing the new size is asked again after this long (its changes also bring it back). */
export const RESIZE_RETRY_MS = 30_000;

export interface ResizerDeps {
  store: Store;
  events: EventRecorder;
  namespace: string;
  volumes: Informer<Volume>;
  engines: Informer<Engine>;
  classes: Informer<StorageClass>;
  /** A Warning or Normal event on the claim, not repeated while the message stays the same. */
  note(pvc: RO<PersistentVolumeClaim>, reason: string, message: string, type?: 'Warning' | 'Normal'): void;
}

export function claimResizer(d: ResizerDeps): (pvc: RO<PersistentVolumeClaim>, pv: RO<PersistentVolume>) => Promise<{ requeueAfter: number } | undefined> {
  const { store, namespace: ns } = d;
  const PVC = 'PersistentVolumeClaim';

  const writeClaim = (pvc: RO<PersistentVolumeClaim>, change: (st: NonNullable<PersistentVolumeClaim['status']>) => void) =>
    mutateStatus<PersistentVolumeClaim>(store, PVC, pvc.metadata.namespace ?? '', pvc.metadata.name ?? '', change);
  const waiting = (pvc: RO<PersistentVolumeClaim>, message: string) =>
    writeClaim(pvc, (st) => {
      st.conditions = setCondition(st.conditions, { type: CLAIM_RESIZING, status: 'True', reason: '', message }, new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), { probeTime: false });
    });

  return async (pvc, pv) => {
    const want = requestedBytes(pvc);
    const have = parseQuantity(pvc.status?.capacity?.storage);
    if (want === undefined || have === undefined || want <= have) {
      if (getCondition(pvc.status?.conditions, CLAIM_RESIZING)) await writeClaim(pvc, (st) => void (st.conditions = (st.conditions ?? []).filter((c) => c.type !== CLAIM_RESIZING)));
      return undefined;
    }
    if (pv.spec?.csi?.driver !== LONGHORN_PROVISIONER) return undefined;
    const handle = pv.spec.csi.volumeHandle ?? '';
    const className = pvc.spec?.storageClassName ?? '';
    if (d.classes.get('', className)?.allowVolumeExpansion !== true) {
      d.note(pvc, 'VolumeResizeFailed', `${RESIZE_NOT_ALLOWED} (storage class "${className}" does not set allowVolumeExpansion: true)`);
      return undefined;
    }
    const v = d.volumes.get(ns, handle);
    if (!v) {
      d.note(pvc, 'VolumeResizeFailed', `cannot resize: volume ${handle} of the claim does not exist`);
      return undefined;
    }
    const target = roundVolumeSize(String(want));
    const quantity = formatQuantity(Number(target));
    if (bytes(v.spec?.size) < bytes(target)) {
      try {
        await store.patch<Volume>('Volume', ns, handle, 'merge', { spec: { size: target } });
      } catch (err) {
        if (isNotFound(err)) return undefined;
        if (!isInvalid(err)) throw err;
        await waiting(pvc, `waiting to grow volume ${handle} to ${quantity}: ${errorMessage(err)}`);
        return { requeueAfter: RESIZE_RETRY_MS };
      }
      d.note(pvc, 'Resizing', `growing volume ${handle} to ${quantity}`, 'Normal');
    }
    const e = d.engines.get(ns, engineNameFor(handle));
    const up = e?.status?.currentState === 'running' || e?.status?.currentState === 'starting';
    const applied = !!e && bytes(e.spec?.volumeSize) >= bytes(target) && (!up || bytes(e.status?.currentSize) >= bytes(target));
    if (!applied) {
      await waiting(pvc, `volume ${handle} grows to ${quantity}: waiting for its engine and replicas to take the new size`);
      return undefined;
    }
    await store.patch<PersistentVolume>('PersistentVolume', '', pv.metadata.name ?? '', 'merge', { spec: { capacity: { storage: quantity } } });
    await writeClaim(pvc, (st) => {
      st.capacity = { ...(st.capacity ?? {}), storage: quantity };
      st.conditions = (st.conditions ?? []).filter((c) => c.type !== CLAIM_RESIZING);
    });
    d.note(pvc, 'VolumeResizeSuccessful', `volume ${handle} is ${quantity}${up ? '' : ': its replicas grow when it is next attached'}`, 'Normal');
    return undefined;
  };
}
