// The Replica controller: runs a replica process on its node's instance manager while `spec.desireState` is
// `running`, and stops it otherwise. Per replica:
//   ensureFinalizer → (deleting? stop the process and remove its data directory) → desired stopped? stopInstance →
//   backing-image gate (the copy on the replica's own disk must be ready) → startInstance → updateStatus from the
//   instance manager's report (running with its address, or error with the process's exit reason).
// Whether a failed replica is replaced is the volume controller's decision, never this one's.

import { replicaDirOf } from '../../api/disk-layout.js';
import type { BackingImage } from '../../api/backing-image.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import type { InstanceManager } from '../../api/instance-manager.js';
import type { Store } from '../../store/types.js';
import { gateFor } from '../backing-image/replica-gate.js';
import { LONGHORN_FINALIZER } from '../../api/labels.js';
import { isBehind, stateWhileUnreachable } from '../common/instance-state.js';
import { RemoteError } from '../common/http-json.js';
import { mutateStatus } from '../common/status.js';
import { setCondition } from '../../api/node-contract.js';
import type { Instance, InstanceManagerClient } from '../instance-manager/client.js';
import type { InstanceManagers } from '../instance-manager/index.js';
import { nodeIsReady } from '../scheduling.js';

type RO<T> = DeepReadonly<T>;

export const REPLICA_BY_NODE = 'replicaByNode';

/** Where a replica's files live on its disk. */
export function replicaDataPath(r: RO<Replica>): string {
  return replicaDirOf(r.spec?.diskPath ?? '', r.spec?.dataDirectoryName ?? '');
}

export interface ReplicaControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  managers: InstanceManagers;
  now?: () => Date;
}

