// The InstanceManager controller: one instance-manager pod per node (of the default instance-manager image) that
// hosts the node's replica and engine processes. Per node:
//   ensureManager (the InstanceManager object) → node down? mark unknown → ensurePod → monitor (the pod's
//   instance watch stream keeps status.instanceReplicas / instanceEngines current).
// The replica and engine controllers read those maps from the cache and call the pod through `managerFor`.

import type { InstanceManager, InstanceProcess } from '../../api/instance-manager.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Pod } from '../../api/pod.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { isRemoteNotFound } from '../common/http-json.js';
import { Monitors } from '../common/monitor.js';
import { imPodName, instanceManagerName, LABEL_COMPONENT, LABEL_INSTANCE_MANAGER, LABEL_NODE } from '../../api/labels.js';
import { buildPod, ownerRef, podEndpoint, podProblem, podReady } from '../../api/pods.js';
import { settingsFrom } from '../common/settings.js';
import { mutateStatus } from '../common/status.js';
import { nodeIsReady } from '../scheduling.js';
import { ChangeBatch } from './change-batch.js';
import { InstanceManagerClient, type Instance } from './client.js';

type RO<T> = DeepReadonly<T>;

/** The instance-manager API range this controller speaks (2: instances hosted in-process, engine control under /v1/engines). */
export const IM_API = { min: 2, current: 2 };

const IM_BY_NODE = 'imByNode';

export interface InstanceManagerControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  namespace: string;
  /** The instance-manager API range of the manager's release (default IM_API). */
  api?: { min: number; max: number };
}

export interface InstanceManagers {
  controller: Controller;
  /**
   * The manager of a node to ask about `instance` and a client to its pod, or why there is none: the manager of an
   * older image that still hosts the instance (during a roll: never start it a second time elsewhere), else the
   * running default-image manager (where new instances start).
   */
  managerFor(nodeName: string, instance?: string): { im: RO<InstanceManager>; client: InstanceManagerClient } | { problem: string };
  /** The instance `name` as the node's manager hosting it (or else the default one) last reported it. */
  instanceOn(nodeName: string, name: string): Instance | undefined;
  stop(): Promise<void>;
}

/** An instance as stored in the InstanceManager status maps (Longhorn's process shape, our fields kept). */
function toProcess(i: Instance & { spec?: unknown }): InstanceProcess {
  const { spec: _spec, ...shown } = i;
  return { spec: { name: i.name, dataEngine: 'v1' }, status: { ...shown, endpoint: i.nbd ?? i.address ?? '', listen: i.address ?? i.control ?? '', type: i.type, errorMsg: i.errorMsg ?? '' } };
}

function fromProcess(p: RO<InstanceProcess> | undefined): Instance | undefined {
  const s = p?.status as (Instance & Record<string, unknown>) | undefined;
  return s?.name ? (s as Instance) : undefined;
}

