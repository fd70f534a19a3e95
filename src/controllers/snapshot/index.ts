// The Snapshot controller: keeps `Snapshot` objects (longhorn.io/v1beta2) and a volume's snapshots in step, per
// volume:
//   engineOf (the volume's running engine, whose status lists its snapshots) → takeRequested (objects with
//   `spec.createSnapshot` that the volume does not have yet are taken through the engine) → deleteRequested (objects
//   being deleted are deleted in the volume, then let go) → mirror (every snapshot of the volume has an object whose
//   status is the engine's view; objects of snapshots that are gone, or merged by a purge, go too).
// A detached volume has no engine: while objects need one (to take or delete their snapshot) it is attached without
// a frontend for them (a maintenance-attach annotation, src/api/volume.ts), and released when none is left.

import type { Engine, EngineSnapshotStatus } from '../../api/engine.js';
import { LONGHORN_FINALIZER } from '../../api/labels.js';
import { LONGHORN_API_VERSION, type DeepReadonly } from '../../api/meta.js';
import { SNAPSHOT_VOLUME_LABEL, type Snapshot, type SnapshotStatus } from '../../api/snapshot.js';
import { MAINTENANCE_ATTACH_PREFIX, type Volume } from '../../api/volume.js';
import type { Replica } from '../../api/replica.js';
import { VOLUME_HEAD } from '../../replica/chain.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { isRemoteNotFound } from '../common/http-json.js';
import { mutateStatus } from '../common/status.js';
import { EngineControlClient } from '../instance-manager/client.js';

type RO<T> = DeepReadonly<T>;

const SNAPSHOT_BY_VOLUME = 'snapshotByVolume';
const MAINTENANCE_KEY = `${MAINTENANCE_ATTACH_PREFIX}snapshot-controller`;

export interface SnapshotControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
}

