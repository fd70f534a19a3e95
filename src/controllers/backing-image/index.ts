// The BackingImage controller. Per image, in order:
//   ensureFinalizer → (deleting? cleanupFiles) → ensureDataSource → syncCopies (spec.diskFileSpecMap) →
//   syncManagers (one BackingImageManager per disk that needs a copy) → recoverIfAllFailed → updateStatus.
// It reads only from informer caches and writes each object at most once per pass. It is enqueued by its own
// image, by the data source and managers that concern it, and by replicas that use it (by index, never a scan).

import type { BackingImage, BackingImageDiskFileStatus } from '../../api/backing-image.js';
import type { BackingImageDataSource } from '../../api/backing-image-data-source.js';
import type { BackingImageFileInfo, BackingImageManager } from '../../api/backing-image-manager.js';
import { LONGHORN_API_VERSION, type DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { backingImageManagerName, LABEL_BACKING_IMAGE, LABEL_DISK_UUID, LABEL_NODE, LABEL_COMPONENT, LONGHORN_FINALIZER } from '../../api/labels.js';
import { settingsFrom } from '../common/settings.js';
import { evictingDisks, findDisk, rankDisks, schedulableDisks } from '../scheduling.js';
import { decideCopies } from './copies.js';
import { computeStatus } from './status.js';

export const BY_BACKING_IMAGE = 'backingImage';
/** Index of replicas by the image they use (value: image name). */
export const REPLICA_BY_IMAGE = 'replicaByBackingImage';

type RO<T> = DeepReadonly<T>;

export interface BackingImageControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  now?: () => Date;
  workers?: number;
}