export function instanceManagerController(opts: InstanceManagerControllerOptions): InstanceManagers {
  const { store, informers, events, namespace } = opts;
  const settings = settingsFrom(informers);
  const speaks = opts.api ?? { min: IM_API.min, max: IM_API.current };
  const ims = informers.informerFor<InstanceManager>('InstanceManager');
  const nodes = informers.informerFor<Node>('Node');
  const pods = informers.informerFor<Pod>('Pod');
  const monitors = new Monitors();
  ims.addIndex(IM_BY_NODE, (m) => (m.spec?.nodeID ? [m.spec.nodeID] : []));

  const defaultImage = () => settings.string('default-instance-manager-image');
  const currentFor = (nodeName: string) => ims.get(namespace, instanceManagerName(defaultImage(), nodeName));

  /** Managers of an older image on a node. */
  const oldOn = (nodeName: string) => ims.byIndex(IM_BY_NODE, nodeName).filter((m) => m.metadata.namespace === namespace && m.spec?.image !== defaultImage());
  const hosts = (m: RO<InstanceManager>, instance: string) => !!(m.status?.instanceReplicas?.[instance] ?? m.status?.instanceEngines?.[instance]);
  const holderOf = (nodeName: string, instance: string) => oldOn(nodeName).find((m) => hosts(m, instance));
  /** Managers whose instance list this process has read from the pod (a status from before a restart is hearsay). */
  const heard = new Set<string>();

  const reconcile = async (nodeName: string, signal: AbortSignal) => {
    const current = await reconcileDefault(nodeName, signal);
    const old = await rollOld(nodeName);
    if (current && old) return { requeueAfter: Math.min(current.requeueAfter ?? 5000, old.requeueAfter ?? 5000) };
    return current ?? old;
  };

  /**
   * Managers of an older image (an upgrade changed default-instance-manager-image): they keep hosting what they run
   * — nothing of theirs is started anywhere else while they report it — and are retired once empty: pod deleted,
   * InstanceManager deleted. A vanished or failed pod hosts nothing.
   */
  async function rollOld(nodeName: string): Promise<{ requeueAfter: number } | undefined> {
    const olds = oldOn(nodeName);
    const node = nodes.get('', nodeName) ?? nodes.get(namespace, nodeName);
    // A node that is down tells nothing about what its managers host: wait for it.
    if (olds.length > 0 && (!node || !nodeIsReady(node))) return { requeueAfter: 5000 };
    for (const im of olds) {
      const name = im.metadata.name ?? '';
      const key = `old/${name}`;
      const pod = pods.get(namespace, imPodName(name));
      const ep = podEndpoint(pod);
      const gone = !pod || pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded';
      const alive = !gone && podReady(pod) && !!ep && !pod.metadata.deletionTimestamp;
      if (!gone && !alive) continue; // restarting: wait for it to say what it hosts
      if (alive) {
        const c = new InstanceManagerClient(ep ?? '');
        monitors.ensure(key, c.watchUrl(), {
          onEvent: (ev) => applyEvent(name, ev),
          down: () => controller.enqueue(nodeName),
        });
        const n = Object.keys(im.status?.instanceReplicas ?? {}).length + Object.keys(im.status?.instanceEngines ?? {}).length;
        if (!heard.has(name) || n > 0) continue;
      }
      await stopMonitor(key, name);
      events.event(im as never, 'Normal', 'Retired', alive ? `not of the default image ${defaultImage()} and empty: removed` : `not of the default image ${defaultImage()} and its pod is gone: removed`);
      if (pod) await store.delete('Pod', namespace, imPodName(name)).catch(ignoreNotFound);
      await store.delete('InstanceManager', namespace, name).catch(ignoreNotFound);
    }
    return olds.length > 0 ? { requeueAfter: 3000 } : undefined;
  }

  /** The manager each node's monitor (keyed by node name) feeds: the default image's when it was started. */
  const feeds = new Map<string, string>();
  /** Per manager, the data roots it was last told over its current stream (JSON), so they are sent once per change. */
  const rootsSent = new Map<string, string>();

  const reconcileDefault = async (nodeName: string, signal: AbortSignal): Promise<{ requeueAfter?: number } | undefined> => {
    const node = nodes.get('', nodeName) ?? nodes.get(namespace, nodeName);
    const image = defaultImage();
    const name = instanceManagerName(image, nodeName);
    // After an upgrade the node's monitor may still feed the manager of the old image, whose own monitor (rollOld)
    // speaks for it now: one stream per manager, never two feeding one status.
    if (feeds.has(nodeName) && feeds.get(nodeName) !== name) {
      monitors.stop(nodeName);
      feeds.delete(nodeName);
    }
    if (!node) {
      await stopMonitor(nodeName, name);
      return;
    }
    const im = ims.get(namespace, name);
    if (!im) {
      await createManager(name, image, nodeName);
      return;
    }
    if (!nodeIsReady(node)) {
      await stopMonitor(nodeName, name);
      await setState(im, 'unknown', `node ${nodeName} is down or not Ready: its replicas and engines are unknown until it is back`);
      return;
    }
    const pod = pods.get(namespace, imPodName(name));
    if (!pod) {
      await createPod(im, image, node);
      await setState(im, 'starting');
      return;
    }
    const ep = podEndpoint(pod);
    if (!podReady(pod) || !ep || pod.metadata.deletionTimestamp) {
      await stopMonitor(nodeName, name);
      const failed = pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded';
      await setState(im, im.status?.currentState === 'running' || failed ? 'error' : 'starting', podProblem(pod, imPodName(name)));
      if (failed) await store.delete('Pod', namespace, imPodName(name)).catch(ignoreNotFound);
      return;
    }
    const c = new InstanceManagerClient(ep);
    let api = { min: im.status?.apiMinVersion ?? 0, current: im.status?.apiVersion ?? 0 };
    if (!api.current) {
      const v = await c.version(signal);
      api = { min: v.apiMinVersion, current: v.apiVersion };
      await mutateStatus<InstanceManager>(store, 'InstanceManager', namespace, name, (st) => {
        st.apiVersion = v.apiVersion;
        st.apiMinVersion = v.apiMinVersion;
        st.ip = pod.status?.podIP ?? '';
      });
    }
    if (speaks.min > api.current || speaks.max < api.min) {
      await setState(im, 'error', `instance manager API ${api.min}..${api.current} is not compatible with ${speaks.min}..${speaks.max}`);
      return;
    }
    // The stream starts with a SNAPSHOT of every instance, then each change, in order: applied as they come,
    // batched into one status write (no list on the side: its answer could land over a newer change).
    monitors.ensure(nodeName, c.watchUrl(), {
      onEvent: (ev) => {
        // A new stream: the manager may have restarted, with the disks its pod was made with; tell it the node's.
        if (ev['type'] === 'SNAPSHOT' && rootsSent.delete(name)) controller.enqueue(nodeName);
        return applyEvent(name, ev);
      },
      down: () => controller.enqueue(nodeName),
    });
    feeds.set(nodeName, name);
    await sendDataRoots(name, c, node, signal);
  };

  /** The node's disks as the manager's data roots: a disk added after its pod was made takes replicas at once. */
  async function sendDataRoots(name: string, c: InstanceManagerClient, node: RO<Node>, signal: AbortSignal) {
    const roots = dataRootsOf(node);
    const key = JSON.stringify(roots);
    if (rootsSent.get(name) === key) return;
    try {
      await c.setDataRoots(roots, signal);
    } catch (err) {
      // A manager from before PUT /v1/data-roots keeps its pod's list; anything else is retried with the reconcile.
      if (!isRemoteNotFound(err)) throw err;
    }
    rootsSent.set(name, key);
  }

  /**
   * Stops the monitor of manager `name`: what its stream said and is not written yet is no longer current, and a
   * write of it already under way is waited out, so that the caller's status write lands after it.
   */
  async function stopMonitor(key: string, name: string) {
    monitors.stop(key);
    feeds.delete(key);
    rootsSent.delete(name);
    changes.discard(name);
    heard.delete(name);
    await changes.settled(name);
  }

  /**
   * What a manager's stream says, in its order, as one status write at a time (retried when refused): the SNAPSHOT
   * replaces the maps (and says the manager runs), each change goes on top.
   */
  const changes = new ChangeBatch<Instance>(async (name, batch, full) => {
    await mutateStatus<InstanceManager>(store, 'InstanceManager', namespace, name, (st) => {
      const replicas = full ? {} : { ...(st.instanceReplicas ?? {}) };
      const engines = full ? {} : { ...(st.instanceEngines ?? {}) };
      for (const [n, i] of batch) {
        delete replicas[n];
        delete engines[n];
        if (i) (i.type === 'engine' ? engines : replicas)[n] = toProcess(i);
      }
      st.instanceReplicas = replicas;
      st.instanceEngines = engines;
      if (full) {
        st.currentState = 'running';
        st.conditions = [];
      }
    });
    if (full) heard.add(name);
  });

  function applyEvent(name: string, ev: Record<string, unknown>): boolean {
    if (ev['type'] === 'SNAPSHOT') {
      const all = ev['instances'];
      if (!Array.isArray(all)) return false;
      changes.replace(name, new Map((all as Instance[]).filter((i) => i?.name).map((i) => [i.name, i])));
      return true;
    }
    const i = ev['instance'] as Instance | undefined;
    if (!i?.name || (ev['type'] !== 'ADDED' && ev['type'] !== 'MODIFIED' && ev['type'] !== 'DELETED')) return false;
    changes.add(name, i.name, ev['type'] === 'DELETED' ? null : i);
    return true;
  }

  async function setState(im: RO<InstanceManager>, state: 'unknown' | 'starting' | 'error', message = '') {
    await mutateStatus<InstanceManager>(store, 'InstanceManager', namespace, im.metadata.name ?? '', (st) => {
      st.currentState = state;
      st.conditions = message
        ? [{ type: 'Ready', status: 'False', reason: state === 'starting' ? 'Starting' : 'NotRunning', message, lastProbeTime: '', lastTransitionTime: '' }]
        : [];
    });
  }

  async function createManager(name: string, image: string, nodeName: string) {
    try {
      await store.create<InstanceManager>({
        apiVersion: 'longhorn.io/v1beta2',
        kind: 'InstanceManager',
        metadata: { name, namespace, labels: { [LABEL_COMPONENT]: 'instance-manager', [LABEL_NODE]: nodeName } },
        spec: { image, nodeID: nodeName, type: 'aio', dataEngine: 'v1' },
      } as InstanceManager);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  async function createPod(im: RO<InstanceManager>, image: string, node: RO<Node>) {
    const name = im.metadata.name ?? '';
    // Replicas only on the node's disks (the instance manager also checks each is a registered disk).
    const roots = dataRootsOf(node).flatMap((path) => ['--data-root', path]);
    try {
      await store.create(
        buildPod({
          name: imPodName(name),
          namespace,
          nodeName: im.spec?.nodeID ?? '',
          image,
          args: ['instance-manager', '--node', '$(NODE_NAME)', '--node-uid', node.metadata.uid ?? '', '--host', '$(POD_IP)', '--port', '$(PORT)', ...roots],
          labels: { [LABEL_COMPONENT]: 'instance-manager', [LABEL_INSTANCE_MANAGER]: name, [LABEL_NODE]: im.spec?.nodeID ?? '' },
          owner: ownerRef('InstanceManager', name, im.metadata.uid ?? ''),
          readinessPath: '/v1/version',
        }),
      );
      events.event(im as never, 'Normal', 'PodCreated', `created instance-manager pod ${imPodName(name)} on node ${im.spec?.nodeID}`);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  const controller = new Controller({ name: 'instance-manager', workers: 2, reconcile });
  nodes.addEventHandler({
    onAdd: (n) => controller.enqueue(n.metadata.name ?? ''),
    onUpdate: (a, b) => {
      if (nodeIsReady(a) !== nodeIsReady(b) || JSON.stringify(dataRootsOf(a)) !== JSON.stringify(dataRootsOf(b))) controller.enqueue(b.metadata.name ?? '');
    },
  });
  ims.addEventHandler({
    onAdd: (m) => controller.enqueue(m.spec?.nodeID ?? ''),
    onUpdate: (a, b) => {
      if (a.metadata.resourceVersion !== b.metadata.resourceVersion && JSON.stringify(a.spec) !== JSON.stringify(b.spec)) controller.enqueue(b.spec?.nodeID ?? '');
    },
    onDelete: (m) => controller.enqueue(m.spec?.nodeID ?? ''),
  });
  pods.addEventHandler({
    onAdd: (p) => podNode(p) && controller.enqueue(podNode(p)!),
    onUpdate: (_a, p) => podNode(p) && controller.enqueue(podNode(p)!),
    onDelete: (p) => podNode(p) && controller.enqueue(podNode(p)!),
  });
  const podNode = (p: RO<Pod>) => (p.metadata.labels?.[LABEL_COMPONENT] === 'instance-manager' ? p.metadata.labels[LABEL_NODE] : undefined);

  return {
    controller,
    managerFor(nodeName, instance) {
      const im = (instance ? holderOf(nodeName, instance) : undefined) ?? currentFor(nodeName);
      if (!im) return { problem: `no instance manager on node ${nodeName} yet` };
      if (im.status?.currentState !== 'running') {
        const why = im.status?.conditions?.[0]?.message;
        return { problem: `instance manager ${im.metadata.name} on node ${nodeName} is ${im.status?.currentState || 'starting'}${why ? `: ${why}` : ''}` };
      }
      const ep = podEndpoint(pods.get(namespace, imPodName(im.metadata.name ?? '')));
      if (!ep) return { problem: `instance manager ${im.metadata.name} on node ${nodeName} has no endpoint yet` };
      return { im, client: new InstanceManagerClient(ep) };
    },
    instanceOn(nodeName, name) {
      const im = holderOf(nodeName, name) ?? currentFor(nodeName);
      return fromProcess(im?.status?.instanceReplicas?.[name]) ?? fromProcess(im?.status?.instanceEngines?.[name]);
    },
    stop: () => {
      changes.stop();
      return monitors.stopAll();
    },
  };
}

/** Instance managers on a node (any image), for controllers that react to their status changes. */
export function instanceManagersByNode(informers: InformerFactory, nodeName: string): readonly RO<InstanceManager>[] {
  return informers.informerFor<InstanceManager>('InstanceManager').byIndex(IM_BY_NODE, nodeName);
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}

/**
 * The paths of the node's disks its agent registered, sorted, less those it reports not Ready (an identity file gone,
 * a mount missing): such a disk takes no new replica, and the instance manager would refuse the whole list with it.
 * A disk whose readiness is not reported yet counts: a manager starting with the node must not start with no disk.
 */
export function dataRootsOf(node: RO<Node>): string[] {
  const usable = Object.entries(node.spec?.disks ?? {}).filter(([disk, d]) => {
    const st = node.status?.diskStatus?.[disk];
    return d.path && st?.diskUUID && !(st.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'False');
  });
  return usable.map(([, d]) => d.path ?? '').sort();
}