export function snapshotController(opts: SnapshotControllerOptions): Controller {
  const { store, informers, events } = opts;
  const snapshots = informers.informerFor<Snapshot>('Snapshot');
  const engines = informers.informerFor<Engine>('Engine');
  const volumes = informers.informerFor<Volume>('Volume');
  const replicas = informers.informerFor<Replica>('Replica');
  snapshots.addIndex(SNAPSHOT_BY_VOLUME, (s) => (s.spec?.volume ? [s.spec.volume] : []));

  const reconcile = async (key: string, signal: AbortSignal) => {
    const [ns = '', volume = ''] = key.split('/');
    const objects = snapshots.byIndex(SNAPSHOT_BY_VOLUME, volume).filter((s) => s.metadata.namespace === ns);
    const vol = volumes.get(ns, volume);
    if (!vol) {
      // The volume is gone with its replicas: nothing is left to delete.
      for (const s of objects) await letGo(s);
      return;
    }
    const engine = engineOf(ns, volume);
    // Work that needs the engine: a snapshot to take, or a taken one to delete. Objects never taken just go.
    const pending = objects.filter((s) => (s.metadata.deletionTimestamp && s.status?.creationTime) || (!s.metadata.deletionTimestamp && s.spec?.createSnapshot && !s.status?.creationTime));
    if (!engine) {
      for (const s of objects) if (s.metadata.deletionTimestamp && !s.status?.creationTime) await letGo(s);
      if (pending.length === 0) return undefined;
      // A detached volume is attached without a frontend for the work (src/api/volume.ts), then released.
      const node = vol.spec?.nodeID || vol.status?.state !== 'detached' ? undefined : replicas.list().find((r) => r.spec?.volumeName === volume && r.metadata.namespace === ns && !r.spec.failedAt && r.spec.healthyAt && r.spec.nodeID)?.spec?.nodeID;
      if (node && vol.metadata.annotations?.[MAINTENANCE_KEY] !== node) {
        await store.patch('Volume', ns, volume, 'merge', { metadata: { annotations: { [MAINTENANCE_KEY]: node } } });
      }
      for (const s of pending) await setStatus(s, (st) => void (st.error = node ? `attaching volume ${volume} without a frontend on node ${node} for its snapshots` : `waiting for volume ${volume} to be attached or detached`));
      return { requeueAfter: 5000 };
    }
    const control = new EngineControlClient(`${engine.status!.ip}:${engine.status!.port}`, engine.metadata.name ?? '');
    const live = engine.status?.snapshots ?? {};
    for (const s of objects) {
      const name = s.metadata.name ?? '';
      if (s.metadata.deletionTimestamp) {
        // Asked, not read from the engine's status: a snapshot taken moments ago may not be there yet.
        const now = (await control.snapshots(signal)).find((x) => x.name === name);
        if (now && !now.removed) {
          await control.deleteSnapshot(name, signal).catch((err: unknown) => {
            if (!isRemoteNotFound(err)) throw err;
          });
          events.event(s as never, 'Normal', 'Deleted', `deleted snapshot ${name} of volume ${volume}`);
        }
        await letGo(s);
        continue;
      }
      // Ours before anything is taken: a deletion then always comes through here and reaches the volume.
      if (!s.metadata.finalizers?.includes(LONGHORN_FINALIZER)) {
        await store.patch('Snapshot', ns, name, 'merge', { metadata: { finalizers: [...(s.metadata.finalizers ?? []), LONGHORN_FINALIZER] } }).catch(ignoreNotFound);
        continue; // the update brings the object back here
      }
      if (s.spec?.createSnapshot && !live[name] && !s.status?.creationTime) {
        // Asked again, not from the engine's status: an earlier pass may have taken it since that was written.
        if ((await control.snapshots(signal)).some((x) => x.name === name)) continue;
        await control.createSnapshot(name, { ...(s.spec.labels ?? {}) }, signal);
        events.event(s as never, 'Normal', 'Created', `took snapshot ${name} of volume ${volume}`);
        continue; // the engine's status brings it back here with the snapshot listed
      }
      const l = live[name];
      if (!l || l.removed) {
        // Taken once and gone now (purged, or deleted through /v1): the object goes too.
        if (s.status?.creationTime) await store.delete('Snapshot', ns, name).catch(ignoreNotFound);
        continue;
      }
      await mirror(s, l, vol);
    }
    // Attached for this controller's work and none is left: let the volume detach again.
    if (vol.metadata.annotations?.[MAINTENANCE_KEY] !== undefined && !objects.some((s) => pendingNow(s, live))) {
      await store.patch('Volume', ns, volume, 'merge', { metadata: { annotations: { [MAINTENANCE_KEY]: null } } }).catch(ignoreNotFound);
    }
    // Every snapshot of the volume has an object (taken through /v1, or by an export).
    const have = new Set(objects.map((s) => s.metadata.name ?? ''));
    const missing = Object.values(live).filter((l) => l.name !== VOLUME_HEAD && !l.removed && !have.has(l.name));
    // Asked again before creating: the engine's status may still list a snapshot this pass (or the last) deleted.
    const fresh = missing.length > 0 ? new Map((await control.snapshots(signal)).map((x) => [x.name, x])) : new Map();
    for (const l of missing) {
      if (!fresh.get(l.name) || fresh.get(l.name)!.removed) continue;
      try {
        const { object } = await store.create<Snapshot>({
          apiVersion: LONGHORN_API_VERSION,
          kind: 'Snapshot',
          metadata: {
            name: l.name,
            namespace: ns,
            labels: { [SNAPSHOT_VOLUME_LABEL]: volume },
            finalizers: [LONGHORN_FINALIZER],
            ownerReferences: [{ apiVersion: LONGHORN_API_VERSION, kind: 'Volume', name: volume, uid: vol.metadata.uid ?? '' }],
          },
          spec: { volume, createSnapshot: false, labels: { ...l.labels } },
        });
        await mirror(object, l, vol);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
    }
    return undefined;
  };

  /** Whether `s` still needs the engine after this pass (a deletion or creation it has not seen done). */
  function pendingNow(s: RO<Snapshot>, live: Record<string, EngineSnapshotStatus>): boolean {
    const name = s.metadata.name ?? '';
    if (s.metadata.deletionTimestamp) return !!live[name] && !live[name].removed;
    return !!s.spec?.createSnapshot && !s.status?.creationTime && !live[name];
  }

  function engineOf(ns: string, volume: string): RO<Engine> | undefined {
    return engines.list().find((e) => e.metadata.namespace === ns && e.spec?.volumeName === volume && e.status?.currentState === 'running' && !!e.status.ip && !!e.status.port);
  }

  async function mirror(s: RO<Snapshot>, l: EngineSnapshotStatus, vol: RO<Volume>): Promise<void> {
    await setStatus(s, (st) => {
      st.parent = l.parent;
      st.children = { ...l.children };
      st.markRemoved = l.removed;
      st.userCreated = l.usercreated;
      st.creationTime = l.created;
      st.size = Number(l.size);
      st.restoreSize = Number(vol.spec?.size ?? 0);
      st.labels = { ...l.labels };
      st.readyToUse = true;
      st.error = '';
    });
  }

  async function setStatus(s: RO<Snapshot>, f: (st: SnapshotStatus) => void): Promise<void> {
    const before = JSON.stringify(s.status ?? {});
    const next = structuredClone((s.status ?? {}) as SnapshotStatus);
    f(next);
    if (JSON.stringify(next) === before) return;
    await mutateStatus<Snapshot>(store, 'Snapshot', s.metadata.namespace ?? '', s.metadata.name ?? '', f).catch(ignoreNotFound);
  }

  async function letGo(s: RO<Snapshot>): Promise<void> {
    if (!s.metadata.finalizers?.includes(LONGHORN_FINALIZER)) {
      if (!s.metadata.deletionTimestamp) await store.delete('Snapshot', s.metadata.namespace ?? '', s.metadata.name ?? '').catch(ignoreNotFound);
      return;
    }
    const finalizers = s.metadata.finalizers.filter((f) => f !== LONGHORN_FINALIZER);
    await store.patch('Snapshot', s.metadata.namespace ?? '', s.metadata.name ?? '', 'merge', { metadata: { finalizers } }).catch(ignoreNotFound);
    if (!s.metadata.deletionTimestamp) await store.delete('Snapshot', s.metadata.namespace ?? '', s.metadata.name ?? '').catch(ignoreNotFound);
  }

  const controller = new Controller({ name: 'snapshot', workers: 2, reconcile });
  const byVolume = (ns: string | undefined, volume: string | undefined) => {
    if (volume) controller.enqueue(`${ns ?? ''}/${volume}`);
  };
  snapshots.addEventHandler({
    onAdd: (s) => byVolume(s.metadata.namespace, s.spec?.volume),
    onUpdate: (_a, s) => byVolume(s.metadata.namespace, s.spec?.volume),
    onDelete: (s) => byVolume(s.metadata.namespace, s.spec?.volume),
  });
  engines.addEventHandler({
    onAdd: (e) => byVolume(e.metadata.namespace, e.spec?.volumeName),
    onUpdate: (a, e) => {
      if (JSON.stringify(a.status?.snapshots) !== JSON.stringify(e.status?.snapshots) || a.status?.currentState !== e.status?.currentState) byVolume(e.metadata.namespace, e.spec?.volumeName);
    },
  });
  volumes.addEventHandler({ onDelete: (v) => byVolume(v.metadata.namespace, v.metadata.name) });
  return controller;
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}
