// The pod scheduler: binds pods created without `spec.nodeName` (a StatefulSet's) to a Ready node, as
// Kubernetes' scheduler does for the parts Stratum needs. Per pod:
//   claimsOf (every claimed PVC exists, else wait with a FailedScheduling Event) → pickNode (Ready nodes whose
//   labels, plus `kubernetes.io/hostname`, match the pod's nodeSelector; fewest pods first) → selectNode (an
//   unbound WaitForFirstConsumer claim gets the `volume.kubernetes.io/selected-node` annotation, and the pod waits
//   for its binding) → bind (spec.nodeName, once every claim is Bound).
// Data-plane pods are created with their node set and never pass through here.

import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import { SELECTED_NODE_ANNOTATION, type PersistentVolumeClaim } from '../../api/persistent-volume-claim.js';
import type { Pod } from '../../api/pod.js';
import type { StorageClass } from '../../api/storage-class.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { nodeIsReady } from '../scheduling.js';

type RO<T> = DeepReadonly<T>;
const BY_NODE = 'nodeName';
const BY_CLAIM = 'schedulerClaim';
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';

export interface PodSchedulerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
}

/** Whether a node satisfies a pod's nodeSelector (its labels, plus the hostname label every node has). */
export function nodeMatches(node: RO<Node>, selector: Readonly<Record<string, string>> | undefined): boolean {
  const labels: Record<string, string> = { ...(node.metadata.labels ?? {}), [HOSTNAME_LABEL]: node.metadata.name ?? '' };
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

export function podSchedulerController(opts: PodSchedulerOptions): Controller {
  const { store, informers, events } = opts;
  const pods = informers.informerFor<Pod>('Pod');
  const nodes = informers.informerFor<Node>('Node');
  const claims = informers.informerFor<PersistentVolumeClaim>('PersistentVolumeClaim');
  const classes = informers.informerFor<StorageClass>('StorageClass');
  const lastWarning = new Map<string, string>();

  const warn = (pod: RO<Pod>, message: string) => {
    const key = `${pod.metadata.namespace ?? ''}/${pod.metadata.name ?? ''}`;
    if (lastWarning.get(key) === message) return;
    lastWarning.set(key, message);
    events.event(pod, 'Warning', 'FailedScheduling', message);
  };

  function pickNode(pod: RO<Pod>): RO<Node> | undefined {
    const candidates = nodes.list().filter((n) => nodeIsReady(n) && nodeMatches(n, pod.spec?.nodeSelector));
    // Fewest pods first, then by name, so pods of one set spread over the nodes.
    const load = (n: RO<Node>) => pods.byIndex(BY_NODE, n.metadata.name ?? '').length;
    return candidates.sort((a, b) => load(a) - load(b) || (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''))[0];
  }

  const controller = new Controller({
    name: 'pod-scheduler',
    workers: 1,
    reconcile: async (key) => {
      const [ns = '', name = ''] = key.split('/');
      const pod = pods.get(ns, name);
      if (!pod || pod.spec?.nodeName || pod.metadata.deletionTimestamp) {
        lastWarning.delete(key);
        return undefined;
      }
      const claimed: RO<PersistentVolumeClaim>[] = [];
      for (const v of pod.spec?.volumes ?? []) {
        if (!v.persistentVolumeClaim) continue;
        const c = claims.get(ns, v.persistentVolumeClaim.claimName);
        if (!c) {
          warn(pod, `persistentvolumeclaim "${v.persistentVolumeClaim.claimName}" not found`);
          return undefined;
        }
        if (c.metadata.deletionTimestamp) {
          warn(pod, `persistentvolumeclaim "${c.metadata.name ?? ''}" is being deleted`);
          return undefined;
        }
        claimed.push(c);
      }
      // A pod keeps the node it selected for its claims, so that a retry does not select another.
      const selected = claimed.map((c) => c.metadata.annotations?.[SELECTED_NODE_ANNOTATION]).find((n) => n);
      const node = (selected ? nodes.list().find((n) => n.metadata.name === selected) : undefined) ?? pickNode(pod);
      if (!node || !nodeIsReady(node)) {
        warn(pod, `0/${nodes.list().length} nodes are available: no Ready node matches the pod's nodeSelector`);
        return { requeueAfter: 5000 };
      }
      const nodeName = node.metadata.name ?? '';
      let waiting = false;
      for (const c of claimed) {
        if (c.status?.phase === 'Bound') continue;
        waiting = true;
        const sc = classes.get('', c.spec?.storageClassName ?? '');
        if (sc?.volumeBindingMode === 'WaitForFirstConsumer' && !c.metadata.annotations?.[SELECTED_NODE_ANNOTATION]) {
          await store.patch('PersistentVolumeClaim', ns, c.metadata.name ?? '', 'merge', { metadata: { annotations: { [SELECTED_NODE_ANNOTATION]: nodeName } } }).catch((err: unknown) => {
            if (!isNotFound(err)) throw err;
          });
        }
      }
      if (waiting) return undefined; // each claim's binding enqueues the pod
      await store.patch('Pod', ns, name, 'merge', { spec: { nodeName }, metadata: { resourceVersion: pod.metadata.resourceVersion } });
      lastWarning.delete(key);
      events.event(pod, 'Normal', 'Scheduled', `Successfully assigned ${ns}/${name} to ${nodeName}`);
      return undefined;
    },
  });

  pods.addIndex(BY_NODE, (p) => (p.spec?.nodeName ? [p.spec.nodeName] : []));
  pods.addIndex(BY_CLAIM, (p) =>
    p.spec?.nodeName ? [] : (p.spec?.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [`${p.metadata.namespace ?? ''}/${v.persistentVolumeClaim.claimName}`] : [])),
  );
  const unscheduled = (p: RO<Pod>) => !p.spec?.nodeName && !p.metadata.deletionTimestamp;
  pods.addEventHandler({
    onAdd: (p) => unscheduled(p) && controller.enqueueObject(p),
    onUpdate: (_o, p) => unscheduled(p) && controller.enqueueObject(p),
    onDelete: (p) => lastWarning.delete(`${p.metadata.namespace ?? ''}/${p.metadata.name ?? ''}`),
  });
  const claimChanged = (c: RO<PersistentVolumeClaim>) => {
    for (const p of pods.byIndex(BY_CLAIM, `${c.metadata.namespace ?? ''}/${c.metadata.name ?? ''}`)) controller.enqueueObject(p);
  };
  claims.addEventHandler({ onAdd: claimChanged, onUpdate: (_o, c) => claimChanged(c) });
  // A node becoming Ready may unblock pods that found none; unscheduled pods are few.
  nodes.addEventHandler({
    onUpdate: (o, n) => {
      if (!nodeIsReady(o) && nodeIsReady(n)) for (const p of pods.list().filter(unscheduled)) controller.enqueueObject(p);
    },
  });
  return controller;
}
