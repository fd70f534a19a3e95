// The Engine controller: runs a volume's engine process (with its frontend) on the instance manager of
// `spec.nodeID` while `spec.desireState` is `running`. Per engine:
//   desired stopped? stopInstance → startInstance (with the replicas of spec.replicaAddressMap) → once running:
//   syncMembership (replicas added to the spec are added live and rebuilt; removed ones are dropped) →
//   updateStatus (endpoint, replicaModeMap, rebuildStatus, snapshots) from the engine's control API, and
//   currentImage: the engine image the instance manager reports the engine runs (spec.image at start, the new one
//   after a live swap; cleared when it stops).
// A running engine's change stream (its control API's watch) enqueues the engine on every replica mode change
// and rebuild step; ENGINE_RESYNC_MS is only a safety net. The volume controller reacts to what this writes.

import { snapshotStatusOf, type Engine } from '../../api/engine.js';
import type { InstanceManager } from '../../api/instance-manager.js';
import type { DeepReadonly } from '../../api/meta.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import type { EngineStatus as LiveStatus } from '../../engine/types.js';
import type { SnapshotInfo } from '../../replica/index.js';
import type { Store } from '../../store/types.js';
import { CopyBackoff } from '../backing-image-manager/flow.js';
import { isBehind, stateWhileUnreachable } from '../common/instance-state.js';
import { Monitors } from '../common/monitor.js';
import { mutateStatus } from '../common/status.js';
import { EngineControlClient, type Instance, type InstanceManagerClient } from '../instance-manager/client.js';
import type { InstanceManagers } from '../instance-manager/index.js';

type RO<T> = DeepReadonly<T>;

export const ENGINE_RESYNC_MS = 30_000;
const ENGINE_BY_NODE = 'engineByNode';

export interface EngineControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  managers: InstanceManagers;
  now?: () => Date;
}

