// The agent's writes to a Pod object, each aimed at one pod instance (uid) so that a pod deleted and created
// again under the same name is never touched by the worker of the old one: the finalizer (optimistic
// concurrency on resourceVersion), the status (JSON patch testing the uid), and the published host ports.

import type { Pod, PodStatus } from '../api/pod.js';
import { isConflict, isInvalid, isNotFound } from '../store/errors.js';
import type { Store } from '../store/types.js';
import { POD_FINALIZER, PORTS_ANNOTATION } from './pod-spec.js';

export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

/** Adds or removes the agent's finalizer. A pod that is gone, or is another pod now, is left alone. */
export async function setPodFinalizer(store: Store, ref: PodRef, present: boolean): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let pod: Pod;
    try {
      pod = await store.get<Pod>('Pod', ref.namespace, ref.name);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    if (pod.metadata.uid !== ref.uid) return;
    const before = pod.metadata.finalizers ?? [];
    const list = before.filter((f) => f !== POD_FINALIZER);
    if (present) {
      // Once deleting, finalizers may only be removed; the deletion path takes over.
      if (pod.metadata.deletionTimestamp) return;
      list.push(POD_FINALIZER);
    }
    if (list.length === before.length && list.every((f, i) => f === before[i])) return;
    if (list.length > 0) pod.metadata.finalizers = list;
    else delete pod.metadata.finalizers;
    try {
      await store.update(pod);
      return;
    } catch (err) {
      if (isNotFound(err)) return;
      if (!isConflict(err) || attempt >= 5) throw err;
    }
  }
}

/** Replaces the pod's status. False when the pod is gone or the name now belongs to another pod. */
export async function writePodStatus(store: Store, ref: PodRef, status: PodStatus): Promise<boolean> {
  try {
    await store.patch('Pod', ref.namespace, ref.name, 'json', [
      { op: 'test', path: '/metadata/uid', value: ref.uid },
      { op: 'add', path: '/status', value: status },
    ], { subresource: 'status' });
    return true;
  } catch (err) {
    // NotFound: gone; Invalid: the uid test failed.
    if (isNotFound(err) || isInvalid(err)) return false;
    throw err;
  }
}

/** Publishes the allocated host ports as the `stratum.io/ports` annotation. */
export async function writePodPorts(store: Store, ref: PodRef, ports: Record<string, number>): Promise<void> {
  // A merge patch leaves other annotations alone, whatever the worker's copy of the pod has.
  await store.patch('Pod', ref.namespace, ref.name, 'merge', { metadata: { annotations: { [PORTS_ANNOTATION]: JSON.stringify(ports) } } });
}
