// The node controller: turns heartbeats into each Node's `Ready` condition. A node agent renews the Lease named
// after its Node; when no renewal arrives for `node-down-timeout` seconds (a Setting, default 30) the Node gets
// Ready=False with a message that names the node and the likely fix, and Ready=True again when renewals resume.
//
// Enqueueing: a Lease event enqueues only the Node with that name (looked up through the `nodeName` index on
// the Node informer, so leases of anything else enqueue nothing); a Node event enqueues that Node. Deadlines are
// per-node `requeueAfter`s, not a periodic sweep. The one fan-out is a change of `node-down-timeout` itself,
// which really does change every node's deadline.
//
// It also writes what is scheduled on each disk (`storageScheduled`, `scheduledReplica`, `scheduledBackingImage`,
// see scheduled.ts): a Replica event enqueues its node, a BackingImage event the nodes of the disks it names.

import type { Registry } from 'prom-client';
import type { BackingImage } from '../../api/backing-image.js';
import type { Lease } from '../../api/lease.js';
import type { DeepReadonly } from '../../api/meta.js';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import { NodeCondition, type Node } from '../../api/node.js';
import { settingInt } from '../../api/settings.js';
import type { Replica } from '../../api/replica.js';
import type { Setting } from '../../api/setting-resource.js';
import { realClock, type Clock } from '../../controller-kit/clock.js';
import { Controller } from '../../controller-kit/controller.js';
import { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { keyFor, splitKey } from '../../controller-kit/keys.js';
import { consoleLogger, type Logger } from '../../controller-kit/log.js';
import { isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { getCondition, LEASE_NAMESPACE, setCondition, timestamp } from '../../api/node-contract.js';
import { computeReadiness } from './readiness.js';
import { scheduledMatches, scheduledOnDisks, type DiskScheduled } from './scheduled.js';

export { computeReadiness, lastHeartbeatMs, type Readiness, type ReadinessInput } from './readiness.js';
export * from '../../api/node-contract.js';

const NODE_DOWN_TIMEOUT = 'node-down-timeout';
const BY_NODE_NAME = 'nodeName';
const BY_DISK_UUID = 'node.diskUUID';
const REPLICAS_BY_NODE = 'node.replicasByNode';
const IMAGES_BY_DISK = 'node.imagesByDisk';

export interface NodeControllerOptions {
  store: Store;
  informers: InformerFactory;
  clock?: Clock;
  logger?: Logger;
  /** Where Ready transitions are recorded as Events; default a recorder on `store`. */
  recorder?: EventRecorder;
  workers?: number;
  /** Where the controller's queue and reconcile metrics go; default the process registry. */
  registry?: Registry;
}

export function nodeController(opts: NodeControllerOptions): Controller {
  const clock = opts.clock ?? realClock;
  const logger = opts.logger ?? consoleLogger;
  const recorder = opts.recorder ?? new EventRecorder({ store: opts.store, component: 'node-controller', clock, logger });
  const nodes = opts.informers.informerFor<Node>('Node');
  const leases = opts.informers.informerFor<Lease>('Lease');
  const settings = opts.informers.informerFor<Setting>('Setting');
  const replicas = opts.informers.informerFor<Replica>('Replica');
  const images = opts.informers.informerFor<BackingImage>('BackingImage');
  nodes.addIndex(BY_NODE_NAME, (n) => (n.metadata.name ? [n.metadata.name] : []));
  nodes.addIndex(BY_DISK_UUID, (n) => Object.values(n.status?.diskStatus ?? {}).flatMap((d) => (d.diskUUID ? [d.diskUUID] : [])));
  replicas.addIndex(REPLICAS_BY_NODE, (r) => (r.spec?.nodeID ? [r.spec.nodeID] : []));
  images.addIndex(IMAGES_BY_DISK, (bi) => Object.keys(bi.spec?.diskFileSpecMap ?? {}));

  const timeoutSeconds = (): number =>
    settingInt(NODE_DOWN_TIMEOUT, (name) => settings.get(DEFAULT_NAMESPACE, name)?.value as string | undefined);

  const controller = new Controller({
    name: 'node',
    workers: opts.workers ?? 2,
    clock,
    logger,
    ...(opts.registry ? { registry: opts.registry } : {}),
    reconcile: async (key) => {
      const [ns, name] = splitKey(key);
      const node = nodes.get(ns, name);
      if (node === undefined || node.metadata.deletionTimestamp) return;
      const current = getCondition(node.status?.conditions, NodeCondition.ready);
      const now = clock.now();
      const r = computeReadiness({
        nodeName: name,
        createdAtMs: Date.parse(node.metadata.creationTimestamp ?? '') || now,
        lease: leases.get(LEASE_NAMESPACE, name),
        nowMs: now,
        timeoutSeconds: timeoutSeconds(),
        current,
      });
      const scheduled = scheduledOnDisks(node, replicas.byIndex(REPLICAS_BY_NODE, name), (uuid) => images.byIndex(IMAGES_BY_DISK, uuid));
      const readyChanged = current?.status !== r.status || current.reason !== r.reason || current.message !== r.message;
      if (readyChanged || !scheduledMatches(node, scheduled)) await writeStatus(opts.store, node, r, scheduled, timestamp(now));
      if (readyChanged) {
        if (current?.status !== r.status && r.status !== 'Unknown') {
          if (r.status === 'False') recorder.event(node, 'Warning', 'NodeNotReady', r.message);
          else recorder.event(node, 'Normal', 'NodeReady', r.message);
          logger.info(`node ${name}: Ready=${r.status} (${r.reason})`, { message: r.message });
        }
      }
      return r.recheckAfterMs === undefined ? undefined : { requeueAfter: r.recheckAfterMs };
    },
  });

  nodes.addEventHandler({
    onAdd: (n) => controller.enqueueObject(n),
    onUpdate: (_old, n) => controller.enqueueObject(n),
  });
  const onLease = (l: DeepReadonly<Lease>): void => {
    if (l.metadata.namespace !== LEASE_NAMESPACE) return;
    for (const k of nodes.indexKeys(BY_NODE_NAME, l.metadata.name ?? '')) {
      if (k === keyFor(LEASE_NAMESPACE, l.metadata.name ?? '')) controller.enqueue(k);
    }
  };
  leases.addEventHandler({ onAdd: onLease, onUpdate: (_o, l) => onLease(l), onDelete: onLease });
  const onNodeNamed = (name: string | undefined): void => {
    for (const k of name ? nodes.indexKeys(BY_NODE_NAME, name) : []) controller.enqueue(k);
  };
  const replicaPlace = (r: DeepReadonly<Replica>) => `${r.spec?.nodeID}/${r.spec?.diskID}/${r.spec?.volumeSize}`;
  replicas.addEventHandler({
    onAdd: (r) => onNodeNamed(r.spec?.nodeID),
    onUpdate: (a, b) => {
      if (replicaPlace(a) === replicaPlace(b)) return;
      onNodeNamed(a.spec?.nodeID);
      if (b.spec?.nodeID !== a.spec?.nodeID) onNodeNamed(b.spec?.nodeID);
    },
    onDelete: (r) => onNodeNamed(r.spec?.nodeID),
  });
  const onImageDisks = (...bis: DeepReadonly<BackingImage>[]): void => {
    const keys = new Set(bis.flatMap((bi) => Object.keys(bi.spec?.diskFileSpecMap ?? {}).flatMap((uuid) => nodes.indexKeys(BY_DISK_UUID, uuid))));
    for (const k of keys) controller.enqueue(k);
  };
  const imagePlace = (bi: DeepReadonly<BackingImage>) => `${Object.keys(bi.spec?.diskFileSpecMap ?? {}).sort().join(',')}/${bi.status?.realSize}/${bi.status?.size}`;
  images.addEventHandler({
    onAdd: (bi) => onImageDisks(bi),
    onUpdate: (a, b) => imagePlace(a) !== imagePlace(b) && onImageDisks(a, b),
    onDelete: (bi) => onImageDisks(bi),
  });
  settings.addEventHandler({
    onUpdate: (old, s) => {
      if (s.metadata.name !== NODE_DOWN_TIMEOUT || old.value === s.value) return;
      for (const n of nodes.list()) controller.enqueueObject(n);
    },
  });
  return controller;
}

/**
 * Writes the Ready condition and what is scheduled on each disk (this controller's fields only), on the Node as last
 * read; a Conflict is retried by the controller.
 */
async function writeStatus(
  store: Store,
  node: DeepReadonly<Node>,
  r: { status: 'True' | 'False' | 'Unknown'; reason: string; message: string },
  scheduled: Record<string, DiskScheduled>,
  now: string,
): Promise<void> {
  const next = structuredClone(node) as Node;
  const status = (next.status ??= {});
  status.conditions = setCondition(status.conditions, { type: NodeCondition.ready, status: r.status, reason: r.reason, message: r.message }, now);
  for (const [disk, s] of Object.entries(scheduled)) {
    const st = status.diskStatus?.[disk];
    if (st) Object.assign(st, s);
  }
  try {
    await store.update(next, { subresource: 'status' });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
