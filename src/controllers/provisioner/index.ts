// The provisioner of `driver.longhorn.io` StorageClasses, with the parts of Kubernetes' PV controller it needs:
// claims get a Longhorn Volume and a bound PersistentVolume; released volumes are deleted or retained; the
// protection finalizers are removed once nothing uses the claim or volume.
//
// Per claim (`PersistentVolumeClaim/<ns>/<name>`):
//   protectClaim (deleting and no pod uses it → drop pvc-protection) → bound? syncClaimStatus, resize (a request
//   above the claim's capacity grows its Volume, offline: resize.ts) → classFor (our
//   class? WaitForFirstConsumer waits for the scheduler's selected-node) → restoreSource (a VolumeSnapshot dataSource
//   of type bi: its backing image, ready first; of type snap, or a PersistentVolumeClaim: a volume clone, the
//   Volume's `dataSource` snap:// or vol:// on the source's backing image, checked by cloneProblem) →
//   ensureBackingImage (create it from the class's data source, or refuse a source that differs, or a claim smaller
//   than the image) → provision (Volume, then PV bound to the claim, then the claim's volumeName and status).
// Per volume (`PersistentVolume//<name>`):
//   claim gone → Released → reclaim (Delete: the Volume, then the PV) → deleting and not bound → drop pv-protection.
// A claim that cannot be provisioned stays Pending with a Warning Event saying why; it is retried when its class,
// its image or a pod using it changes, never on a timer over all claims.

import type { BackingImage } from '../../api/backing-image.js';
import type { Engine } from '../../api/engine.js';
import { LABEL_PVC, LABEL_PVC_NAMESPACE } from '../../api/labels.js';
import { DEFAULT_NAMESPACE, type DeepReadonly } from '../../api/meta.js';
import type { Pod } from '../../api/pod.js';
import {
  PROVISIONED_BY_ANNOTATION,
  PV_PROTECTION_FINALIZER,
  type PersistentVolume,
} from '../../api/persistent-volume.js';
import {
  PVC_PROTECTION_FINALIZER,
  SELECTED_NODE_ANNOTATION,
  STORAGE_PROVISIONER_ANNOTATION,
  requestedBytes,
  type PersistentVolumeClaim,
} from '../../api/persistent-volume-claim.js';
import { formatQuantity } from '../../api/quantity.js';
import type { StorageClass } from '../../api/storage-class.js';
import { volumeDataSourceFor, type Volume } from '../../api/volume.js';
import { parseSnapshotHandle, type VolumeSnapshot, type VolumeSnapshotContent } from '../../api/volume-snapshot.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { errorMessage } from '../../controller-kit/log.js';
import { isAlreadyExists, isInvalid, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { mutateStatus } from '../common/status.js';
import { LONGHORN_PROVISIONER, backingImageFor, parseClassParameters, sourceMismatch, volumeSpecFor } from './parameters.js';
import { claimResizer } from './resize.js';

export { LONGHORN_PROVISIONER, parseClassParameters, sourceMismatch } from './parameters.js';

type RO<T> = DeepReadonly<T>;
const PVC = 'PersistentVolumeClaim';
const PV = 'PersistentVolume';
const BY_CLAIM = 'claim';

export interface ProvisionerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  /** Where Volumes and on-demand BackingImages are created. */
  namespace?: string;
  workers?: number;
}

/** The PV (and Longhorn Volume) name of a claim, as Kubernetes' external provisioner names it. */
export const volumeNameFor = (claimUid: string) => `pvc-${claimUid}`;