export function replicaController(opts: ReplicaControllerOptions): Controller {
  const { store, informers, events, managers } = opts;
  const now = () => (opts.now ?? (() => new Date()))().toISOString();
  const replicas = informers.informerFor<Replica>('Replica');
  const bis = informers.informerFor<BackingImage>('BackingImage');
  const nodes = informers.informerFor<Node>('Node');
  const ims = informers.informerFor<InstanceManager>('InstanceManager');
  replicas.addIndex(REPLICA_BY_NODE, (r) => (r.spec?.nodeID ? [r.spec.nodeID] : []));

  const reconcile = async (key: string, signal: AbortSignal) => {
    const [ns = '', name = ''] = key.split('/');
    const r = replicas.get(ns, name);
    if (!r) return;
    if (r.metadata.deletionTimestamp) return finalize(r, signal);
    if (!(r.metadata.finalizers ?? []).includes(LONGHORN_FINALIZER)) {
      await store.patch('Replica', ns, name, 'merge', { metadata: { finalizers: [...(r.metadata.finalizers ?? []), LONGHORN_FINALIZER], resourceVersion: r.metadata.resourceVersion } });
      return;
    }
    const nodeName = r.spec?.nodeID ?? '';
    const m = managers.managerFor(nodeName, name);
    const inst = managers.instanceOn(nodeName, name);
    if (r.spec?.desireState !== 'running') {
      if ('client' in m && inst) await m.client.delete(name, { signal });
      await setStatus(r, { currentState: 'stopped' });
      return;
    }
    if (r.spec.backingImage && (!inst || inst.state === 'stopped')) {
      const g = gateFor(bis.get(ns, r.spec.backingImage), r.spec.backingImage, r.spec.diskID, r.spec.diskPath);
      // The replica gate keeps the WaitForBackingImage condition; this only holds the start back (a running
      // replica keeps its open backing file whatever happens to the copy's status).
      if (g.waiting || !g.path) return setStatus(r, { currentState: 'stopped', message: g.message });
    }
    if ('problem' in m) {
      await setStatus(r, { currentState: stateWhileUnreachable(r.status?.currentState), message: m.problem });
      return { requeueAfter: 2000 };
    }
    if (!inst || inst.state === 'stopped') {
      await startInstance(r, m.client, m.im.metadata.name ?? '', signal);
      return;
    }
    if (inst.state === 'error') {
      await setStatus(r, { currentState: 'error', message: inst.errorMsg ?? 'the replica failed', im: m.im.metadata.name ?? '' });
      return;
    }
    await setStatus(r, { currentState: inst.state === 'running' ? 'running' : 'starting', inst, im: m.im.metadata.name ?? '' });
    return undefined;
  };

  async function startInstance(r: RO<Replica>, client: InstanceManagerClient, imName: string, signal: AbortSignal) {
    const ns = r.metadata.namespace ?? '';
    const biName = r.spec?.backingImage;
    let backing: { name: string; uuid: string; path: string } | undefined;
    if (biName) {
      const bi = bis.get(ns, biName);
      const g = gateFor(bi, biName, r.spec?.diskID, r.spec?.diskPath);
      if (!bi?.status?.uuid || !g.path) return;
      backing = { name: biName, uuid: bi.status.uuid, path: g.path };
    }
    const size = Number(r.spec?.volumeSize ?? '0');
    let inst: Instance;
    try {
      inst = await client.createReplica(r.metadata.name ?? '', { dir: replicaDataPath(r), size, ...(backing ? { backing } : {}) }, signal);
    } catch (err) {
      // A refusal (a disk the manager does not serve, a directory held elsewhere) goes where a human looks, and the
      // reconcile's backoff asks again.
      if (err instanceof RemoteError && err.status >= 400 && err.status < 500) {
        await setStatus(r, { currentState: 'stopped', message: `instance manager ${imName} refused to start the replica: ${err.message}` });
      }
      throw err;
    }
    // The instance manager answers with the instance it has: one that runs already (a status that had not caught up)
    // stays running instead of flipping back to starting until the next change.
    if (inst.state === 'running') return setStatus(r, { currentState: 'running', inst, im: imName });
    events.event(r as never, 'Normal', 'Start', `starting replica process on node ${r.spec?.nodeID} in ${replicaDataPath(r)}`);
    await setStatus(r, { currentState: 'starting', inst, im: imName });
  }

  async function setStatus(r: RO<Replica>, s: { currentState: 'running' | 'starting' | 'stopped' | 'error' | 'unknown'; inst?: Instance; im?: string; message?: string }) {
    const [host, port] = s.currentState === 'running' && s.inst?.address ? splitAddress(s.inst.address) : ['', 0];
    await mutateStatus<Replica>(store, 'Replica', r.metadata.namespace ?? '', r.metadata.name ?? '', (st) => {
      // Checked against the stored status, not the cache: this controller's own newer write may not be in it yet.
      if (s.inst && isBehind(st, s.inst)) return;
      if (s.inst?.uid) st.uuid = s.inst.uid;
      st.currentState = s.currentState;
      st.started = s.currentState === 'running';
      st.ip = host;
      st.storageIP = host;
      st.port = port;
      if (s.im !== undefined) st.instanceManagerName = s.im;
      const ready = s.currentState === 'running';
      st.conditions = setCondition(st.conditions, {
        type: 'InstanceReady',
        status: ready ? 'True' : 'False',
        reason: ready ? '' : s.currentState,
        message: ready ? '' : (s.message ?? `the replica process is ${s.currentState}`),
      }, now());
    });
  }

  /** Deletion: stop the process and remove the data directory; a replica on a node that is gone leaves it behind. */
  async function finalize(r: RO<Replica>, signal: AbortSignal) {
    const ns = r.metadata.namespace ?? '';
    const name = r.metadata.name ?? '';
    const nodeName = r.spec?.nodeID ?? '';
    const node = nodes.get('', nodeName) ?? nodes.get(ns, nodeName);
    const m = managers.managerFor(nodeName, name);
    if ('client' in m) {
      await m.client.delete(name, { signal });
      // A stopped replica (its volume detached) has no instance left: its directory is removed on its own.
      if (r.spec?.dataDirectoryName) await m.client.removeReplicaData(replicaDataPath(r), signal);
    } else if (node && nodeIsReady(node) && r.status?.currentState !== 'stopped') {
      return { requeueAfter: 2000 };
    } else if (r.spec?.dataDirectoryName && nodeName) {
      events.event(r as never, 'Warning', 'DataLeftBehind', `node ${nodeName} is unavailable (${m.problem}): ${replicaDataPath(r)} is left on it`);
    }
    const finalizers = (r.metadata.finalizers ?? []).filter((f) => f !== LONGHORN_FINALIZER);
    await store.patch('Replica', ns, name, 'merge', { metadata: { finalizers, resourceVersion: r.metadata.resourceVersion } });
    return undefined;
  }

  const controller = new Controller({ name: 'replica', workers: 4, reconcile });
  replicas.addEventHandler({ onAdd: (o) => controller.enqueueObject(o), onUpdate: (_a, b) => controller.enqueueObject(b) });
  // Only the replicas whose instance entry changed are reconciled, unless the manager itself changed state.
  const onManager = (a: RO<InstanceManager> | undefined, b: RO<InstanceManager>) => {
    const all = !a || a.status?.currentState !== b.status?.currentState;
    for (const r of replicas.byIndex(REPLICA_BY_NODE, b.spec?.nodeID ?? '')) {
      const n = r.metadata.name ?? '';
      if (all || JSON.stringify(a.status?.instanceReplicas?.[n]) !== JSON.stringify(b.status?.instanceReplicas?.[n])) controller.enqueueObject(r);
    }
  };
  ims.addEventHandler({ onAdd: (b) => onManager(undefined, b), onUpdate: onManager });
  return controller;
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}