export function backingImageController(opts: BackingImageControllerOptions): Controller {
  const { store, informers, events } = opts;
  const now = opts.now ?? (() => new Date());
  const settings = settingsFrom(informers);
  const bis = informers.informerFor<BackingImage>('BackingImage');
  const bidss = informers.informerFor<BackingImageDataSource>('BackingImageDataSource');
  const bims = informers.informerFor<BackingImageManager>('BackingImageManager');
  const nodes = informers.informerFor<Node>('Node');
  const replicas = informers.informerFor('Replica');

  bims.addIndex(BY_BACKING_IMAGE, (m) => [
    ...Object.keys(m.spec?.backingImages ?? {}),
    ...Object.keys(m.status?.backingImageFileMap ?? {}),
  ]);
  replicas.addIndex(REPLICA_BY_IMAGE, (r) => {
    const bi = (r.spec as { backingImage?: string } | undefined)?.backingImage;
    return bi ? [bi] : [];
  });

  const reconcile = async (key: string) => {
    const [ns = '', name = ''] = key.includes('/') ? key.split('/') : ['', key];
    const bi = bis.get(ns, name);
    if (!bi) return;
    const bids = bidss.get(ns, name);
    const nodeList = nodes.list();
    const defaultImage = settings.string('default-backing-image-manager-image');
    const uuid = bi.status?.uuid ?? '';

    if (bi.metadata.deletionTimestamp) return cleanupFiles(bi, defaultImage);
    if (!(bi.metadata.finalizers ?? []).includes(LONGHORN_FINALIZER)) {
      await store.patch('BackingImage', ns, name, 'merge', {
        metadata: { finalizers: [...(bi.metadata.finalizers ?? []), LONGHORN_FINALIZER], resourceVersion: bi.metadata.resourceVersion },
      });
      return;
    }
    if (!uuid) return; // defaulted on create; an object without one is not ours to manage yet

    // The files this image has on each disk, from the default-image managers.
    const files = new Map<string, RO<BackingImageFileInfo>>();
    const managers = new Map<string, string>();
    for (const m of bims.byIndex(BY_BACKING_IMAGE, name)) {
      if (m.metadata.namespace !== ns || m.spec?.image !== defaultImage || !m.spec?.diskUUID) continue;
      managers.set(m.spec.diskUUID, m.status?.currentState ?? '');
      const f = m.status?.backingImageFileMap?.[name];
      if (f) files.set(m.spec.diskUUID, f);
    }

    if (!bids) return ensureDataSource(bi, files, nodeList);

    const status = computeStatus({ bi, bids, files, managers, now: now() });
    const fileStatus = status.diskFileStatusMap ?? {};
    const usedDisks = new Set<string>();
    for (const r of replicas.byIndex(REPLICA_BY_IMAGE, name)) {
      const disk = (r.spec as { diskID?: string } | undefined)?.diskID;
      if (disk && r.metadata.namespace === ns) usedDisks.add(disk);
    }
    const nodeOfDisk = new Map<string, string>();
    for (const n of nodeList) for (const st of Object.values(n.status?.diskStatus ?? {})) if (st.diskUUID) nodeOfDisk.set(st.diskUUID, n.metadata.name ?? '');

    const copies = decideCopies({
      bi,
      bids,
      fileStatus,
      usedDisks,
      candidates: schedulableDisks(nodeList),
      nodeOfDisk,
      evictingDisks: evictingDisks(nodeList),
      minCopies: bi.spec?.minNumberOfCopies ?? settings.int('default-min-number-of-backing-image-copies'),
      minimalAvailablePercent: settings.int('storage-minimal-available-percentage'),
      replenishEnabled: settings.int('concurrent-backing-image-replenish-per-node-limit') > 0,
      cleanupWaitMs: settings.int('backing-image-cleanup-wait-interval') * 60_000,
      now: now(),
    });
    for (const a of copies.added) events.event(bi as never, 'Normal', 'CopyAdded', `disk ${a.disk} will hold a copy: ${a.why}`);
    for (const r of copies.removed) events.event(bi as never, 'Normal', 'CopyCleanedUp', `copy on disk ${r.disk} removed: ${r.why}`);

    if (copies.added.length > 0 || copies.removed.length > 0) {
      await store.patch('BackingImage', ns, name, 'merge', {
        metadata: { resourceVersion: bi.metadata.resourceVersion },
        spec: { diskFileSpecMap: nullsFor(bi.spec?.diskFileSpecMap ?? {}, copies.diskFileSpecMap) },
      });
      return; // the write re-enqueues us with the new spec
    }

    await syncManagers(bi, copies.diskFileSpecMap, nodeList, defaultImage);
    const recovery = await recoverIfAllFailed(bi, bids, fileStatus, nodeList);

    status.diskLastRefAtMap = copies.diskLastRefAtMap;
    if (JSON.stringify(status) !== JSON.stringify(bi.status ?? {})) {
      for (const [disk, st] of Object.entries(fileStatus)) {
        const before = bi.status?.diskFileStatusMap?.[disk]?.state;
        if (before !== st.state && st.state) {
          events.event(bi as never, st.state === 'failed' ? 'Warning' : 'Normal', `Copy${pascal(st.state)}`, `copy on disk ${disk} is ${st.state}${st.message ? `: ${st.message}` : ''}`);
        }
      }
      await store.update({ ...structuredClone(bi), status } as BackingImage, { subresource: 'status' });
    }
    const next = [copies.requeueAfterMs, recovery].filter((x): x is number => x !== undefined);
    return next.length > 0 ? { requeueAfter: Math.max(1000, Math.min(...next)) } : undefined;
  };

  /** Creates the data source on the best disk (or, when a ready copy exists already, one marked transferred). */
  async function ensureDataSource(bi: RO<BackingImage>, files: Map<string, RO<BackingImageFileInfo>>, nodeList: readonly RO<Node>[]) {
    const name = bi.metadata.name ?? '';
    const ns = bi.metadata.namespace ?? '';
    const readyDisk = [...files.entries()].find(([, f]) => f.state === 'ready' && f.uuid === bi.status?.uuid)?.[0];
    let target: { nodeName: string; diskUUID: string; diskPath: string } | undefined;
    if (readyDisk) {
      const d = findDisk(nodeList, readyDisk);
      if (d) target = { nodeName: d.node.metadata.name ?? '', diskUUID: readyDisk, diskPath: d.path };
    }
    target ??= rankDisks(schedulableDisks(nodeList), { nodeSelector: bi.spec?.nodeSelector, diskSelector: bi.spec?.diskSelector })[0];
    if (!target) {
      events.event(bi as never, 'Warning', 'NoDiskForDataSource', 'no Ready, schedulable disk matches the node and disk selectors of this backing image; waiting for one');
      return { requeueAfter: 10_000 };
    }
    const bids: BackingImageDataSource = {
      apiVersion: LONGHORN_API_VERSION,
      kind: 'BackingImageDataSource',
      metadata: {
        name,
        namespace: ns,
        labels: { [LABEL_COMPONENT]: 'backing-image-data-source', [LABEL_BACKING_IMAGE]: name, [LABEL_NODE]: target.nodeName, [LABEL_DISK_UUID]: target.diskUUID },
        ownerReferences: [{ apiVersion: LONGHORN_API_VERSION, kind: 'BackingImage', name, uid: bi.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }],
      },
      spec: {
        nodeID: target.nodeName,
        uuid: bi.status?.uuid ?? '',
        diskUUID: target.diskUUID,
        diskPath: target.diskPath,
        checksum: bi.spec?.checksum ?? '',
        sourceType: bi.spec?.sourceType ?? 'download',
        parameters: { ...(bi.spec?.sourceParameters ?? {}) },
        fileTransferred: !!readyDisk,
      },
    };
    try {
      await store.create(bids);
      events.event(bi as never, 'Normal', readyDisk ? 'DataSourceAdopted' : 'DataSourceCreated',
        readyDisk ? `a ready copy exists on disk ${target.diskUUID}: no file is prepared again` : `preparing the first file on node ${target.nodeName}, disk ${target.diskUUID}`);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    return undefined;
  }

  /** One default-image manager per disk in the spec lists this image; managers of other disks drop it. */
  async function syncManagers(bi: RO<BackingImage>, diskMap: Record<string, unknown>, nodeList: readonly RO<Node>[], image: string) {
    const name = bi.metadata.name ?? '';
    const ns = bi.metadata.namespace ?? '';
    const uuid = bi.status?.uuid ?? '';
    for (const disk of Object.keys(diskMap)) {
      const mName = backingImageManagerName(image, disk);
      const existing = bims.get(ns, mName);
      if (existing?.spec?.backingImages?.[name] === uuid) continue;
      if (existing) {
        await store.patch('BackingImageManager', ns, mName, 'merge', { spec: { backingImages: { [name]: uuid } } });
        continue;
      }
      const d = findDisk(nodeList, disk);
      if (!d) continue; // an unknown disk: the status says so; nothing can run there
      const nodeName = d.node.metadata.name ?? '';
      try {
        await store.create<BackingImageManager>({
          apiVersion: LONGHORN_API_VERSION,
          kind: 'BackingImageManager',
          metadata: {
            name: mName,
            namespace: ns,
            labels: { [LABEL_COMPONENT]: 'backing-image-manager', [LABEL_NODE]: nodeName, [LABEL_DISK_UUID]: disk },
          },
          spec: { image, nodeID: nodeName, diskUUID: disk, diskPath: d.path, backingImages: { [name]: uuid } },
        });
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        await store.patch('BackingImageManager', ns, mName, 'merge', { spec: { backingImages: { [name]: uuid } } });
      }
    }
    for (const m of bims.byIndex(BY_BACKING_IMAGE, name)) {
      if (m.metadata.namespace !== ns || m.spec?.image !== image || !(name in (m.spec?.backingImages ?? {}))) continue;
      if (m.spec?.diskUUID && diskMap[m.spec.diskUUID] !== undefined && m.spec.backingImages?.[name] === uuid) continue;
      await dropFromManager(m, name);
    }
  }

  /** Removes an image from a manager; a manager left with no image is deleted (its pod goes with it). */
  async function dropFromManager(m: RO<BackingImageManager>, name: string) {
    const ns = m.metadata.namespace ?? '';
    const mName = m.metadata.name ?? '';
    const rest = Object.keys(m.spec?.backingImages ?? {}).filter((k) => k !== name);
    try {
      if (rest.length === 0) {
        await store.delete('BackingImageManager', ns, mName, { preconditions: { resourceVersion: m.metadata.resourceVersion } });
      } else {
        await store.patch('BackingImageManager', ns, mName, 'merge', { spec: { backingImages: { [name]: null } } });
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /**
   * When every copy has been failed for `backing-image-recovery-wait-interval`, prepare the first file again:
   * a download is fetched again (resuming partial data on the same disk when it can); an upload waits for the
   * user to upload again, and says so. Returns when to look again.
   */
  async function recoverIfAllFailed(bi: RO<BackingImage>, bids: RO<BackingImageDataSource>, fileStatus: Record<string, BackingImageDiskFileStatus>, nodeList: readonly RO<Node>[]) {
    if (!bids.spec?.fileTransferred) return undefined;
    const disks = Object.keys(bi.spec?.diskFileSpecMap ?? {});
    if (disks.length === 0) return undefined;
    const waitMs = settings.int('backing-image-recovery-wait-interval') * 1000;
    let latest = 0;
    for (const d of disks) {
      const st = fileStatus[d];
      if (st?.state !== 'failed') return undefined;
      latest = Math.max(latest, Date.parse(st.lastStateTransitionTime ?? '') || 0);
    }
    const due = latest + waitMs - now().getTime();
    if (due > 0) return due;
    const sourceType = bi.spec?.sourceType ?? 'download';
    if (sourceType !== 'download' && sourceType !== 'upload') {
      events.event(bi as never, 'Warning', 'RecoveryUnsupported', `every copy has failed and a ${sourceType} image cannot be prepared again automatically: delete and re-create it`);
      return undefined;
    }
    const old = bids.spec.diskUUID ?? '';
    const stillGood = schedulableDisks(nodeList).find((c) => c.diskUUID === old);
    const target = stillGood ?? rankDisks(schedulableDisks(nodeList), { nodeSelector: bi.spec?.nodeSelector, diskSelector: bi.spec?.diskSelector })[0];
    if (!target) return 30_000;
    await store.patch('BackingImageDataSource', bids.metadata.namespace ?? '', bids.metadata.name ?? '', 'merge', {
      metadata: { resourceVersion: bids.metadata.resourceVersion },
      spec: { fileTransferred: false, nodeID: target.nodeName, diskUUID: target.diskUUID, diskPath: target.diskPath },
    });
    events.event(bi as never, 'Warning', 'RecoveryStarted', sourceType === 'download'
      ? `every copy failed for ${waitMs / 1000}s: downloading ${bi.spec?.sourceParameters?.['url'] ?? ''} again on disk ${target.diskUUID}`
      : `every copy failed for ${waitMs / 1000}s: this image was uploaded, so it must be uploaded again (stratum bi upload ${bi.metadata.name} FILE)`);
    return undefined;
  }

  /** Deletion: drop the image from every manager (they delete its files), wait until no manager lists it. */
  async function cleanupFiles(bi: RO<BackingImage>, _image: string) {
    const name = bi.metadata.name ?? '';
    const ns = bi.metadata.namespace ?? '';
    const holders = bims.byIndex(BY_BACKING_IMAGE, name).filter((m) => m.metadata.namespace === ns);
    for (const m of holders) if (name in (m.spec?.backingImages ?? {})) await dropFromManager(m, name);
    const stillListed = holders.filter((m) => m.status?.backingImageFileMap?.[name] && m.status?.currentState === 'running');
    const bids = bidss.get(ns, name);
    if (bids && !bids.metadata.deletionTimestamp) await store.delete('BackingImageDataSource', ns, name).catch((e: unknown) => { if (!isNotFound(e)) throw e; });
    if (stillListed.length > 0 || bids) return { requeueAfter: 1000 };
    await store.patch('BackingImage', ns, name, 'merge', {
      metadata: { finalizers: (bi.metadata.finalizers ?? []).filter((f) => f !== LONGHORN_FINALIZER), resourceVersion: bi.metadata.resourceVersion },
    });
    return undefined;
  }

  const controller = new Controller({ name: 'backing-image', workers: opts.workers ?? 4, reconcile });
  const enqueueName = (ns: string | undefined, name: string | undefined) => name && controller.enqueue(`${ns ?? ''}/${name}`);
  bis.addEventHandler({ onAdd: (o) => controller.enqueueObject(o as never), onUpdate: (_a, o) => controller.enqueueObject(o as never), onDelete: () => undefined }, { resyncPeriodMs: 60_000 });
  bidss.addEventHandler({
    onAdd: (o) => enqueueName(o.metadata.namespace, o.metadata.name),
    onUpdate: (_a, o) => enqueueName(o.metadata.namespace, o.metadata.name),
    onDelete: (o) => enqueueName(o.metadata.namespace, o.metadata.name),
  });
  const fromManager = (a: RO<BackingImageManager> | undefined, b: RO<BackingImageManager>) => {
    const names = new Set([...Object.keys(b.spec?.backingImages ?? {}), ...Object.keys(b.status?.backingImageFileMap ?? {}),
      ...Object.keys(a?.spec?.backingImages ?? {}), ...Object.keys(a?.status?.backingImageFileMap ?? {})]);
    for (const n of names) {
      if (a && JSON.stringify(a.status?.backingImageFileMap?.[n]) === JSON.stringify(b.status?.backingImageFileMap?.[n]) && a.spec?.backingImages?.[n] === b.spec?.backingImages?.[n] && a.status?.currentState === b.status?.currentState) continue;
      enqueueName(b.metadata.namespace, n);
    }
  };
  bims.addEventHandler({ onAdd: (o) => fromManager(undefined, o), onUpdate: (a, b) => fromManager(a, b), onDelete: (o) => fromManager(undefined, o) });
  const fromReplica = (o: RO<{ metadata: { namespace?: string }; spec?: unknown }>) => {
    const bi = (o.spec as { backingImage?: string } | undefined)?.backingImage;
    if (bi) enqueueName(o.metadata.namespace, bi);
  };
  replicas.addEventHandler({
    onAdd: fromReplica,
    onUpdate: (a, b) => {
      const sa = a.spec as { backingImage?: string; diskID?: string } | undefined;
      const sb = b.spec as { backingImage?: string; diskID?: string } | undefined;
      if (sa?.backingImage !== sb?.backingImage || sa?.diskID !== sb?.diskID) { fromReplica(a); fromReplica(b); }
    },
    onDelete: fromReplica,
  });
  // A node's disks becoming (un)schedulable can unblock a data source or a copy: only images waiting for a disk
  // care, and they requeue themselves, so node events are not fanned out here. An eviction asked for or called off
  // (rare, and an operator waits on it) moves copies of any image: that one is.
  const evictions = (n: RO<Node>) => JSON.stringify([n.spec?.evictionRequested === true, Object.entries(n.spec?.disks ?? {}).filter(([, d]) => d.evictionRequested).map(([k]) => k)]);
  nodes.addEventHandler({
    onUpdate: (a, b) => {
      if (evictions(a) !== evictions(b)) for (const bi of bis.list()) controller.enqueueObject(bi as never);
    },
  });
  return controller;
}

/** A merge patch turning map `from` into `to`: removed keys become null. */
function nullsFor(from: Record<string, unknown>, to: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...to };
  for (const k of Object.keys(from)) if (!(k in to)) out[k] = null;
  return out;
}

const pascal = (s: string) => s.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
