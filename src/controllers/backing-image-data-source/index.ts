// The BackingImageDataSource controller: the one-shot process that prepares a backing image's first file.
// Per data source:
//   transferred? → delete the pod, state ready → node down? unknown → ensurePod → monitor (push stream of the
//   pod's progress into status) → handOver (once the disk's manager reports the file ready, mark it transferred)
//   → failed? remove the pod (its work files are gone) and retry after backing-image-recovery-wait-interval.
// An export waits for its volume's engine; a detached volume is attached without a frontend for it (a
// maintenance-attach annotation, src/api/volume.ts), released once the export is transferred, failed or deleted.

import { dataPlaneHeaders } from '../common/http-json.js';
import { SourceParam, type BackingImage } from '../../api/backing-image.js';
import type { Engine } from '../../api/engine.js';
import type { Replica } from '../../api/replica.js';
import { MAINTENANCE_ATTACH_PREFIX, type Volume } from '../../api/volume.js';
import { ExportParam } from '../../api/backing-image-data-source.js';
import type { BackingImageDataSource, BackingImageDataSourceStatus } from '../../api/backing-image-data-source.js';
import type { BackingImageManager } from '../../api/backing-image-manager.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Pod } from '../../api/pod.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { Monitors } from '../common/monitor.js';
import { LABEL_BACKING_IMAGE, LABEL_BIDS, LABEL_COMPONENT, LABEL_DISK_UUID, LABEL_NODE, dataSourcePodName } from '../../api/labels.js';
import { buildPod, ownerRef, podEndpoint, podProblem, podReady } from '../../api/pods.js';
import { settingsFrom } from '../common/settings.js';
import type { FileInfo } from '../../datasource/service.js';
import { mutateStatus } from '../common/status.js';
import { nodeIsReady } from '../scheduling.js';

type RO<T> = DeepReadonly<T>;

/** What the data source's `GET /v1/file` answers (one contract for both sides). */
type SourceInfo = FileInfo;

export interface DataSourceControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  workers?: number;
  now?: () => number;
}

