// The VolumeSnapshot controller: the parts of the CSI external snapshotter and of Longhorn's CSI driver that
// `driver.longhorn.io` snapshots need (src/api/volume-snapshot.ts). Per VolumeSnapshot:
//   deleting? (deletionPolicy Delete: delete what the content names — the backing image, or the Longhorn snapshot —
//   then the content) → let go → ensureFinalizer → bindContent (of a claim: take the snapshot per the class's type
//   and create the content naming it; pre-provisioned: the content named, whose `bi://` image is created on demand
//   or reused when its source and checksum match) → updateStatus (ready when the image has a ready copy, or the
//   Longhorn snapshot exists; the restore size).
// A `bi` snapshot is a backing image exported from the claim's volume (minimum copies 1, the class's export type
// and node and disk selectors); a `snap` one a Longhorn snapshot, taken through a Snapshot object.

import type { BackingImage } from '../../api/backing-image.js';
import { LONGHORN_API_VERSION, type DeepReadonly } from '../../api/meta.js';
import type { PersistentVolumeClaim } from '../../api/persistent-volume-claim.js';
import { formatQuantity } from '../../api/quantity.js';
import type { Snapshot } from '../../api/snapshot.js';
import type { Volume } from '../../api/volume.js';
import {
  CONTENT_FINALIZER, formatBiHandle, formatSnapHandle, parseSnapshotHandle, VOLUME_SNAPSHOT_FINALIZER,
  type BiHandle, type VolumeSnapshot, type VolumeSnapshotClass, type VolumeSnapshotContent,
} from '../../api/volume-snapshot.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { errorMessage } from '../../controller-kit/log.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { mutateStatus } from '../common/status.js';
import { LONGHORN_PROVISIONER, sourceMismatch } from '../provisioner/parameters.js';

type RO<T> = DeepReadonly<T>;

export interface VolumeSnapshotControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  /** Where Longhorn objects (backing images, volumes, snapshots) live. */
  namespace: string;
}

export const contentNameFor = (vs: RO<VolumeSnapshot>) => `snapcontent-${vs.metadata.uid ?? ''}`;
/** The backing image or Longhorn snapshot a claim's VolumeSnapshot takes. */
export const snapshotObjectNameFor = (vs: RO<VolumeSnapshot>) => `snapshot-${vs.metadata.uid ?? ''}`;

