// For controller tests over the real store: a Ready node whose instance manager (InstanceManager, status running,
// and its Ready pod) is served by a fake instance manager listening on `port` of 127.0.0.1, and the InstanceManager
// controller (with controllers built on it) running over that store.

import type { InstanceManager, InstanceProcess } from '../../api/instance-manager.js';
import { instanceManagerName } from '../../api/labels.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Pod } from '../../api/pod.js';
import { HTTP_PORT_NAME, PORTS_ANNOTATION } from '../../api/pods.js';
import type { Store } from '../../store/types.js';
import type { Controller } from '../../controller-kit/controller.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { instanceManagerController, type InstanceManagers } from './index.js';

export const FIXTURE = { namespace: DEFAULT_NAMESPACE, image: 'stratum:test', node: 'node-1', im: instanceManagerName('stratum:test', 'node-1') } as const;

/** Seeds the node, its running InstanceManager with `instanceReplicas` as a previous leader left them, and the pod. */
export async function seedNodeWithManager(store: Store, port: number, instanceReplicas: Record<string, InstanceProcess>): Promise<void> {
  const { namespace: NS, image: IMAGE, node: NODE, im: IM } = FIXTURE;
  await store.create({ apiVersion: LONGHORN_API_VERSION, kind: 'Setting', metadata: { name: 'default-instance-manager-image', namespace: NS }, value: IMAGE } as never);
  const { object: node } = await store.create<Node>({ apiVersion: LONGHORN_API_VERSION, kind: 'Node', metadata: { name: NODE, namespace: NS }, spec: {} } as Node);
  await store.update<Node>({ ...node, status: { conditions: [{ type: 'Ready', status: 'True', reason: '', message: '', lastProbeTime: '', lastTransitionTime: '' }] } } as Node, { subresource: 'status' });
  const { object: im } = await store.create<InstanceManager>({ apiVersion: LONGHORN_API_VERSION, kind: 'InstanceManager', metadata: { name: IM, namespace: NS }, spec: { image: IMAGE, nodeID: NODE, type: 'aio', dataEngine: 'v1' } } as InstanceManager);
  await store.update<InstanceManager>({ ...im, status: { currentState: 'running', apiVersion: 2, apiMinVersion: 2, instanceReplicas, instanceEngines: {} } } as InstanceManager, { subresource: 'status' });
  const { object: pod } = await store.create<Pod>({ apiVersion: 'v1', kind: 'Pod', metadata: { name: IM, namespace: NS, annotations: { [PORTS_ANNOTATION]: JSON.stringify({ [HTTP_PORT_NAME]: port }) } }, spec: { nodeName: NODE, containers: [{ name: 'instance-manager', image: IMAGE }] } } as Pod);
  await store.update<Pod>({ ...pod, status: { phase: 'Running', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] } } as Pod, { subresource: 'status' });
}

/**
 * Runs the InstanceManager controller over `store`, and the controllers `more` builds on it; resolves once their
 * informers are synced. `stop` ends them all.
 */
export async function runWithManagers(
  store: Store,
  more: (deps: { managers: InstanceManagers; informers: InformerFactory; events: EventRecorder }) => Controller[] = () => [],
): Promise<{ managers: InstanceManagers; stop(): Promise<void> }> {
  const ac = new AbortController();
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'test', logger: silentLogger });
  const managers = instanceManagerController({ store, informers, events, namespace: FIXTURE.namespace });
  const others = more({ managers, informers, events });
  void informers.run(ac.signal);
  await informers.waitForSync(ac.signal);
  const running = [managers.controller, ...others].map((c) => c.run(ac.signal));
  return {
    managers,
    async stop() {
      ac.abort();
      await Promise.allSettled(running);
      await managers.stop();
    },
  };
}
