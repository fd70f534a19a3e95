// Admission of claim updates that need other objects: a bound claim may ask for more storage only when its
// StorageClass exists and allows expansion (Kubernetes' PersistentVolumeClaimResize admission, same message). The
// provisioner then grows the claim's Volume (resize.ts).

import type { PersistentVolumeClaim } from '../../api/persistent-volume-claim.js';
import { requestedBytes } from '../../api/persistent-volume-claim.js';
import type { StorageClass } from '../../api/storage-class.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { AdmissionPlugin } from '../../store/resource-store.js';
import type { Store } from '../../store/types.js';

export const RESIZE_NOT_ALLOWED = 'only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize';

/** The claim's class allows expansion (it exists, with `allowVolumeExpansion: true`). */
export async function classAllowsExpansion(store: Store, className: string | undefined): Promise<boolean> {
  if (!className) return false;
  try {
    return (await store.get<StorageClass>('StorageClass', '', className)).allowVolumeExpansion === true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export const claimAdmission: AdmissionPlugin = {
  kinds: ['PersistentVolumeClaim'],
  async validateUpdate(obj, old, store) {
    const claim = obj as PersistentVolumeClaim;
    const before = old as PersistentVolumeClaim;
    if (!before.spec?.volumeName) return;
    const want = requestedBytes(claim);
    const had = requestedBytes(before);
    if (want === undefined || had === undefined || want <= had) return;
    if (await classAllowsExpansion(store, claim.spec?.storageClassName)) return;
    const name = claim.metadata.name ?? '';
    throw new StoreError('Forbidden', `persistentvolumeclaims "${name}" is forbidden: ${RESIZE_NOT_ALLOWED}`, {
      details: { kind: 'persistentvolumeclaims', name },
    });
  },
};
