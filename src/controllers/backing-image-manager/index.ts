// The BackingImageManager controller: one manager pod per disk that holds backing images. Per manager:
//   ensureFinalizer → (deleting? deleteFilesAndPod) → node down? mark unknown → retire if not the default image →
//   ensurePod → monitor (a push stream from the pod keeps status.backingImageFileMap current) → handleFiles
//   (fetch the first file from the data source on this disk, sync missing copies from ready peers, delete files
//   nobody asked for, retry failed copies after a backoff).

import type { BackingImage } from '../../api/backing-image.js';
import type { BackingImageDataSource } from '../../api/backing-image-data-source.js';
import { isInFlightWork, type BackingImageFileInfo, type BackingImageManager } from '../../api/backing-image-manager.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Pod } from '../../api/pod.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { isRemoteBusy } from '../common/http-json.js';
import { Monitors } from '../common/monitor.js';
import { ANNOTATION_SCRUB_REQUESTED, LABEL_BIM, LABEL_COMPONENT, LABEL_DISK_UUID, LABEL_NODE, LONGHORN_FINALIZER, bimPodName } from '../../api/labels.js';
import { buildPod, ownerRef, podEndpoint, podProblem, podReady } from '../../api/pods.js';
import { settingsFrom } from '../common/settings.js';
import { mutateStatus } from '../common/status.js';
import { nodeIsReady } from '../scheduling.js';
import { BimClient, type BimFile } from './client.js';
import { CopyBackoff, NodeSyncLimiter } from './flow.js';

type RO<T> = DeepReadonly<T>;

/** The backing-image manager API range this controller speaks unless the release says otherwise. */
export const BIM_API = { min: 1, max: 1 };

/** Whether a manager speaking `min..current` can be talked to by a controller speaking `api`. */
export function apiCompatible(api: { min: number; max: number }, min: number, current: number): boolean {
  return !(api.min > current || api.max < min);
}

const BY_NODE = 'bimByNode';
const BY_DISK = 'bimByDisk';

export interface BimControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  namespace: string;
  workers?: number;
  now?: () => number;
  /** The backing-image manager API range of the manager's release. */
  api?: { min: number; max: number };
}