export function volumeSnapshotController(opts: VolumeSnapshotControllerOptions): Controller {
  const { store, informers, events, namespace: lhNs } = opts;
  const snapshots = informers.informerFor<VolumeSnapshot>('VolumeSnapshot');
  const contents = informers.informerFor<VolumeSnapshotContent>('VolumeSnapshotContent');
  const classes = informers.informerFor<VolumeSnapshotClass>('VolumeSnapshotClass');
  const claims = informers.informerFor<PersistentVolumeClaim>('PersistentVolumeClaim');
  const images = informers.informerFor<BackingImage>('BackingImage');
  const lhSnapshots = informers.informerFor<Snapshot>('Snapshot');
  const volumes = informers.informerFor<Volume>('Volume');

  const reconcile = async (key: string) => {
    const [ns = '', name = ''] = key.split('/');
    const vs = snapshots.get(ns, name);
    if (!vs) return undefined;
    if (vs.metadata.deletionTimestamp) return finalize(vs);
    if (!vs.metadata.finalizers?.includes(VOLUME_SNAPSHOT_FINALIZER)) {
      await store.patch('VolumeSnapshot', ns, name, 'merge', { metadata: { finalizers: [...(vs.metadata.finalizers ?? []), VOLUME_SNAPSHOT_FINALIZER] } });
      return undefined;
    }
    let content: RO<VolumeSnapshotContent> | undefined;
    try {
      content = await bindContent(vs);
    } catch (err) {
      await setError(vs, errorMessage(err));
      return { requeueAfter: 5000 };
    }
    if (!content) return { requeueAfter: 2000 };
    return updateStatus(vs, content);
  };

  /** The content of `vs`, created (with the snapshot it names) for a claim; undefined while that cannot happen yet. */
  async function bindContent(vs: RO<VolumeSnapshot>): Promise<RO<VolumeSnapshotContent> | undefined> {
    const ns = vs.metadata.namespace ?? '';
    const pre = vs.spec?.source?.volumeSnapshotContentName;
    if (pre) {
      const c = contents.get('', pre);
      if (!c) throw new Error(`VolumeSnapshotContent "${pre}" does not exist`);
      const h = parseSnapshotHandle(c.spec?.source?.snapshotHandle ?? c.status?.snapshotHandle ?? '');
      if (h.kind === 'bi') await ensureImage(vs, h);
      return c;
    }
    const claimName = vs.spec?.source?.persistentVolumeClaimName;
    if (!claimName) throw new Error('spec.source names neither persistentVolumeClaimName nor volumeSnapshotContentName');
    const existing = contents.get('', contentNameFor(vs));
    if (existing) return existing;
    const cls = classes.get('', vs.spec?.volumeSnapshotClassName ?? '');
    if (!cls) throw new Error(`VolumeSnapshotClass "${vs.spec?.volumeSnapshotClassName ?? ''}" does not exist`);
    if (cls.driver !== LONGHORN_PROVISIONER) return undefined; // another driver's
    const pvc = claims.get(ns, claimName);
    const volume = pvc?.spec?.volumeName;
    if (!volume) throw new Error(`claim "${claimName}" is not bound to a volume yet`);
    const params = cls.parameters ?? {};
    const type = params['type'] || 'snap';
    const objName = snapshotObjectNameFor(vs);
    let handle: string;
    if (type === 'bi') {
      const exportType = params['export-type'] || 'raw';
      const tags = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      await createIgnoringExisting<BackingImage>({
        apiVersion: LONGHORN_API_VERSION,
        kind: 'BackingImage',
        metadata: { name: objName, namespace: lhNs },
        spec: {
          sourceType: 'export-from-volume',
          sourceParameters: { 'volume-name': volume, 'export-type': exportType },
          minNumberOfCopies: 1,
          ...(tags(params['nodeSelector']).length ? { nodeSelector: tags(params['nodeSelector']) } : {}),
          ...(tags(params['diskSelector']).length ? { diskSelector: tags(params['diskSelector']) } : {}),
        },
      });
      handle = formatBiHandle({ backingImage: objName, sourceType: 'export-from-volume', parameters: { 'volume-name': volume, 'export-type': exportType } });
    } else if (type === 'snap') {
      await createIgnoringExisting<Snapshot>({
        apiVersion: LONGHORN_API_VERSION,
        kind: 'Snapshot',
        metadata: { name: objName, namespace: lhNs, labels: { longhornvolume: volume } },
        spec: { volume, createSnapshot: true },
      });
      handle = formatSnapHandle(volume, objName);
    } else {
      throw new Error(`VolumeSnapshotClass "${cls.metadata.name ?? ''}": parameter type must be bi or snap, not "${type}" (backups are not supported)`);
    }
    const content: VolumeSnapshotContent = {
      apiVersion: 'snapshot.storage.k8s.io/v1',
      kind: 'VolumeSnapshotContent',
      metadata: { name: contentNameFor(vs), finalizers: [CONTENT_FINALIZER] },
      spec: {
        driver: LONGHORN_PROVISIONER,
        deletionPolicy: cls.deletionPolicy,
        source: { volumeHandle: volume },
        volumeSnapshotRef: { kind: 'VolumeSnapshot', apiVersion: 'snapshot.storage.k8s.io/v1', name: vs.metadata.name ?? '', namespace: ns, uid: vs.metadata.uid ?? '' },
        volumeSnapshotClassName: cls.metadata.name ?? '',
      },
    };
    await createIgnoringExisting(content);
    await mutateStatus<VolumeSnapshotContent>(store, 'VolumeSnapshotContent', '', content.metadata.name ?? '', (st) => void (st.snapshotHandle = handle));
    events.event(vs as never, 'Normal', 'CreatingSnapshot', `taking a ${type} snapshot of volume ${volume} (claim ${claimName})`);
    return contents.get('', content.metadata.name ?? '') ?? (await store.get<VolumeSnapshotContent>('VolumeSnapshotContent', '', content.metadata.name ?? ''));
  }

  /** A pre-provisioned `bi://` content's image: created from the handle's source, or reused when it matches. */
  async function ensureImage(vs: RO<VolumeSnapshot>, h: BiHandle): Promise<void> {
    const image = images.get(lhNs, h.backingImage);
    const source = { type: h.sourceType, parameters: h.parameters, ...(h.checksum ? { checksum: h.checksum } : {}) };
    if (image) {
      const diff = sourceMismatch(source, image);
      if (diff) throw new Error(`the snapshot handle's ${diff.field} is "${diff.class}" but backing image "${h.backingImage}" has "${diff.image}"`);
      return;
    }
    await createIgnoringExisting<BackingImage>({
      apiVersion: LONGHORN_API_VERSION,
      kind: 'BackingImage',
      metadata: { name: h.backingImage, namespace: lhNs },
      spec: { sourceType: h.sourceType, sourceParameters: { ...h.parameters }, minNumberOfCopies: 1, ...(h.checksum ? { checksum: h.checksum } : {}) },
    });
    events.event(vs as never, 'Normal', 'BackingImageCreated', `created backing image "${h.backingImage}" from the content's ${h.sourceType} handle`);
  }

  async function updateStatus(vs: RO<VolumeSnapshot>, c: RO<VolumeSnapshotContent>) {
    const handle = c.status?.snapshotHandle || c.spec?.source?.snapshotHandle || '';
    let ready = false;
    let size = 0;
    let created = '';
    const h = parseSnapshotHandle(handle);
    if (h.kind === 'bi') {
      const image = images.get(lhNs, h.backingImage);
      ready = Object.values(image?.status?.diskFileStatusMap ?? {}).some((f) => f?.state === 'ready') && !!image?.status?.virtualSize;
      size = image?.status?.virtualSize ?? 0;
      const volume = h.parameters['volume-name'] ? volumes.get(lhNs, h.parameters['volume-name']) : undefined;
      size = Math.max(size, Number(volume?.spec?.size ?? 0));
      created = image?.metadata.creationTimestamp ?? '';
    } else {
      const s = lhSnapshots.get(lhNs, h.snapshot);
      ready = s?.status?.readyToUse === true;
      size = s?.status?.restoreSize ?? 0;
      created = s?.status?.creationTime ?? '';
    }
    await mutateStatus<VolumeSnapshotContent>(store, 'VolumeSnapshotContent', '', c.metadata.name ?? '', (st) => {
      st.snapshotHandle = handle;
      st.readyToUse = ready;
      if (size) st.restoreSize = size;
      if (created) st.creationTime = Date.parse(created) * 1_000_000;
    });
    await mutateStatus<VolumeSnapshot>(store, 'VolumeSnapshot', vs.metadata.namespace ?? '', vs.metadata.name ?? '', (st) => {
      st.boundVolumeSnapshotContentName = c.metadata.name ?? '';
      st.readyToUse = ready;
      if (size) st.restoreSize = formatQuantity(size);
      if (created) st.creationTime = created;
      st.error = null;
    });
    return ready ? undefined : { requeueAfter: 2000 };
  }

  async function finalize(vs: RO<VolumeSnapshot>) {
    const name = vs.status?.boundVolumeSnapshotContentName || (vs.spec?.source?.persistentVolumeClaimName ? contentNameFor(vs) : '');
    const c = name ? contents.get('', name) : undefined;
    if (c && c.spec?.deletionPolicy === 'Delete') {
      try {
        const h = parseSnapshotHandle(c.status?.snapshotHandle || c.spec?.source?.snapshotHandle || '');
        if (h.kind === 'bi') await store.delete('BackingImage', lhNs, h.backingImage).catch(ignoreNotFound);
        else await store.delete('Snapshot', lhNs, h.snapshot).catch(ignoreNotFound);
      } catch {
        // A content without a usable handle names nothing to delete.
      }
      await store.patch('VolumeSnapshotContent', '', c.metadata.name ?? '', 'merge', { metadata: { finalizers: null } }).catch(ignoreNotFound);
      await store.delete('VolumeSnapshotContent', '', c.metadata.name ?? '').catch(ignoreNotFound);
    } else if (c) {
      // Retained: the content stays, no longer bound.
      await store.patch('VolumeSnapshotContent', '', c.metadata.name ?? '', 'merge', { metadata: { finalizers: null } }).catch(ignoreNotFound);
    }
    const finalizers = (vs.metadata.finalizers ?? []).filter((f) => f !== VOLUME_SNAPSHOT_FINALIZER);
    await store.patch('VolumeSnapshot', vs.metadata.namespace ?? '', vs.metadata.name ?? '', 'merge', { metadata: { finalizers: finalizers.length ? finalizers : null } }).catch(ignoreNotFound);
    return undefined;
  }

  async function setError(vs: RO<VolumeSnapshot>, message: string) {
    if (vs.status?.error?.message === message) return;
    events.event(vs as never, 'Warning', 'SnapshotFailed', message);
    await mutateStatus<VolumeSnapshot>(store, 'VolumeSnapshot', vs.metadata.namespace ?? '', vs.metadata.name ?? '', (st) => {
      st.readyToUse = false;
      st.error = { time: new Date().toISOString(), message };
    });
  }

  async function createIgnoringExisting<T extends { kind: string }>(o: T): Promise<void> {
    try {
      await store.create(o as never);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  const controller = new Controller({ name: 'volume-snapshot', workers: 2, reconcile });
  snapshots.addEventHandler({ onAdd: (o) => controller.enqueueObject(o), onUpdate: (_a, o) => controller.enqueueObject(o) });
  // A snapshot's image or Longhorn snapshot changed: the VolumeSnapshots naming it (few; listed, not indexed).
  const byObject = (name: string | undefined) => {
    for (const vs of snapshots.list()) if (snapshotObjectNameFor(vs) === name || vs.spec?.source?.volumeSnapshotContentName) controller.enqueueObject(vs);
  };
  images.addEventHandler({ onUpdate: (_a, b) => byObject(b.metadata.name) });
  lhSnapshots.addEventHandler({ onUpdate: (_a, b) => byObject(b.metadata.name) });
  return controller;
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}