export function dataSourceController(opts: DataSourceControllerOptions) {
  const { store, informers, events } = opts;
  const now = opts.now ?? Date.now;
  const settings = settingsFrom(informers);
  const bidss = informers.informerFor<BackingImageDataSource>('BackingImageDataSource');
  const bis = informers.informerFor<BackingImage>('BackingImage');
  const bims = informers.informerFor<BackingImageManager>('BackingImageManager');
  const pods = informers.informerFor<Pod>('Pod');
  const nodes = informers.informerFor<Node>('Node');
  const engines = informers.informerFor<Engine>('Engine');
  const volumes = informers.informerFor<Volume>('Volume');
  const replicas = informers.informerFor<Replica>('Replica');
  const maintenanceKey = (ds: RO<BackingImageDataSource>) => `${MAINTENANCE_ATTACH_PREFIX}export-${ds.metadata.name ?? ''}`;

  /** An export is over (transferred, failed, deleted): a volume attached for it may detach again. */
  async function releaseVolume(ns: string, name: string, ds: RO<BackingImageDataSource> | undefined) {
    const volume = ds?.spec?.sourceType === 'export-from-volume' ? ds.spec.parameters?.[SourceParam.volumeName] : undefined;
    const key = `${MAINTENANCE_ATTACH_PREFIX}export-${name}`;
    for (const v of volume ? [volumes.get(ns, volume)] : volumes.list().filter((x) => x.metadata.namespace === ns)) {
      if (v?.metadata.annotations?.[key] === undefined) continue;
      await store.patch('Volume', ns, v.metadata.name ?? '', 'merge', { metadata: { annotations: { [key]: null } } }).catch(ignoreNotFound);
    }
  }
  const monitors = new Monitors();
  /** When each failed data source may be retried. */
  const retryAt = new Map<string, number>();

  const writeStatus = (ns: string, name: string, f: (st: BackingImageDataSourceStatus) => void) =>
    mutateStatus<BackingImageDataSource>(store, 'BackingImageDataSource', ns, name, f);

  async function refresh(ns: string, name: string, base: string, signal: AbortSignal) {
    const res = await fetch(`${base}/v1/file`, { headers: dataPlaneHeaders(), signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) });
    if (!res.ok) throw new Error(`data source ${name}: HTTP ${res.status}`);
    const info = (await res.json()) as SourceInfo;
    await writeStatus(ns, name, (st) => {
      st.currentState = info.state as NonNullable<BackingImageDataSourceStatus['currentState']>;
      st.progress = info.progress;
      if (info.size) st.size = info.size;
      st.checksum = info.currentChecksum;
      st.message = info.message;
      st.runningParameters = {
        ...(info.filePath ? { filePath: info.filePath } : {}),
        ...(info.identity ? { identity: JSON.stringify(info.identity) } : {}),
        ...(info.chunkManifestDigest ? { chunkManifestDigest: info.chunkManifestDigest } : {}),
        ...(info.virtualSize ? { virtualSize: String(info.virtualSize) } : {}),
        ...(info.format ? { format: info.format } : {}),
        ...(info.rate ? { rate: String(Math.round(info.rate)) } : {}),
        ...(info.etaSeconds ? { etaSeconds: String(Math.round(info.etaSeconds)) } : {}),
      };
    });
  }

  const reconcile = async (key: string) => {
    const [ns = '', name = ''] = key.split('/');
    const ds = bidss.get(ns, name);
    const podName = dataSourcePodName(name);
    const pod = pods.get(ns, podName);
    if (!ds || ds.metadata.deletionTimestamp) {
      monitors.stop(key);
      await releaseVolume(ns, name, ds);
      if (pod && !pod.metadata.deletionTimestamp) await store.delete('Pod', ns, podName).catch(ignoreNotFound);
      return;
    }
    if (ds.spec?.fileTransferred) {
      monitors.stop(key);
      await releaseVolume(ns, name, ds);
      if (pod && !pod.metadata.deletionTimestamp) {
        await store.delete('Pod', ns, podName).catch(ignoreNotFound);
        events.event(ds as never, 'Normal', 'PodRemoved', 'the first file was handed over to the backing image manager; data source pod removed');
      }
      await writeStatus(ns, name, (st) => {
        st.currentState = 'ready';
        st.progress = 100;
        st.ip = '';
        st.storageIP = '';
      });
      return;
    }
    const node = nodes.get('', ds.spec?.nodeID ?? '') ?? nodes.get(ns, ds.spec?.nodeID ?? '');
    if (!node || !nodeIsReady(node)) {
      monitors.stop(key);
      await writeStatus(ns, name, (st) => {
        st.currentState = 'unknown';
        st.message = `node ${ds.spec?.nodeID ?? '?'} is down or not Ready`;
      });
      return;
    }
    // Once the disk's manager reports the file ready, the data source's job is done.
    if (managerHasReadyFile(ds)) {
      const ep = podEndpoint(pod);
      if (ep) await fetch(`${ep}/v1/transfer`, { method: 'POST', headers: dataPlaneHeaders(), signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
      await store.patch('BackingImageDataSource', ns, name, 'merge', { spec: { fileTransferred: true } });
      return;
    }
    if (ds.status?.currentState === 'failed') {
      monitors.stop(key);
      await releaseVolume(ns, name, ds);
      if (pod && !pod.metadata.deletionTimestamp) {
        await store.delete('Pod', ns, podName).catch(ignoreNotFound);
        events.event(ds as never, 'Warning', 'Failed', `preparing the first file failed: ${ds.status.message ?? ''}`);
        // Retries back off exponentially from backing-image-recovery-wait-interval up to an hour: a wrong
        // checksum fails the same way every time, a flaky server may not.
        const base = settings.int('backing-image-recovery-wait-interval') * 1000;
        retryAt.set(key, now() + Math.min(3_600_000, base * 2 ** Math.min(10, ds.status.retryCount ?? 0)));
        return;
      }
      const at = retryAt.get(key) ?? 0;
      if (ds.spec?.sourceType !== 'download' || pod) return;
      if (at > now()) return { requeueAfter: at - now() };
      retryAt.delete(key);
      await writeStatus(ns, name, (st) => {
        st.currentState = 'pending';
        st.retryCount = (st.retryCount ?? 0) + 1;
        st.message = `retrying after a failure (attempt ${(st.retryCount ?? 0)})`;
      });
      return;
    }
    if (!pod) return createPod(ds);
    const ep = podEndpoint(pod);
    if (!podReady(pod) || !ep) {
      monitors.stop(key);
      const message = podProblem(pod, podName);
      await writeStatus(ns, name, (st) => {
        if (st.currentState !== 'failed') st.currentState = st.currentState === 'in-progress' ? 'unknown' : 'starting';
        st.message = message;
      });
      if (pod.status?.phase === 'Failed') await store.delete('Pod', ns, podName).catch(ignoreNotFound);
      return;
    }
    await writeStatus(ns, name, (st) => {
      st.ip = pod.status?.podIP ?? '';
      st.storageIP = pod.status?.podIP ?? '';
    });
    monitors.ensure(key, `${ep}/v1/watch`, { refresh: (signal) => refresh(ns, name, ep, signal), down: () => controller.enqueue(key) });
    return undefined;
  };

  function managerHasReadyFile(ds: RO<BackingImageDataSource>): boolean {
    const name = ds.metadata.name ?? '';
    for (const m of bims.list()) {
      if (m.spec?.diskUUID !== ds.spec?.diskUUID || m.metadata.namespace !== ds.metadata.namespace) continue;
      const f = m.status?.backingImageFileMap?.[name];
      if (f?.state === 'ready' && f.uuid === ds.spec?.uuid) return true;
    }
    return false;
  }

  /**
   * An export reads the volume through its running engine (which takes the snapshot) and one RW replica (which
   * serves it): their addresses, or why there are none yet.
   */
  async function exportSource(ds: RO<BackingImageDataSource>): Promise<Record<string, string> | { waiting: string }> {
    const volume = ds.spec?.parameters?.[SourceParam.volumeName] ?? '';
    const ns = ds.metadata.namespace ?? '';
    const e = engines.list().find((x) => x.spec?.volumeName === volume && x.metadata.namespace === ns && x.status?.currentState === 'running' && x.status.ip && x.status.port);
    if (!e) {
      const v = volumes.get(ns, volume);
      if (!v) return { waiting: `volume ${volume} does not exist` };
      if (v.spec?.nodeID || v.status?.state !== 'detached') return { waiting: `volume ${volume} is ${v.status?.state || 'not ready'}; waiting for its engine` };
      // Detached: attached without a frontend for the export, on the node of a healthy replica, until it is done.
      const node = replicas.list().find((r) => r.spec?.volumeName === volume && r.metadata.namespace === ns && !r.spec.failedAt && r.spec.healthyAt && r.spec.nodeID)?.spec?.nodeID;
      if (!node) return { waiting: `volume ${volume} is detached and has no healthy replica to attach it with` };
      const key = maintenanceKey(ds);
      if (v.metadata.annotations?.[key] !== node) await store.patch('Volume', ns, volume, 'merge', { metadata: { annotations: { [key]: node } } });
      return { waiting: `volume ${volume} is being attached without a frontend on node ${node} for the export` };
    }
    const modes = e.status?.replicaModeMap ?? {};
    const addrs = e.status?.currentReplicaAddressMap ?? {};
    const replica = Object.keys(modes).find((r) => modes[r] === 'RW' && addrs[r] && !addrs[r]!.startsWith('unix:'));
    if (!replica) return { waiting: `volume ${volume} has no RW replica reachable over the network to read from` };
    const host = e.status!.ip!.includes(':') ? `[${e.status!.ip}]` : e.status!.ip;
    return {
      [ExportParam.engineUrl]: `http://${host}:${e.status!.port}/v1/engines/${encodeURIComponent(e.metadata.name ?? '')}`,
      [ExportParam.replicaAddress]: addrs[replica]!,
      [ExportParam.replicaName]: replica,
    };
  }

  async function createPod(ds: RO<BackingImageDataSource>) {
    const ns = ds.metadata.namespace ?? '';
    const name = ds.metadata.name ?? '';
    let extra: Record<string, string> = {};
    if (ds.spec?.sourceType === 'export-from-volume') {
      const src = await exportSource(ds);
      if ('waiting' in src) {
        await writeStatus(ns, name, (st) => {
          st.currentState = 'pending';
          st.message = src.waiting;
        });
        return { requeueAfter: 3000 };
      }
      extra = src;
    }
    const params = Object.entries({ ...(ds.spec?.parameters ?? {}), ...extra }).flatMap(([k, v]) => ['--parameters', `${k}=${v}`]);
    const bi = bis.get(ns, name);
    const checksum = ds.spec?.checksum || bi?.spec?.checksum;
    try {
      await store.create(buildPod({
        name: dataSourcePodName(name),
        namespace: ns,
        nodeName: ds.spec?.nodeID ?? '',
        image: settings.string('default-backing-image-manager-image'),
        args: ['data-source', '--host', '$(POD_IP)', '--port', '$(PORT)', '--disk', ds.spec?.diskPath ?? '', '--name', name, '--uuid', ds.spec?.uuid ?? '', '--source-type', ds.spec?.sourceType ?? 'download', ...params, ...(checksum ? ['--checksum', checksum] : []), ...(settings.bool('allow-private-download-urls') ? ['--allow-private-urls'] : [])],
        labels: { [LABEL_COMPONENT]: 'backing-image-data-source', [LABEL_BIDS]: name, [LABEL_BACKING_IMAGE]: name, [LABEL_NODE]: ds.spec?.nodeID ?? '', [LABEL_DISK_UUID]: ds.spec?.diskUUID ?? '' },
        owner: ownerRef('BackingImageDataSource', name, ds.metadata.uid ?? ''),
        readinessPath: '/v1/file',
      }));
      events.event(ds as never, 'Normal', 'PodCreated', `created data source pod ${dataSourcePodName(name)} on node ${ds.spec?.nodeID}`);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    return undefined;
  }

  const controller = new Controller({ name: 'backing-image-data-source', workers: opts.workers ?? 2, reconcile });
  bidss.addEventHandler({ onAdd: (o) => controller.enqueueObject(o as never), onUpdate: (_a, o) => controller.enqueueObject(o as never), onDelete: (o) => controller.enqueueObject(o as never) }, { resyncPeriodMs: 30_000 });
  const fromPod = (p: RO<Pod>) => {
    const n = p.metadata.labels?.[LABEL_BIDS];
    if (n) controller.enqueue(`${p.metadata.namespace ?? ''}/${n}`);
  };
  pods.addEventHandler({ onAdd: fromPod, onUpdate: (_a, b) => fromPod(b), onDelete: fromPod });
  bims.addEventHandler({
    onUpdate: (a, b) => {
      for (const [bi, f] of Object.entries(b.status?.backingImageFileMap ?? {})) {
        if (f.state === 'ready' && a.status?.backingImageFileMap?.[bi]?.state !== 'ready') controller.enqueue(`${b.metadata.namespace ?? ''}/${bi}`);
      }
    },
  });
  nodes.addEventHandler({
    onUpdate: (a, b) => {
      if (nodeIsReady(a) === nodeIsReady(b)) return;
      for (const ds of bidss.list()) if (ds.spec?.nodeID === b.metadata.name && !ds.spec?.fileTransferred) controller.enqueueObject(ds as never);
    },
  });
  return { controller, stop: () => monitors.stopAll() };
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}