export function backingImageManagerController(opts: BimControllerOptions) {
  const { store, informers, events } = opts;
  const now = opts.now ?? Date.now;
  const api = opts.api ?? BIM_API;
  const settings = settingsFrom(informers);
  const bims = informers.informerFor<BackingImageManager>('BackingImageManager');
  const bis = informers.informerFor<BackingImage>('BackingImage');
  const bidss = informers.informerFor<BackingImageDataSource>('BackingImageDataSource');
  const nodes = informers.informerFor<Node>('Node');
  const pods = informers.informerFor<Pod>('Pod');
  const monitors = new Monitors();
  /** Managers whose pod reported its files to this process: before that, their status map is hearsay. */
  const heard = new Set<string>();
  const backoff = new CopyBackoff(() => settings.int('backing-image-copy-retry-backoff-min') * 1000, () => settings.int('backing-image-copy-retry-backoff-max') * 1000, now);
  const limiter = new NodeSyncLimiter(now);
  const startedAt = now();

  bims.addIndex(BY_NODE, (m) => (m.spec?.nodeID ? [m.spec.nodeID] : []));
  bims.addIndex(BY_DISK, (m) => (m.spec?.diskUUID ? [m.spec.diskUUID] : []));

  const client = (m: RO<BackingImageManager>) => {
    const ep = podEndpoint(pods.get(m.metadata.namespace ?? '', bimPodName(m.metadata.name ?? '')));
    return ep ? new BimClient(ep) : undefined;
  };

  /** Replaces the file map from the pod's own list; called by the monitor on every change. */
  async function refreshFiles(m: RO<BackingImageManager>, c: BimClient, signal: AbortSignal) {
    const files = await c.list(signal);
    // Heard before the status says so: a store may show the write to this controller's watch before it answers it,
    // and the reconcile that triggers must not take the pod's own report for a predecessor's.
    heard.add(`${m.metadata.namespace ?? ''}/${m.metadata.name ?? ''}`);
    const map: Record<string, BackingImageFileInfo> = {};
    for (const f of files) {
      // A directory the manager found but nobody asked for is reported under its directory key; skip it here.
      if (!(f.name in (m.spec?.backingImages ?? {})) && map[f.name]) continue;
      map[f.name] = toFileInfo(f);
    }
    await mutateStatus<BackingImageManager>(store, 'BackingImageManager', m.metadata.namespace ?? '', m.metadata.name ?? '', (st) => {
      st.backingImageFileMap = map;
      st.currentState = 'running';
    });
  }

  const reconcile = async (key: string) => {
    const [ns = '', name = ''] = key.split('/');
    const m = bims.get(ns, name);
    if (!m) {
      monitors.stop(key);
      heard.delete(key);
      return;
    }
    const podName = bimPodName(name);
    const pod = pods.get(ns, podName);
    if (m.metadata.deletionTimestamp) return finalize(m, pod);
    if (!(m.metadata.finalizers ?? []).includes(LONGHORN_FINALIZER)) {
      await store.patch('BackingImageManager', ns, name, 'merge', { metadata: { finalizers: [...(m.metadata.finalizers ?? []), LONGHORN_FINALIZER], resourceVersion: m.metadata.resourceVersion } });
      return;
    }
    const node = nodes.get('', m.spec?.nodeID ?? '') ?? nodes.get(ns, m.spec?.nodeID ?? '');
    const defaultImage = settings.string('default-backing-image-manager-image');
    const isDefault = m.spec?.image === defaultImage;

    if (!node || !nodeIsReady(node)) {
      monitors.stop(key);
      await markUnknown(m, `node ${m.spec?.nodeID ?? '?'} is down or not Ready: copies on it are unknown until it is back`);
      return;
    }
    if (!isDefault) return retire(m, pod);

    // A manager of an older image still on this disk keeps the directory until it is gone (see retire).
    const older = bims.byIndex(BY_DISK, m.spec?.diskUUID ?? '').filter((o) => o.metadata.name !== name && o.metadata.namespace === ns);
    if (!pod) {
      if (older.length > 0) {
        await setState(m, 'stopped');
        return { requeueAfter: 2000 };
      }
      await createPod(m, defaultImage);
      await markUnknown(m, `backing image manager pod ${podName} is starting`, 'starting');
      return;
    }
    const ep = podEndpoint(pod);
    if (!podReady(pod) || !ep || pod.metadata.deletionTimestamp) {
      monitors.stop(key);
      const wasRunning = m.status?.currentState === 'running';
      await markUnknown(m, podProblem(pod, podName), wasRunning || pod.status?.phase === 'Failed' ? 'error' : 'starting');
      if (pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded') {
        await store.delete('Pod', ns, podName).catch(ignoreNotFound);
      }
      return;
    }
    // A manager process that just started (an upgrade, a crash) has not heard from the pod: the copies it lists were
    // reported to a predecessor. They are unknown until the pod reports them again (as Longhorn shows them while
    // longhorn-manager restarts); the monitor's first refresh makes them ready, nothing is re-read or re-fetched.
    if (!heard.has(key) && m.status?.currentState === 'running') {
      await markUnknown(m, `the manager restarted: copies on this disk are unknown until pod ${podName} reports them`);
      return;
    }
    const c = new BimClient(ep);
    if (!m.status?.apiVersion) {
      const v = await c.version();
      await mutateStatus<BackingImageManager>(store, 'BackingImageManager', ns, name, (st) => {
        st.apiVersion = v.apiVersion;
        st.apiMinVersion = v.apiMinVersion;
        st.ip = pod.status?.podIP ?? '';
        st.storageIP = pod.status?.podIP ?? '';
      });
      return;
    }
    monitors.ensure(key, c.watchUrl(), {
      refresh: (signal) => refreshFiles(bims.get(ns, name) ?? m, c, signal),
      down: () => controller.enqueue(key),
    });
    if (!apiCompatible(api, m.status.apiMinVersion ?? 0, m.status.apiVersion)) {
      await setState(m, 'error');
      events.event(m as never, 'Warning', 'Incompatible', `manager API ${m.status.apiMinVersion}..${m.status.apiVersion} is not compatible with ${api.min}..${api.max}`);
      return;
    }
    return handleFiles(m, c);
  };

  async function handleFiles(m: RO<BackingImageManager>, c: BimClient) {
    const ns = m.metadata.namespace ?? '';
    const live = await c.list();
    const wanted = m.spec?.backingImages ?? {};
    let requeue: number | undefined;
    const later = (ms: number) => (requeue = requeue === undefined ? ms : Math.min(requeue, ms));

    for (const f of live) {
      if (wanted[f.name] === f.uuid) continue;
      // A directory the manager could not attribute (no uuid) is left for a human: it is not ours to guess at.
      if (!f.uuid) continue;
      await c.deleteFile(f.name, f.uuid);
      events.event(m as never, 'Normal', 'FileDeleted', `deleted ${f.name}-${f.uuid}: no backing image on this disk needs it`);
    }
    for (const [biName, uuid] of Object.entries(wanted)) {
      const bi = bis.get(ns, biName);
      if (!bi || bi.status?.uuid !== uuid) continue;
      const f = live.find((x) => x.name === biName && x.uuid === uuid);
      const copyKey = `${m.metadata.name}|${biName}`;
      if (f?.state === 'ready') {
        backoff.reset(copyKey);
        const due = await scrubIfDue(m, c, live, f, bi);
        if (due !== undefined) later(due);
        continue;
      }
      if (f?.state === 'failed') {
        // The last failed copy is kept: the backing image controller's recovery needs to see it.
        const othersHealthy = Object.entries(bi.status?.diskFileStatusMap ?? {}).some(([d, s]) => d !== m.spec?.diskUUID && s.state !== 'failed');
        if (!othersHealthy) continue;
        // The first sight of a failure starts the backoff; the copy is asked for again when it ends. The manager
        // keeps what it received and verified (a set-aside or mismatching file it starts over): a copy that failed
        // at 90% does not start from nothing.
        if (!backoff.has(copyKey)) backoff.next(copyKey);
        const wait = backoff.remaining(copyKey);
        if (wait > 0) {
          later(wait);
          continue;
        }
      }
      // A sync or fetch a restart of the manager interrupted: asked again at once, it resumes on the data kept.
      const resume = (f?.state === 'pending' && f.awaitingRequest === true) || f?.state === 'failed';
      if (f && !resume) continue; // in progress
      const bids = bidss.get(ns, biName);
      if (bids && !bids.spec?.fileTransferred) {
        if (bids.spec?.diskUUID === m.spec?.diskUUID && bids.status?.currentState === 'ready-for-transfer') {
          const rp = bids.status.runningParameters ?? {};
          await c.fetchFile(biName, {
            uuid,
            sourcePath: rp['filePath'] ?? '',
            size: bids.status.size ?? 0,
            ...(bi.status?.checksum ? { expectedChecksum: bi.status.checksum } : {}),
            ...(bids.status.checksum ? { sha512: bids.status.checksum } : {}),
            ...(rp['identity'] ? { identity: JSON.parse(rp['identity']) as unknown } : {}),
          });
          events.event(m as never, 'Normal', 'FetchStarted', `taking over the first file of ${biName} from its data source`);
        }
        continue;
      }
      const wait = resume ? 0 : backoff.remaining(copyKey);
      if (wait > 0) {
        later(wait);
        continue;
      }
      const peers = readyPeers(m, biName, uuid);
      if (peers.length === 0 || !bi.status?.checksum || !bi.status.size) continue;
      const nodeName = m.spec?.nodeID ?? '';
      const limit = settings.int('concurrent-backing-image-replenish-per-node-limit');
      if (!limiter.admit(nodeName, copyKey, busyOnNode(nodeName), limit)) {
        later(3000);
        continue;
      }
      // Rotate the peer list by copy so that concurrent syncs spread over the ready copies.
      const shift = hash(copyKey) % peers.length;
      const sources = [...peers.slice(shift), ...peers.slice(0, shift)];
      const anchor = bi.status.chunkManifestDigest;
      await c.syncFile(biName, { uuid, size: bi.status.size, expectedChecksum: bi.status.checksum, sources, ...(anchor ? { expectedManifestDigest: anchor } : {}) });
      backoff.next(copyKey);
      const what = !f ? `syncing ${biName}` : f.state === 'failed' ? `retrying the failed copy of ${biName}` : `resuming the sync of ${biName} (${f.processedSize} of ${f.size} bytes kept)`;
      events.event(m as never, 'Normal', 'SyncStarted', `${what} from ${sources.length} ready cop${sources.length > 1 ? 'ies' : 'y'}`);
    }
    return requeue === undefined ? undefined : { requeueAfter: requeue };
  }

  /**
   * Scrubs a ready copy whose bytes were last verified longer ago than `backing-image-scrub-interval` (the manager
   * reads it again and repairs changed chunks from the other ready copies, bim/scrub.ts). One scrub per disk, none
   * while the disk receives a copy, and none while other disks hold the image but none is known ready (up to one more
   * interval). Returns when to look again (ms), or undefined when scrubbing is off.
   */
  async function scrubIfDue(m: RO<BackingImageManager>, c: BimClient, live: BimFile[], f: BimFile, bi: RO<BackingImage>): Promise<number | undefined> {
    const uuid = bi.status?.uuid ?? '';
    const hours = settings.int('backing-image-scrub-interval');
    const verified = Date.parse(f.verifiedAt ?? '');
    // A manager that reports no verification time (an older release) has no scrub either.
    if (Number.isNaN(verified)) return undefined;
    // A scrub asked for: the copy has not answered this request yet (its manager records the token it answered, so no
    // two machines' clocks are compared).
    const request = bi.metadata.annotations?.[ANNOTATION_SCRUB_REQUESTED];
    const asked = request !== undefined && f.scrubRequest !== request;
    if (hours <= 0 && !asked) return undefined;
    const wait = asked ? 0 : verified + hours * 3_600_000 - now();
    if (wait > 0) return Math.min(wait, 3_600_000);
    if (live.some((o) => o.scrubbedSize !== undefined || o.state === 'starting' || o.state === 'in-progress')) return 60_000;
    const sources = readyPeers(m, f.name, uuid);
    // Other disks hold the image but none is known ready (managers just restarted, a node down): a damaged copy could
    // not be repaired, only set aside, so wait for one: up to one more interval, or a minute of this process's life
    // for a scrub asked for now.
    const holders = bims.list().filter((o) => o.metadata.name !== m.metadata.name && o.spec?.backingImages?.[f.name] === uuid).length;
    const waited = asked ? now() - startedAt < 60_000 : -wait < hours * 3_600_000;
    if (sources.length === 0 && holders > 0 && waited) return 5_000;
    const maxBytesPerSecond = settings.int('backing-image-scrub-bandwidth') * 1024 * 1024;
    try {
      await c.scrubFile(f.name, { uuid, sources, maxBytesPerSecond, ...(request === undefined ? {} : { request }) });
    } catch (err) {
      if (isRemoteBusy(err)) return 60_000;
      throw err;
    }
    events.event(m as never, 'Normal', 'ScrubStarted', `${asked ? 'asked for: ' : ''}reading ${f.name} again to check it against its SHA-512 (last verified ${f.verifiedAt}); ${sources.length > 0 ? `changed chunks are repaired from ${sources.length} other cop${sources.length > 1 ? 'ies' : 'y'}` : 'no other ready copy to repair from'}`);
    return 60_000;
  }

  /** Endpoints of running default managers holding a ready copy (uuid matching). */
  function readyPeers(self: RO<BackingImageManager>, biName: string, uuid: string): string[] {
    const out: string[] = [];
    for (const o of bims.list()) {
      if (o.metadata.name === self.metadata.name || o.spec?.image !== self.spec?.image) continue;
      const f = o.status?.backingImageFileMap?.[biName];
      if (o.status?.currentState !== 'running' || f?.state !== 'ready' || f.uuid !== uuid) continue;
      const c = client(o);
      if (c) out.push(c.base);
    }
    return out;
  }

  /** Syncs in flight on a node, from the managers' reported files. */
  function busyOnNode(nodeName: string): Set<string> {
    const busy = new Set<string>();
    for (const o of bims.byIndex(BY_NODE, nodeName)) {
      for (const [bi, f] of Object.entries(o.status?.backingImageFileMap ?? {})) {
        if (f.state === 'pending' || f.state === 'starting' || f.state === 'in-progress') busy.add(`${o.metadata.name}|${bi}`);
      }
    }
    return busy;
  }

  async function createPod(m: RO<BackingImageManager>, image: string) {
    const ns = m.metadata.namespace ?? '';
    const name = m.metadata.name ?? '';
    try {
      await store.create(buildPod({
        name: bimPodName(name),
        namespace: ns,
        nodeName: m.spec?.nodeID ?? '',
        image,
        args: ['bim', '--disk', m.spec?.diskPath ?? '', '--disk-uuid', m.spec?.diskUUID ?? '', '--host', '$(POD_IP)', '--port', '$(PORT)'],
        labels: { [LABEL_COMPONENT]: 'backing-image-manager', [LABEL_BIM]: name, [LABEL_NODE]: m.spec?.nodeID ?? '', [LABEL_DISK_UUID]: m.spec?.diskUUID ?? '' },
        owner: ownerRef('BackingImageManager', name, m.metadata.uid ?? ''),
        readinessPath: '/v1/version',
      }));
      events.event(m as never, 'Normal', 'PodCreated', `created manager pod ${bimPodName(name)} on node ${m.spec?.nodeID}`);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  /** A manager of a non-default image: incompatible ones go at once, compatible ones once their downloads are done. */
  async function retire(m: RO<BackingImageManager>, pod: RO<Pod> | undefined) {
    const ns = m.metadata.namespace ?? '';
    const name = m.metadata.name ?? '';
    const compatible = !m.status?.apiVersion || apiCompatible(api, m.status.apiMinVersion ?? 0, m.status.apiVersion);
    // In-flight work is a copy prepared from a data source. Syncs between disks are not: every disk's old manager goes,
    // so a sync sent or received by one is cut, and the new manager fails the half-received copy and syncs it again.
    const busy = Object.values(m.status?.backingImageFileMap ?? {}).some(isInFlightWork);
    const ep = podEndpoint(pod);
    if (compatible && busy && podReady(pod) && ep) {
      // Keep hearing from it (this process may have just started): its map tells when the work is done.
      const c = new BimClient(ep);
      const key = `${ns}/${name}`;
      monitors.ensure(key, c.watchUrl(), {
        refresh: (signal) => refreshFiles(bims.get(ns, name) ?? m, c, signal),
        down: () => controller.enqueue(key),
      });
      return { requeueAfter: 2000 };
    }
    monitors.stop(`${ns}/${name}`);
    events.event(m as never, 'Normal', 'Retired', compatible ? 'not the default image and no download in flight: removed; the new manager re-adopts its files (a half-synced copy is failed and synced again)' : 'not the default image and API-incompatible: removed at once');
    await store.delete('BackingImageManager', ns, name).catch(ignoreNotFound);
    return undefined;
  }

  /** Deletion: a default-image manager deletes its files first (its disk needs none); then the pod goes. */
  async function finalize(m: RO<BackingImageManager>, pod: RO<Pod> | undefined) {
    const ns = m.metadata.namespace ?? '';
    const name = m.metadata.name ?? '';
    monitors.stop(`${ns}/${name}`);
    const isDefault = m.spec?.image === settings.string('default-backing-image-manager-image');
    const ep = podEndpoint(pod);
    if (isDefault && ep && podReady(pod)) {
      const c = new BimClient(ep);
      for (const f of await c.list()) await c.deleteFile(f.name, f.uuid);
    }
    if (pod) {
      if (!pod.metadata.deletionTimestamp) await store.delete('Pod', ns, bimPodName(name)).catch(ignoreNotFound);
      return { requeueAfter: 1000 };
    }
    await store.patch('BackingImageManager', ns, name, 'merge', {
      metadata: { finalizers: (m.metadata.finalizers ?? []).filter((f) => f !== LONGHORN_FINALIZER), resourceVersion: m.metadata.resourceVersion },
    }).catch(ignoreNotFound);
    return undefined;
  }

  async function markUnknown(m: RO<BackingImageManager>, message: string, state: 'unknown' | 'starting' | 'error' = 'unknown') {
    await mutateStatus<BackingImageManager>(store, 'BackingImageManager', m.metadata.namespace ?? '', m.metadata.name ?? '', (st) => {
      st.currentState = state;
      const map = { ...(st.backingImageFileMap ?? {}) };
      for (const [biName, uuid] of Object.entries(m.spec?.backingImages ?? {})) {
        const f = map[biName];
        if (f?.state === 'failed') continue;
        // A copy this manager never reported is not unknown but not started yet: counting it as unknown would
        // make replenishing add yet another copy while a new manager pod starts.
        const state = f && f.state !== 'pending' ? 'unknown' : 'pending';
        map[biName] = { ...(f ?? { name: biName, uuid, progress: 0 }), state, message };
      }
      st.backingImageFileMap = map;
      st.apiVersion = 0;
      st.apiMinVersion = 0;
    });
  }

  async function setState(m: RO<BackingImageManager>, state: 'stopped' | 'error') {
    await mutateStatus<BackingImageManager>(store, 'BackingImageManager', m.metadata.namespace ?? '', m.metadata.name ?? '', (st) => {
      st.currentState = state;
    });
  }

  const controller = new Controller({ name: 'backing-image-manager', workers: opts.workers ?? 4, reconcile });
  bims.addEventHandler({ onAdd: (o) => controller.enqueueObject(o as never), onUpdate: (_a, o) => controller.enqueueObject(o as never), onDelete: (o) => controller.enqueueObject(o as never) }, { resyncPeriodMs: 30_000 });
  const fromPod = (p: RO<Pod>) => {
    const bim = p.metadata.labels?.[LABEL_BIM];
    if (bim) controller.enqueue(`${p.metadata.namespace ?? ''}/${bim}`);
  };
  pods.addEventHandler({ onAdd: fromPod, onUpdate: (_a, b) => fromPod(b), onDelete: fromPod });
  nodes.addEventHandler({
    onUpdate: (a, b) => {
      if (nodeIsReady(a) === nodeIsReady(b)) return;
      for (const m of bims.byIndex(BY_NODE, b.metadata.name ?? '')) controller.enqueueObject(m as never);
    },
  });
  // A data source becoming ready-for-transfer concerns the managers of its disk only.
  bidss.addEventHandler({
    onUpdate: (a, b) => {
      if (a.status?.currentState === b.status?.currentState && a.spec?.fileTransferred === b.spec?.fileTransferred) return;
      for (const m of bims.byIndex(BY_DISK, b.spec?.diskUUID ?? '')) controller.enqueueObject(m as never);
    },
  });
  // A scrub asked for on an image concerns the managers holding it.
  bis.addEventHandler({
    onUpdate: (a, b) => {
      if (a.metadata.annotations?.[ANNOTATION_SCRUB_REQUESTED] === b.metadata.annotations?.[ANNOTATION_SCRUB_REQUESTED]) return;
      for (const o of bims.list()) if (b.metadata.name && b.metadata.name in (o.spec?.backingImages ?? {})) controller.enqueueObject(o as never);
    },
  });
  // A copy becoming ready somewhere can unblock syncs of the same image elsewhere: enqueue the managers that list it.
  bims.addEventHandler({
    onUpdate: (a, b) => {
      for (const [bi, f] of Object.entries(b.status?.backingImageFileMap ?? {})) {
        if (f.state !== 'ready' || a.status?.backingImageFileMap?.[bi]?.state === 'ready') continue;
        for (const o of bims.list()) if (o.metadata.name !== b.metadata.name && bi in (o.spec?.backingImages ?? {})) controller.enqueueObject(o as never);
      }
    },
  });
  return { controller, stop: () => monitors.stopAll() };
}

function toFileInfo(f: BimFile): BackingImageFileInfo {
  return {
    name: f.name,
    uuid: f.uuid,
    size: f.size,
    virtualSize: f.virtualSize,
    realSize: f.realSize,
    state: f.state,
    currentChecksum: f.currentChecksum,
    message: f.message,
    progress: f.progress,
    sendingReference: f.senders?.length ?? 0,
    senderManagerAddress: f.sources?.[0] ?? '',
    ...(f.verifiedAt ? { verifiedAt: f.verifiedAt } : {}),
    ...(f.scrubRequest ? { scrubRequest: f.scrubRequest } : {}),
  };
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}