export function engineController(opts: EngineControllerOptions): { controller: Controller; stop(): Promise<void> } {
  const { store, informers, events, managers } = opts;
  const now = () => (opts.now ?? (() => new Date()))().toISOString();
  const engines = informers.informerFor<Engine>('Engine');
  const ims = informers.informerFor<InstanceManager>('InstanceManager');
  engines.addIndex(ENGINE_BY_NODE, (e) => (e.spec?.nodeID ? [e.spec.nodeID] : []));
  const monitors = new Monitors();
  // Restarts of an engine whose process keeps failing wait 1 s, 2 s, … up to a minute.
  const restarts = new CopyBackoff(() => 1000, () => 60_000, Date.now);

  const reconcile = async (key: string, signal: AbortSignal) => {
    const [ns = '', name = ''] = key.split('/');
    const e = engines.get(ns, name);
    if (!e) {
      monitors.stop(key);
      return;
    }
    const nodeName = e.spec?.nodeID ?? '';
    const m = nodeName ? managers.managerFor(nodeName, name) : { problem: 'the engine has no node' };
    // An engine left running on another node (the volume moved) is stopped there first.
    const ran = e.status?.currentTargetNodeID || '';
    if (ran && ran !== nodeName) {
      const old = managers.managerFor(ran, name);
      if ('client' in old) await old.client.delete(name, { signal });
      await mutateStatus<Engine>(store, 'Engine', ns, name, (st) => void (st.currentTargetNodeID = ''));
      return;
    }
    const inst = nodeName ? managers.instanceOn(nodeName, name) : undefined;
    if (inst?.state !== 'running') monitors.stop(key);
    if (e.spec?.desireState !== 'running' || e.metadata.deletionTimestamp) {
      if ('client' in m && inst) await m.client.delete(name, { signal });
      else if (inst && 'problem' in m) return { requeueAfter: 2000 };
      await setStopped(e, '');
      return;
    }
    if ('problem' in m) {
      await setStopped(e, m.problem, stateWhileUnreachable(e.status?.currentState));
      return { requeueAfter: 2000 };
    }
    if (!inst || inst.state === 'stopped') {
      const wait = restarts.remaining(key);
      if (wait > 0) return { requeueAfter: wait };
      return startInstance(e, m.client, m.im.metadata.name ?? '', signal);
    }
    if (inst.state === 'error') {
      // The replicas hold every acknowledged write, so a failed engine is simply started again, after a backoff.
      restarts.next(key);
      const wait = restarts.remaining(key);
      events.event(e as never, 'Warning', 'EngineFailed', `${inst.errorMsg ?? 'the engine failed'}; restarting it in ${Math.round(wait / 1000)} s`);
      await m.client.delete(name, { signal });
      await setStopped(e, `${inst.errorMsg ?? 'the engine failed'} (restarting in ${Math.round(wait / 1000)} s)`, 'error');
      return { requeueAfter: wait };
    }
    if (inst.state !== 'running' || !inst.control) {
      await mutateStatus<Engine>(store, 'Engine', ns, name, (st) => {
        if (isBehind(st, inst)) return; // a report older than what the status holds of this engine
        if (inst.uid) st.uuid = inst.uid;
        st.currentState = 'starting';
        st.starting = true;
      });
      return;
    }
    restarts.reset(key);
    const control = new EngineControlClient(inst.control, name);
    monitors.ensure(key, control.watchUrl(), { refresh: async () => controller.enqueue(key), down: () => controller.enqueue(key) });
    let live = await control.status(signal);
    live = await syncMembership(e, control, live, signal);
    // Longhorn's Engine.status.snapshots: the snapshot controller mirrors them into Snapshot objects.
    let snapshots: SnapshotInfo[] | Error;
    try {
      snapshots = await control.snapshots(signal);
    } catch (err) {
      snapshots = err as Error;
    }
    await updateStatus(e, inst, live, m.im.metadata.name ?? '', snapshots);
    return { requeueAfter: ENGINE_RESYNC_MS };
  };

  async function startInstance(e: RO<Engine>, client: InstanceManagerClient, imName: string, signal: AbortSignal) {
    const spec = e.spec ?? {};
    const frontend = spec.disableFrontend || !spec.frontend ? 'none' : spec.frontend === 'blockdev' ? 'blockdev' : 'nbd';
    const replicas = Object.entries(spec.replicaAddressMap ?? {}).map(([name, address]) => ({ name, address }));
    const inst = await client.createEngine(e.metadata.name ?? '', { volume: spec.volumeName ?? '', size: Number(spec.volumeSize ?? '0'), replicas, frontend, ...(spec.image ? { image: spec.image } : {}) }, signal);
    // The instance manager answers with the engine it has: one that runs already (the InstanceManager status had not
    // caught up) is not set back to starting; the status follows shortly, and with it the running path.
    if (inst.state === 'running') return { requeueAfter: 1000 };
    events.event(e as never, 'Normal', 'Start', `starting engine on node ${spec.nodeID} with ${replicas.length} replica(s), frontend ${frontend}`);
    await mutateStatus<Engine>(store, 'Engine', e.metadata.namespace ?? '', e.metadata.name ?? '', (st) => {
      if (isBehind(st, inst)) return;
      if (inst.uid) st.uuid = inst.uid;
      st.currentState = 'starting';
      st.starting = true;
      st.instanceManagerName = imName;
      st.currentTargetNodeID = spec.nodeID ?? '';
    });
  }

  /** Adds the spec's new replicas (the engine rebuilds them) and drops the ones the spec no longer lists. */
  async function syncMembership(e: RO<Engine>, control: EngineControlClient, live: LiveStatus, signal: AbortSignal): Promise<LiveStatus> {
    const want = e.spec?.replicaAddressMap ?? {};
    const have = new Map(live.replicas.map((r) => [r.name, r]));
    for (const r of live.replicas) {
      if (want[r.name] !== undefined) continue;
      live = await control.removeReplica(r.name, signal);
      events.event(e as never, 'Normal', 'ReplicaRemoved', `removed replica ${r.name} (${r.mode}) from the engine`);
    }
    // One rebuild at a time: the engine refuses a second while one runs.
    if (live.rebuild?.state === 'running') return live;
    for (const [name, address] of Object.entries(want)) {
      if (have.has(name)) continue;
      live = await control.addReplica(name, address, signal);
      events.event(e as never, 'Normal', 'RebuildStarted', `added replica ${name} at ${address}: rebuilding it from a healthy replica`);
      break;
    }
    return live;
  }

  async function updateStatus(e: RO<Engine>, inst: Instance, live: LiveStatus, imName: string, snapshots: SnapshotInfo[] | Error) {
    await mutateStatus<Engine>(store, 'Engine', e.metadata.namespace ?? '', e.metadata.name ?? '', (st) => {
      const modes: Record<string, 'RW' | 'WO' | 'ERR'> = {};
      const addrs: Record<string, string> = {};
      const times = { ...(st.replicaTransitionTimeMap ?? {}) };
      for (const r of live.replicas) {
        modes[r.name] = r.mode;
        addrs[r.name] = r.address;
        if (st.replicaModeMap?.[r.name] !== r.mode) times[r.name] = r.since || now();
      }
      if (isBehind(st, inst)) return;
      if (inst.uid) st.uuid = inst.uid;
      st.currentState = 'running';
      st.currentImage = inst.image ?? '';
      st.started = true;
      st.starting = false;
      st.instanceManagerName = imName;
      st.currentTargetNodeID = e.spec?.nodeID ?? '';
      st.replicaModeMap = modes;
      st.currentReplicaAddressMap = addrs;
      st.replicaTransitionTimeMap = Object.fromEntries(Object.entries(times).filter(([n]) => n in modes));
      st.currentSize = String(live.size);
      st.endpoint = inst.device ?? inst.nbd ?? '';
      (st as Record<string, unknown>)['nbdEndpoint'] = inst.nbd ?? '';
      const [host, port] = splitAddress(inst.control ?? '');
      st.ip = host;
      st.port = port;
      const errors = Object.fromEntries(live.replicas.filter((r) => r.error).map((r) => [r.name, r.error ?? '']));
      (st as Record<string, unknown>)['replicaErrorMap'] = errors;
      st.rebuildStatus = live.rebuild
        ? { [live.rebuild.replica]: { ...live.rebuild, isRebuilding: live.rebuild.state === 'running', progress: 0 } }
        : {};
      st.conditions = [];
      if (snapshots instanceof Error) st.snapshotsError = snapshots.message;
      else {
        st.snapshotsError = '';
        st.snapshots = Object.fromEntries(snapshots.map((x) => [x.name, snapshotStatusOf(x)]));
      }
    });
  }

  async function setStopped(e: RO<Engine>, message: string, state: 'stopped' | 'error' | 'unknown' = 'stopped') {
    await mutateStatus<Engine>(store, 'Engine', e.metadata.namespace ?? '', e.metadata.name ?? '', (st) => {
      st.currentState = state;
      st.currentImage = '';
      st.started = false;
      st.starting = false;
      st.endpoint = '';
      (st as Record<string, unknown>)['nbdEndpoint'] = '';
      st.replicaModeMap = {};
      st.currentReplicaAddressMap = {};
      st.rebuildStatus = {};
      st.ip = '';
      st.port = 0;
      if (state === 'stopped') st.currentTargetNodeID = '';
      st.conditions = message ? [{ type: 'InstanceReady', status: 'False', reason: state, message, lastProbeTime: '', lastTransitionTime: now() }] : [];
    });
  }

  const controller = new Controller({ name: 'engine', workers: 4, reconcile });
  engines.addEventHandler({
    onAdd: (o) => controller.enqueueObject(o),
    onUpdate: (a, b) => {
      if (JSON.stringify(a.spec) !== JSON.stringify(b.spec) || a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp) controller.enqueueObject(b);
    },
  });
  // Only the engines whose instance entry changed are reconciled, unless the manager itself changed state.
  const onManager = (a: RO<InstanceManager> | undefined, b: RO<InstanceManager>) => {
    const all = !a || a.status?.currentState !== b.status?.currentState;
    for (const e of engines.byIndex(ENGINE_BY_NODE, b.spec?.nodeID ?? '')) {
      const n = e.metadata.name ?? '';
      if (all || JSON.stringify(a.status?.instanceEngines?.[n]) !== JSON.stringify(b.status?.instanceEngines?.[n])) controller.enqueueObject(e);
    }
  };
  ims.addEventHandler({ onAdd: (b) => onManager(undefined, b), onUpdate: onManager });
  return { controller, stop: () => monitors.stopAll() };
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  if (i < 0) return ['', 0];
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}