export function provisionerController(opts: ProvisionerOptions): Controller {
  const { store, informers, events } = opts;
  const ns = opts.namespace ?? DEFAULT_NAMESPACE;
  const claims = informers.informerFor<PersistentVolumeClaim>(PVC);
  const pvs = informers.informerFor<PersistentVolume>(PV);
  const classes = informers.informerFor<StorageClass>('StorageClass');
  const images = informers.informerFor<BackingImage>('BackingImage');
  const volumes = informers.informerFor<Volume>('Volume');
  const engines = informers.informerFor<Engine>('Engine');
  const pods = informers.informerFor<Pod>('Pod');
  const volumeSnapshots = informers.informerFor<VolumeSnapshot>('VolumeSnapshot');
  const snapshotContents = informers.informerFor<VolumeSnapshotContent>('VolumeSnapshotContent');
  /** Last refusal Event per claim, so a retry does not repeat it. */
  const lastRefusal = new Map<string, string>();

  const podsUsing = (claimNs: string, name: string) =>
    pods.byIndex(BY_CLAIM, `${claimNs}/${name}`).filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');

  const refuse = (pvc: RO<PersistentVolumeClaim>, reason: string, message: string, type: 'Warning' | 'Normal' = 'Warning'): void => {
    const key = `${pvc.metadata.namespace ?? ''}/${pvc.metadata.name ?? ''}`;
    if (lastRefusal.get(key) === message) return;
    lastRefusal.set(key, message);
    events.event(pvc, type, reason, message);
  };

  const resize = claimResizer({ store, events, namespace: ns, volumes, engines, classes, note: refuse });

  async function dropFinalizer(kind: string, o: RO<PersistentVolumeClaim | PersistentVolume>, finalizer: string): Promise<void> {
    const finalizers = (o.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    await store
      .patch(kind, o.metadata.namespace ?? '', o.metadata.name ?? '', 'merge', {
        metadata: { finalizers: finalizers.length ? finalizers : null, resourceVersion: o.metadata.resourceVersion },
      })
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
  }

  async function syncClaimStatus(pvc: RO<PersistentVolumeClaim>, pv: RO<PersistentVolume>): Promise<void> {
    await mutateStatus<PersistentVolumeClaim>(store, PVC, pvc.metadata.namespace ?? '', pvc.metadata.name ?? '', (st) => {
      st.phase = 'Bound';
      st.accessModes = [...(pv.spec?.accessModes ?? [])];
      st.capacity = { storage: pv.spec?.capacity?.storage ?? '' };
    });
  }

  /** Creates the class's image when missing; undefined when provisioning may go on, else why not. */
  async function ensureBackingImage(pvc: RO<PersistentVolumeClaim>, params: ReturnType<typeof parseClassParameters>, bytes: number): Promise<string | undefined> {
    const name = params.backingImage;
    if (!name) return undefined;
    const image = images.get(ns, name);
    if (!image) {
      if (!params.source) return `backing image "${name}" does not exist and the class gives no backingImageDataSourceType to create it from`;
      try {
        await store.create(backingImageFor(name, ns, params.source));
      } catch (err) {
        if (isInvalid(err)) {
          // The class's source is refused (bad URL, private address): only a new class can fix that.
          refuse(pvc, 'ProvisioningFailed', `cannot create backing image "${name}" from the class's data source: ${errorMessage(err)}`);
          return 'invalid source';
        }
        if (!isAlreadyExists(err)) throw err;
      }
      events.event(pvc, 'Normal', 'BackingImageCreated', `created backing image "${name}" from the class's ${params.source.type} source`);
      return `waiting for backing image "${name}" to be prepared`;
    }
    const diff = sourceMismatch(params.source, image);
    if (diff) {
      refuse(pvc, 'BackingImageMismatch', `storage class parameter ${diff.field} is "${diff.class}" but backing image "${name}" has "${diff.image}"; the image is left unchanged and the claim stays Pending`);
      return 'mismatch';
    }
    const virtual = image.status?.virtualSize;
    if (!virtual) return `waiting for backing image "${name}" to be prepared (its virtual size is not known yet)`;
    if (bytes < virtual) {
      refuse(pvc, 'ProvisioningFailed', `claim size ${formatQuantity(bytes)} (${bytes} bytes) is smaller than backing image "${name}"'s virtual size ${formatQuantity(virtual)} (${virtual} bytes)`);
      return 'too small';
    }
    return undefined;
  }

  /** False when the Volume was refused (the claim stays Pending with an Event). */
  async function provision(pvc: RO<PersistentVolumeClaim>, sc: RO<StorageClass>, params: ReturnType<typeof parseClassParameters>, bytes: number, dataSource?: string): Promise<boolean> {
    const name = volumeNameFor(pvc.metadata.uid ?? '');
    if (!volumes.get(ns, name)) {
      const volume: Volume = {
        apiVersion: 'longhorn.io/v1beta2',
        kind: 'Volume',
        metadata: { name, namespace: ns, labels: { [LABEL_PVC]: pvc.metadata.name ?? '', [LABEL_PVC_NAMESPACE]: pvc.metadata.namespace ?? '' } },
        spec: { ...volumeSpecFor(params, bytes), ...(dataSource ? { dataSource } : {}) },
      };
      try {
        await store.create(volume);
      } catch (err) {
        if (isInvalid(err)) {
          // The Volume's own admission refused it (e.g. a size below the image's): say so on the claim.
          refuse(pvc, 'ProvisioningFailed', `cannot create volume ${name}: ${errorMessage(err)}`);
          return false;
        }
        if (!isAlreadyExists(err)) throw err;
      }
    }
    if (!pvs.get('', name)) {
      const pv: PersistentVolume = {
        apiVersion: 'v1',
        kind: PV,
        metadata: { name, annotations: { [PROVISIONED_BY_ANNOTATION]: LONGHORN_PROVISIONER } },
        spec: {
          capacity: { storage: formatQuantity(bytes) },
          accessModes: [...(pvc.spec?.accessModes ?? ['ReadWriteOnce'])],
          persistentVolumeReclaimPolicy: sc.reclaimPolicy === 'Retain' ? 'Retain' : 'Delete',
          storageClassName: sc.metadata.name ?? '',
          volumeMode: pvc.spec?.volumeMode ?? 'Filesystem',
          claimRef: { kind: PVC, apiVersion: 'v1', namespace: pvc.metadata.namespace ?? '', name: pvc.metadata.name ?? '', uid: pvc.metadata.uid ?? '' },
          csi: { driver: LONGHORN_PROVISIONER, volumeHandle: name, fsType: params.fsType, volumeAttributes: { ...(sc.parameters ?? {}) } },
        },
      };
      await store.create(pv).catch((err: unknown) => {
        if (!isAlreadyExists(err)) throw err;
      });
    }
    await mutateStatus<PersistentVolume>(store, PV, '', name, (st) => {
      st.phase = 'Bound';
    });
    await store.patch(PVC, pvc.metadata.namespace ?? '', pvc.metadata.name ?? '', 'merge', {
      metadata: { annotations: { [STORAGE_PROVISIONER_ANNOTATION]: LONGHORN_PROVISIONER, 'pv.kubernetes.io/bind-completed': 'yes' } },
      spec: { volumeName: name },
    });
    const bound = pvs.get('', name) ?? (await store.get<PersistentVolume>(PV, '', name));
    await syncClaimStatus(pvc, bound);
    lastRefusal.delete(`${pvc.metadata.namespace ?? ''}/${pvc.metadata.name ?? ''}`);
    events.event(pvc, 'Normal', 'ProvisioningSucceeded', `Successfully provisioned volume ${name}`);
    return true;
  }

  type Restore = { backingImage: string; source: NonNullable<ReturnType<typeof parseClassParameters>['source']> } | { clone: string; sourceVolume: string };

  /**
   * A claim with a dataSource restores from it: a `bi` VolumeSnapshot's backing image becomes the volume's (created
   * on demand from the handle's source by ensureBackingImage, as a class's would be); a `snap` VolumeSnapshot or a
   * PersistentVolumeClaim makes the volume a clone (snap://<volume>/<snapshot>, or vol://<the claim's volume>).
   * 'wait' until the snapshot is ready or the source claim bound; 'refused' (with an Event) for what cannot be
   * restored.
   */
  function restoreSource(pvc: RO<PersistentVolumeClaim>): Restore | 'wait' | 'refused' | undefined {
    const ds = pvc.spec?.dataSource as { kind?: string; name?: string; apiGroup?: string } | undefined;
    if (ds?.kind === 'PersistentVolumeClaim' && !ds.apiGroup) {
      const src = claims.get(pvc.metadata.namespace ?? '', ds.name ?? '');
      if (!src) {
        refuse(pvc, 'ProvisioningFailed', `source claim "${ds.name ?? ''}" of the clone does not exist in namespace "${pvc.metadata.namespace ?? ''}"`);
        return 'refused';
      }
      if (!src.spec?.volumeName) {
        refuse(pvc, 'WaitingForSource', `waiting for source claim "${ds.name ?? ''}" to be bound`, 'Normal');
        return 'wait';
      }
      return { clone: volumeDataSourceFor(src.spec.volumeName), sourceVolume: src.spec.volumeName };
    }
    if (!ds || ds.kind !== 'VolumeSnapshot') return undefined;
    const vs = volumeSnapshots.get(pvc.metadata.namespace ?? '', ds.name ?? '');
    if (!vs?.status?.readyToUse) {
      refuse(pvc, 'WaitingForSnapshot', `waiting for VolumeSnapshot "${ds.name ?? ''}" to be ready to use`, 'Normal');
      return 'wait';
    }
    const content = snapshotContents.get('', vs.status.boundVolumeSnapshotContentName ?? '');
    let h: ReturnType<typeof parseSnapshotHandle>;
    try {
      h = parseSnapshotHandle(content?.status?.snapshotHandle || content?.spec?.source?.snapshotHandle || '');
    } catch (err) {
      refuse(pvc, 'ProvisioningFailed', `VolumeSnapshot "${ds.name ?? ''}": ${errorMessage(err)}`);
      return 'refused';
    }
    if (h.kind === 'snap') return { clone: volumeDataSourceFor(h.volume, h.snapshot), sourceVolume: h.volume };
    return { backingImage: h.backingImage, source: { type: h.sourceType, parameters: h.parameters, ...(h.checksum ? { checksum: h.checksum } : {}) } };
  }

  /** Why a clone of `sourceVolume` cannot be this claim's volume (the claim then stays Pending), or undefined. */
  function cloneProblem(params: ReturnType<typeof parseClassParameters>, bytes: number, sc: RO<StorageClass>, sourceVolume: string): string | undefined {
    const src = volumes.get(ns, sourceVolume);
    if (!src || src.metadata.deletionTimestamp) return `source volume "${sourceVolume}" of the clone does not exist${src ? ' (it is being deleted)' : ''}`;
    const image = src.spec?.backingImage ?? '';
    if (params.backingImage && params.backingImage !== image) {
      return `storage class "${sc.metadata.name ?? ''}" asks for backing image "${params.backingImage}" but source volume "${sourceVolume}" is on ${image ? `backing image "${image}"` : 'no backing image'}: a clone shares its source's backing image`;
    }
    const srcBytes = Number(src.spec?.size ?? 0);
    if (bytes < srcBytes) return `claim size ${formatQuantity(bytes)} (${bytes} bytes) is smaller than source volume "${sourceVolume}" (${srcBytes} bytes)`;
    return undefined;
  }

  async function reconcileClaim(claimNs: string, name: string): Promise<{ requeueAfter: number } | undefined> {
    const pvc = claims.get(claimNs, name);
    if (!pvc) {
      lastRefusal.delete(`${claimNs}/${name}`);
      return undefined;
    }
    if (pvc.metadata.deletionTimestamp) {
      if ((pvc.metadata.finalizers ?? []).includes(PVC_PROTECTION_FINALIZER) && podsUsing(claimNs, name).length === 0) {
        await dropFinalizer(PVC, pvc, PVC_PROTECTION_FINALIZER);
      }
      return undefined;
    }
    const boundTo = pvc.spec?.volumeName ?? '';
    if (boundTo) {
      const pv = pvs.get('', boundTo);
      if (pv && pvc.status?.phase !== 'Bound') {
        await syncClaimStatus(pvc, pv);
        return undefined; // the status write brings the claim back, with its capacity
      }
      return pv ? resize(pvc, pv) : undefined;
    }
    const sc = classes.get('', pvc.spec?.storageClassName ?? '');
    if (!sc) return undefined; // Pending until its class exists; the class's creation enqueues it.
    if (sc.provisioner !== LONGHORN_PROVISIONER) return undefined;
    if (sc.volumeBindingMode === 'WaitForFirstConsumer' && !pvc.metadata.annotations?.[SELECTED_NODE_ANNOTATION]) {
      if (pvc.status?.phase !== 'Pending') return undefined;
      // Kubernetes reports this as Normal: waiting is the point of the binding mode.
      refuse(pvc, 'WaitForFirstConsumer', 'waiting for first consumer to be created before binding', 'Normal');
      return undefined;
    }
    let params: ReturnType<typeof parseClassParameters>;
    try {
      params = parseClassParameters(sc.parameters ?? {});
    } catch (err) {
      refuse(pvc, 'ProvisioningFailed', `storage class "${sc.metadata.name ?? ''}": ${errorMessage(err)}`);
      return undefined;
    }
    const fromSnapshot = restoreSource(pvc);
    if (fromSnapshot === 'wait') return { requeueAfter: 3000 };
    if (fromSnapshot === 'refused') return undefined;
    const bytes = requestedBytes(pvc) ?? 0;
    if (fromSnapshot && 'clone' in fromSnapshot) {
      const problem = cloneProblem(params, bytes, sc, fromSnapshot.sourceVolume);
      if (problem) {
        refuse(pvc, 'ProvisioningFailed', problem);
        return { requeueAfter: 30_000 };
      }
      const image = volumes.get(ns, fromSnapshot.sourceVolume)?.spec?.backingImage ?? '';
      const { backingImage: _bi, source: _src, ...rest } = params;
      await provision(pvc, sc, { ...rest, ...(image ? { backingImage: image } : {}) }, bytes, fromSnapshot.clone);
      return undefined;
    }
    if (fromSnapshot) params = { ...params, backingImage: fromSnapshot.backingImage, source: fromSnapshot.source };
    const blocked = await ensureBackingImage(pvc, params, bytes);
    if (blocked !== undefined) return undefined; // the image's next change enqueues the claim
    await provision(pvc, sc, params, bytes);
    return undefined;
  }

  async function reconcileVolume(name: string): Promise<void> {
    const pv = pvs.get('', name);
    if (!pv) return;
    const ref = pv.spec?.claimRef;
    const claim = ref?.name ? claims.get(ref.namespace ?? '', ref.name) : undefined;
    const bound = claim !== undefined && claim.metadata.uid === ref?.uid;
    if (!bound && ref?.name && pv.status?.phase === 'Bound') {
      await mutateStatus<PersistentVolume>(store, PV, '', name, (st) => {
        st.phase = 'Released';
      });
      return;
    }
    if (!bound && pv.status?.phase === 'Released' && pv.spec?.persistentVolumeReclaimPolicy === 'Delete' && !pv.metadata.deletionTimestamp) {
      const handle = pv.spec.csi?.driver === LONGHORN_PROVISIONER ? pv.spec.csi.volumeHandle : undefined;
      if (handle && volumes.get(ns, handle)) {
        await store.delete('Volume', ns, handle).catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
        return; // the Volume's deletion enqueues the PV again
      }
      await store.delete(PV, '', name).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      return;
    }
    if (pv.metadata.deletionTimestamp && !bound && (pv.metadata.finalizers ?? []).includes(PV_PROTECTION_FINALIZER)) {
      await dropFinalizer(PV, pv, PV_PROTECTION_FINALIZER);
    }
  }

  const controller = new Controller({
    name: 'provisioner',
    workers: opts.workers ?? 4,
    reconcile: async (key) => {
      const [kind, objNs = '', ...rest] = key.split('/');
      if (kind === PVC) return reconcileClaim(objNs, rest.join('/'));
      if (kind === PV) await reconcileVolume(rest.join('/'));
      return undefined;
    },
  });

  const claimKey = (c: RO<PersistentVolumeClaim> | { metadata: { namespace?: string; name?: string } }) =>
    `${PVC}/${c.metadata.namespace ?? ''}/${c.metadata.name ?? ''}`;
  const pvKey = (name: string) => `${PV}//${name}`;
  const pending = () => claims.list().filter((c) => !c.spec?.volumeName);

  pods.addIndex(BY_CLAIM, (p) =>
    (p.spec?.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [`${p.metadata.namespace ?? ''}/${v.persistentVolumeClaim.claimName}`] : [])),
  );
  claims.addEventHandler({
    onAdd: (c) => controller.enqueue(claimKey(c)),
    onUpdate: (_o, c) => controller.enqueue(claimKey(c)),
    onDelete: (c) => {
      lastRefusal.delete(`${c.metadata.namespace ?? ''}/${c.metadata.name ?? ''}`);
      if (c.spec?.volumeName) controller.enqueue(pvKey(c.spec.volumeName));
    },
  });
  pvs.addEventHandler({
    onAdd: (v) => controller.enqueue(pvKey(v.metadata.name ?? '')),
    onUpdate: (_o, v) => controller.enqueue(pvKey(v.metadata.name ?? '')),
  });
  // A volume's or its engine's change may let a resize go on (detached; the new size taken): its claim.
  const claimOfVolume = (v: RO<Volume> | undefined) => {
    const name = v?.metadata.labels?.[LABEL_PVC];
    if (name) controller.enqueue(`${PVC}/${v.metadata.labels?.[LABEL_PVC_NAMESPACE] ?? ''}/${name}`);
  };
  engines.addEventHandler({ onUpdate: (_o, e) => claimOfVolume(volumes.get(e.metadata.namespace ?? '', e.spec?.volumeName ?? '')) });
  volumes.addEventHandler({
    onUpdate: (_o, v) => claimOfVolume(v),
    onDelete: (v) => {
      const pv = pvs.get('', v.metadata.name ?? '');
      if (pv) controller.enqueue(pvKey(pv.metadata.name ?? ''));
    },
  });
  // A class (re)created or an image that changed unblocks only the pending claims that name them.
  classes.addEventHandler({
    onAdd: (sc) => pending().filter((c) => c.spec?.storageClassName === sc.metadata.name).forEach((c) => controller.enqueue(claimKey(c))),
  });
  // Pending claims are few once a workload is up (bound claims never wait on an image), so a scan is cheap; an
  // index by image would go stale when a claim's class is created after the claim.
  const imageChanged = (bi: RO<BackingImage>) => {
    for (const c of pending()) {
      if (classes.get('', c.spec?.storageClassName ?? '')?.parameters?.['backingImage'] === bi.metadata.name) controller.enqueue(claimKey(c));
    }
  };
  images.addEventHandler({ onAdd: imageChanged, onUpdate: (_o, bi) => imageChanged(bi), onDelete: imageChanged });
  // A claim being deleted waits for the last pod using it.
  const podGone = (p: RO<Pod>) => {
    for (const v of p.spec?.volumes ?? []) {
      if (!v.persistentVolumeClaim) continue;
      const c = claims.get(p.metadata.namespace ?? '', v.persistentVolumeClaim.claimName);
      if (c?.metadata.deletionTimestamp) controller.enqueue(claimKey(c));
    }
  };
  pods.addEventHandler({ onDelete: podGone, onUpdate: (_o, p) => podGone(p) });
  return controller;
}
