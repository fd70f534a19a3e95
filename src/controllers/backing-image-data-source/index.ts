// The BackingImageDataSource controller: the one-shot process that prepares a backing image's first file.
// Per data source:
//   transferred? → delete the pod, state ready → node down? unknown → ensurePod → monitor (push stream of the
//   pod's progress into status) → handOver (once the disk's manager reports the file ready, mark it transferred)
//   → failed? remove the pod (its work files are gone) and retry after backing-image-recovery-wait-interval.

import { dataPlaneHeaders } from '../common/http-json.js';
import type { BackingImage } from '../../api/backing-image.js';
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
import { mutateStatus } from '../common/status.js';
import { nodeIsReady } from '../scheduling.js';

type RO<T> = DeepReadonly<T>;

interface SourceInfo {
  state: string;
  progress: number;
  size: number | null;
  currentChecksum: string;
  virtualSize: number | null;
  format: string | null;
  message: string;
  filePath: string | null;
  identity: { size: number; mtimeNs: string; ino: string } | null;
  rate?: number;
  etaSeconds?: number | null;
}

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
        ...(info.identity ? { identity: JSON.stringify({ size: info.identity.size, mtimeNs: info.identity.mtimeNs, inode: info.identity.ino }) } : {}),
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
      if (pod && !pod.metadata.deletionTimestamp) await store.delete('Pod', ns, podName).catch(ignoreNotFound);
      return;
    }
    if (ds.spec?.fileTransferred) {
      monitors.stop(key);
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
    if (!pod) {
      await createPod(ds);
      return;
    }
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

  async function createPod(ds: RO<BackingImageDataSource>) {
    const ns = ds.metadata.namespace ?? '';
    const name = ds.metadata.name ?? '';
    const params = Object.entries(ds.spec?.parameters ?? {}).flatMap(([k, v]) => ['--parameters', `${k}=${v}`]);
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
