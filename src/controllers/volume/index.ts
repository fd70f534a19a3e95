// The Volume controller: owns a volume's engine and replicas and drives them through attach and detach. Per volume:
//   ensureFinalizer → (deleting? delete engine and replicas, then let go) → ensureEngine (its spec.image follows
//   the volume's: this controller is the one writer of the Engine's spec) → markFailures →
//   salvage (all replicas with data failed: take them back, the engine's revision check picks the current ones) →
//   growStopped (offline expansion, expansion.ts: the volume's size goes to the stopped engine and replicas before
//   anything starts them) → cleanupReplicas (failed ones once enough are healthy again, extras) → scheduleReplicas →
//   attach or detach → updateStatus (state, robustness, expansionRequired, conditions Scheduled, Attached and
//   WaitForBackingImage).
//
// A detached volume with a maintenance-attach annotation is attached without a frontend to the node it names
// (snapshot operations and exports of detached volumes), and detached again when the annotation goes. A clone that is
// not completed (src/api/volume.ts clonePending) is never attached with a frontend: a user's attach waits for it.
// An engine running with another disableFrontend than the volume now wants is restarted with it.
//
// Data safety rules: a replica that never held data (no spec.healthyAt) never starts an engine when one that did
// exists — it joins a running engine as WO and is rebuilt; a failed replica is deleted only when the volume has
// `numberOfReplicas` replicas RW again, or when it never held data.

import type { BackingImage } from '../../api/backing-image.js';
import type { Engine } from '../../api/engine.js';
import { DEFAULT_NAMESPACE, type DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import type { Setting } from '../../api/setting-resource.js';
import { clonePending, MAINTENANCE_ATTACH_PREFIX, maintenanceNode, type Volume, type VolumeRobustness, type VolumeState } from '../../api/volume.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { engineNameFor, LONGHORN_FINALIZER } from '../../api/labels.js';
import { getCondition, setCondition } from '../../api/node-contract.js';
import { formatQuantity } from '../../api/quantity.js';
import { provisioningLimits, settingsFrom } from '../common/settings.js';
import { mutateStatus } from '../common/status.js';
import { evictingDisks, nodeIsReady } from '../scheduling.js';
import { Expectations } from './expectations.js';
import { expansionRequired, idle, larger, replicaSizeFor } from './expansion.js';
import { buildEngine, buildReplica } from './objects.js';
import { placeReplica } from './placement.js';
import { failureOf, robustnessEvent, robustnessOf } from './robustness.js';

type RO<T> = DeepReadonly<T>;

export const REPLICA_BY_VOLUME = 'replicaByVolume';
/** This controller's maintenance attach of a detached volume whose replicas are being evicted. */
const EVICTION_ATTACH = `${MAINTENANCE_ATTACH_PREFIX}eviction`;
/** Volumes whose `Scheduled` condition is False (short of replicas), indexed under the value 'short'. */
const SHORT_OF_REPLICAS = 'shortOfReplicas';
/** After this long in `attaching`, the Attached condition says so (the controller keeps trying). */
export const ATTACH_TIMEOUT_MS = 5 * 60_000;
/** Replicas that failed this close together failed in one event (a node or cluster outage). */
const SALVAGE_GROUP_MS = 10_000;
/**
 * A salvage that does not bring a replica back to health (its disk is still failing, say) is retried after this
 * long, doubling up to SALVAGE_MAX_BACKOFF_MS; without it the volume's failed replicas are marked failed and taken
 * back in a tight loop of store writes.
 */
export const SALVAGE_BACKOFF_MS = 10_000;
const SALVAGE_MAX_BACKOFF_MS = 5 * 60_000;
/**
 * A down node fails its replicas only after this long since the controller started: a manager starting after a
 * cluster-wide stop sees every node down until the agents' next heartbeats, and must not fail replicas for that.
 */
const NODE_DOWN_GRACE_MS = 60_000;

export interface VolumeControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  now?: () => Date;
}

interface Outcome {
  state: VolumeState;
  /** Why the volume is not (yet) where it should be; empty when it is. */
  waiting: string;
  scheduled: { ok: boolean; message: string };
}

export function volumeController(opts: VolumeControllerOptions): Controller {
  const { store, informers, events } = opts;
  const nowDate = opts.now ?? (() => new Date());
  const now = () => nowDate().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const settings = settingsFrom(informers);
  const volumes = informers.informerFor<Volume>('Volume');
  const engines = informers.informerFor<Engine>('Engine');
  const replicas = informers.informerFor<Replica>('Replica');
  const nodes = informers.informerFor<Node>('Node');
  const images = informers.informerFor<BackingImage>('BackingImage');
  replicas.addIndex(REPLICA_BY_VOLUME, (r) => (r.spec?.volumeName ? [r.spec.volumeName] : []));
  volumes.addIndex(SHORT_OF_REPLICAS, (v) => (v.status?.conditions?.some((c) => c.type === 'Scheduled' && c.status === 'False') ? ['short'] : []));
  const settingsInformer = informers.informerFor<Setting>('Setting');
  const startedAt = nowDate().getTime();
  const created = new Expectations();
  const deleted = new Expectations();
  /** Per volume key: when the next salvage may run, and the wait after it. Cleared once a replica is healthy. */
  const salvages = new Map<string, { notBefore: number; nextDelayMs: number }>();

  // Nodes live in the Longhorn namespace; a cluster-scoped one (a real kubelet's) is accepted too.
  const nodeReady = (name: string | undefined) => {
    const n = nodes.get(DEFAULT_NAMESPACE, name ?? '') ?? nodes.get('', name ?? '');
    return !!n && nodeIsReady(n);
  };
  const patchReplica = (r: RO<Replica>, spec: Partial<Replica['spec']>) =>
    store.patch('Replica', r.metadata.namespace ?? '', r.metadata.name ?? '', 'merge', { spec }).catch(ignoreNotFound);
  const patchEngine = (e: RO<Engine>, spec: Partial<Engine['spec']>) =>
    store.patch('Engine', e.metadata.namespace ?? '', e.metadata.name ?? '', 'merge', { spec }).catch(ignoreNotFound);

  const reconcile = async (key: string) => {
    const [ns = '', name = ''] = key.split('/');
    const stored = volumes.get(ns, name);
    // A user's attach of a clone that is not completed is held back (cloneView hides it), whatever the node: the
    // copy's own attach may be on that very node, and must not pass for the user's.
    const cloning = cloneView(stored);
    const v = maintenanceView(cloning);
    if (!v) {
      salvages.delete(key);
      return;
    }
    const mine = replicas.byIndex(REPLICA_BY_VOLUME, name).filter((r) => r.metadata.namespace === ns);
    const engine = engines.get(ns, engineNameFor(name));
    if (v.metadata.deletionTimestamp) return finalize(v, engine, mine);
    if (!(v.metadata.finalizers ?? []).includes(LONGHORN_FINALIZER)) {
      await store.patch('Volume', ns, name, 'merge', { metadata: { finalizers: [...(v.metadata.finalizers ?? []), LONGHORN_FINALIZER], resourceVersion: v.metadata.resourceVersion } });
      return;
    }
    if (!engine) {
      await store.create(buildEngine(v)).catch((err: unknown) => {
        if (!isAlreadyExists(err)) throw err;
      });
      return;
    }
    if (v.spec?.image && engine.spec?.image !== v.spec.image) await patchEngine(engine, { image: v.spec.image });
    // Until the cache shows the replicas this controller created or deleted, counting them would be wrong.
    const names = new Set(mine.filter((r) => !r.metadata.deletionTimestamp).map((r) => r.metadata.name ?? ''));
    if (!created.satisfied(key, (n) => names.has(n)) || !deleted.satisfied(key, (n) => !names.has(n))) return { requeueAfter: 500 };
    // A replica just failed, or a salvage waits out its backoff: the reconcile ends early, but the volume's
    // robustness must say so now (a volume whose only replica failed is faulted, not "healthy" for minutes).
    if (await markFailures(v, engine, mine)) return writeRobustness(v, engine, mine);
    const salvaged = await salvage(key, v, mine);
    if (salvaged !== false) {
      if (salvaged !== true) await writeRobustness(v, engine, mine);
      return salvaged === true ? undefined : salvaged;
    }
    if (await markHealthy(key, engine, mine)) return;
    // Before anything below starts an instance: the writes bring the volume back with the new sizes in the cache.
    if (await growStopped(v, engine, mine)) return;
    // The disks being emptied, once per reconcile: cleanup, the attach for an eviction and placement all ask.
    const evicting = evictingDisks(nodes.list());
    await cleanupReplicas(v, engine, mine, evicting);
    if (stored && (await attachForEviction(stored, mine, evicting))) return;
    const scheduled = await scheduleReplicas(v, mine, evicting);
    let outcome = v.spec?.nodeID ? await attach(v, engine, mine, scheduled) : await detach(v, engine, mine, scheduled);
    if (stored?.spec?.nodeID && cloning !== stored) {
      // A user's attach held back until the clone is completed: say so (it is retried on the clone's status change).
      const cs = stored.status?.cloneStatus;
      outcome = { ...outcome, state: 'attaching', waiting: `the volume is a clone of ${stored.spec.dataSource} that is not completed (${cs?.state || 'not started'}${cs?.message ? `: ${cs.message}` : ''}); it attaches to node ${stored.spec.nodeID} with its frontend once it is` };
    }
    await updateStatus(v, engine, mine, outcome);
    return outcome.state === 'attaching' || outcome.state === 'detaching' ? { requeueAfter: 2000 } : undefined;
  };

  const live = (mine: readonly RO<Replica>[]) => mine.filter((r) => !r.spec?.failedAt && !r.metadata.deletionTimestamp);
  const engineRunning = (e: RO<Engine>) => e.spec?.desireState === 'running' && e.status?.currentState === 'running';

  /** Marks replicas failed (they stop, and are left out of the engine); true when something changed. */
  async function markFailures(v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[]): Promise<boolean> {
    let changed = false;
    const errors = ((e.status as Record<string, unknown> | undefined)?.['replicaErrorMap'] ?? {}) as Record<string, string>;
    for (const r of live(mine)) {
      const why = failureOf({
        replica: r,
        engineRunning: engineRunning(e),
        engineMode: e.status?.replicaModeMap?.[r.metadata.name ?? ''],
        engineError: errors[r.metadata.name ?? ''],
        nodeReady: nodeReady(r.spec?.nodeID) || nowDate().getTime() - startedAt < NODE_DOWN_GRACE_MS,
        needed: !!v.spec?.nodeID,
      });
      if (!why) continue;
      await patchReplica(r, { failedAt: now(), lastFailedAt: now(), desireState: 'stopped' });
      events.event(v as never, 'Warning', 'ReplicaFailed', `replica ${r.metadata.name} on node ${r.spec?.nodeID} failed: ${why}`);
      changed = true;
    }
    return changed;
  }

  /**
   * When no live replica has ever held data but failed ones have, the ones that failed last are taken back
   * (Longhorn's auto-salvage): deleting them would lose the volume. Only the last group (failed within
   * SALVAGE_GROUP_MS of the newest failure) qualifies: a replica that failed earlier missed the writes that came
   * after, and must not be the only one the engine starts from. Every member of that group must be on a Ready node;
   * the engine's revision check then starts only those with the newest data. A salvage that fails again waits
   * (SALVAGE_BACKOFF_MS, doubling): the result then asks for a requeue.
   */
  async function salvage(key: string, v: RO<Volume>, mine: readonly RO<Replica>[]): Promise<boolean | { requeueAfter: number }> {
    if (live(mine).some((r) => r.spec?.healthyAt)) return false;
    const failed = mine.filter((r) => r.spec?.failedAt && r.spec.healthyAt && !r.metadata.deletionTimestamp);
    if (failed.length === 0) return false;
    const newest = Math.max(...failed.map((r) => Date.parse(r.spec?.failedAt ?? '')));
    const last = failed.filter((r) => Date.parse(r.spec?.failedAt ?? '') >= newest - SALVAGE_GROUP_MS);
    if (!last.every((r) => nodeReady(r.spec?.nodeID))) return false;
    const t = nowDate().getTime();
    const backoff = salvages.get(key);
    if (backoff && t < backoff.notBefore) return { requeueAfter: backoff.notBefore - t };
    const delay = backoff?.nextDelayMs ?? SALVAGE_BACKOFF_MS;
    salvages.set(key, { notBefore: t + delay, nextDelayMs: Math.min(SALVAGE_MAX_BACKOFF_MS, delay * 2) });
    for (const r of last) await patchReplica(r, { failedAt: '' });
    const again = backoff ? ` (again; the next try waits ${Math.round(delay / 1000)} s)` : '';
    events.event(v as never, 'Warning', 'AutoSalvaged', `every replica with data had failed; taking back the last to fail: ${last.map((r) => r.metadata.name).join(', ')}${again}`);
    return true;
  }

  /**
   * Offline expansion (expansion.ts): while the engine is idle, the volume's `spec.size` goes to the engine and to
   * every idle replica; while it is not, idle replicas get the engine's size (they can only join it at that size).
   * Only ever grows a size. True when something was written.
   */
  async function growStopped(v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[]): Promise<boolean> {
    const size = v.spec?.size ?? '0';
    const target = replicaSizeFor(size, e);
    let changed = false;
    const from = e.spec?.volumeSize ?? '0';
    if (idle(e) && larger(size, from)) {
      await patchEngine(e, { volumeSize: size });
      events.event(v as never, 'Normal', 'Expanding', `volume ${v.metadata.name} grows from ${formatQuantity(Number(from))} to ${formatQuantity(Number(size))}; its replicas grow when they next start`);
      changed = true;
    }
    for (const r of mine) {
      if (r.metadata.deletionTimestamp || !idle(r) || !larger(target, r.spec?.volumeSize)) continue;
      await patchReplica(r, { volumeSize: target });
      changed = true;
    }
    return changed;
  }

  /** Records when replicas are RW in the running engine: from then on they hold the volume's data. */
  async function markHealthy(key: string, e: RO<Engine>, mine: readonly RO<Replica>[]): Promise<boolean> {
    if (!engineRunning(e)) return false;
    const rw = live(mine).filter((r) => e.status?.replicaModeMap?.[r.metadata.name ?? ''] === 'RW');
    // A replica RW in a running engine ends a salvage episode: the next one starts without backoff.
    if (rw.length > 0) salvages.delete(key);
    let changed = false;
    for (const r of rw) {
      if (r.spec?.healthyAt) continue;
      await patchReplica(r, { healthyAt: now(), lastHealthyAt: now() });
      changed = true;
    }
    return changed;
  }

  async function cleanupReplicas(v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[], evicting: ReadonlySet<string>) {
    const key = `${v.metadata.namespace ?? ''}/${v.metadata.name ?? ''}`;
    const remove = async (r: RO<Replica>) => {
      deleted.expect(key, r.metadata.name ?? '');
      await store.delete('Replica', r.metadata.namespace ?? '', r.metadata.name ?? '').catch(ignoreNotFound);
    };
    const wanted = v.spec?.numberOfReplicas ?? 3;
    const modes = e.status?.replicaModeMap ?? {};
    const rw = live(mine).filter((r) => engineRunning(e) && modes[r.metadata.name ?? ''] === 'RW');
    // Replicas on a disk or node being evicted go once the others suffice without them: numberOfReplicas RW in the
    // running engine, or (detached) that many that held data. Until then they serve like any other.
    const leaving = live(mine).filter((r) => evicting.has(r.spec?.diskID ?? ''));
    const staying = live(mine).filter((r) => !evicting.has(r.spec?.diskID ?? ''));
    if (leaving.length > 0) {
      const enough = v.spec?.nodeID ? staying.filter((r) => rw.includes(r)).length >= wanted : staying.length >= wanted && staying.every((r) => r.spec?.healthyAt);
      // One that never held data (a volume never attached) waits for nothing but its replacement.
      const empty = !v.spec?.nodeID && !mine.some((r) => r.spec?.healthyAt) && staying.length >= wanted;
      for (const r of enough || empty ? leaving : []) {
        await remove(r);
        events.event(v as never, 'Normal', 'ReplicaEvicted', `deleted replica ${r.metadata.name} on node ${r.spec?.nodeID}: its disk is being evicted and ${wanted} other replica(s) hold the data`);
      }
    }
    const haveAll = rw.length >= wanted || (!v.spec?.nodeID && live(mine).length >= wanted && live(mine).every((r) => r.spec?.healthyAt));
    for (const r of mine) {
      if (!r.spec?.failedAt || r.metadata.deletionTimestamp) continue;
      if (!haveAll && r.spec.healthyAt) continue;
      await remove(r);
      events.event(v as never, 'Normal', 'ReplicaDeleted', `deleted failed replica ${r.metadata.name}: ${r.spec.healthyAt ? `${rw.length} healthy replicas again` : 'it never held data'}`);
    }
    // Extras after numberOfReplicas went down: the ones not RW go first, then the ones that never held data. Replicas
    // being evicted are not counted: their replacements are not extras.
    const extra = staying.length - wanted;
    if (extra > 0 && (!v.spec?.nodeID || rw.length >= wanted)) {
      const worth = (r: RO<Replica>) => (modes[r.metadata.name ?? ''] === 'RW' ? 2 : 0) + (r.spec?.healthyAt ? 1 : 0);
      const order = [...staying].sort((a, b) => worth(a) - worth(b));
      for (const r of order.slice(0, extra)) {
        await remove(r);
        events.event(v as never, 'Normal', 'ReplicaDeleted', `deleted replica ${r.metadata.name}: the volume wants ${wanted}`);
      }
    }
  }

  /**
   * A detached volume with replicas on a disk being evicted, and a replacement waiting for their data, is attached
   * without a frontend (a maintenance attach, src/api/volume.ts) on the node of a replica that stays, so that the
   * engine rebuilds the replacement and they can go; released when none is left, or no replacement is (one that
   * cannot be placed holds nothing attached). True when the annotation changed (the write brings the volume back).
   */
  async function attachForEviction(stored: RO<Volume>, mine: readonly RO<Replica>[], evicting: ReadonlySet<string>): Promise<boolean> {
    const leaving = live(mine).filter((r) => evicting.has(r.spec?.diskID ?? ''));
    const staying = live(mine).filter((r) => !evicting.has(r.spec?.diskID ?? ''));
    const current = stored.metadata.annotations?.[EVICTION_ATTACH];
    let node: string | undefined;
    const waiting = staying.some((r) => !r.spec?.healthyAt);
    if (!stored.spec?.nodeID && leaving.some((r) => r.spec?.healthyAt) && waiting && !clonePending(stored)) {
      const candidates = [...staying.filter((r) => r.spec?.healthyAt), ...staying].map((r) => r.spec?.nodeID ?? '').filter((n) => n && nodeReady(n));
      node = current && candidates.includes(current) ? current : candidates[0];
    }
    if (node === current) return false;
    await store.patch('Volume', stored.metadata.namespace ?? '', stored.metadata.name ?? '', 'merge', { metadata: { annotations: { [EVICTION_ATTACH]: node ?? null } } }).catch(ignoreNotFound);
    if (node) events.event(stored as never, 'Normal', 'EvictionAttach', `attaching without a frontend on node ${node} to move ${leaving.map((r) => r.metadata.name).join(', ')} off the disk being evicted`);
    return true;
  }

  /** Creates the replicas the volume lacks, one placement at a time. */
  async function scheduleReplicas(v: RO<Volume>, mine: readonly RO<Replica>[], evicting: ReadonlySet<string>): Promise<Outcome['scheduled']> {
    const wanted = v.spec?.numberOfReplicas ?? 3;
    // A replica on a disk being evicted is replaced (and goes once its replacement holds the data, cleanupReplicas).
    const siblings = live(mine).filter((r) => !evicting.has(r.spec?.diskID ?? ''));
    const size = Number(v.spec?.size ?? '0');
    const bi = v.spec?.backingImage ? images.get(v.metadata.namespace ?? '', v.spec.backingImage) : undefined;
    // Allocated bytes of a ready copy (a sparse image takes less than its size); unknown until the first copy is ready.
    const biBytes = bi?.status?.realSize || bi?.status?.size || 0;
    const backingImage = bi && biBytes > 0 ? { name: bi.metadata.name ?? '', bytes: biBytes, disks: new Set(Object.keys(bi.spec?.diskFileSpecMap ?? {})) } : undefined;
    let count = 0;
    while (siblings.length < wanted) {
      const p = placeReplica({
        nodes: nodes.list(),
        allReplicas: replicas.list(),
        siblings,
        size,
        nodeSelector: v.spec?.nodeSelector,
        diskSelector: v.spec?.diskSelector,
        softAntiAffinity: settings.bool('replica-soft-anti-affinity'),
        limits: provisioningLimits(settings),
        backingImage,
      });
      if ('reason' in p) {
        const message = `${wanted - siblings.length} of ${wanted} replicas cannot be scheduled: ${p.reason}`;
        return { ok: false, message };
      }
      const r = buildReplica(v, p.disk, v.spec?.nodeID ? 'running' : 'stopped', replicaSizeFor(v.spec?.size ?? '0', engines.get(v.metadata.namespace ?? '', engineNameFor(v.metadata.name ?? ''))));
      created.expect(`${v.metadata.namespace ?? ''}/${v.metadata.name ?? ''}`, r.metadata.name ?? '');
      const made = await store.create<Replica>(r);
      siblings.push(made.object as RO<Replica>);
      count++;
      events.event(v as never, 'Normal', 'ReplicaScheduled', `replica ${r.metadata.name} on node ${p.disk.nodeName}, disk ${p.disk.diskName} (${p.disk.diskPath})`);
    }
    return { ok: true, message: count > 0 ? `scheduled ${count} replica(s)` : '' };
  }

  async function attach(v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[], scheduled: Outcome['scheduled']): Promise<Outcome> {
    const target = v.spec?.nodeID ?? '';
    const state = (waiting: string): Outcome => ({ state: 'attaching', waiting, scheduled });
    if (!nodeReady(target)) return state(`node ${target} is not Ready`);
    // Moving: the engine stops on its old node first.
    if (e.spec?.nodeID && e.spec.nodeID !== target) {
      if (e.spec.desireState === 'running') await patchEngine(e, { desireState: 'stopped' });
      if (e.status?.currentState && e.status.currentState !== 'stopped' && e.status.currentState !== 'error') return state(`the engine is stopping on node ${e.spec.nodeID}`);
      await patchEngine(e, { nodeID: target });
      return state(`moving the engine to node ${target}`);
    }
    const ok = live(mine);
    // A replica starts only at the size it must have (growStopped gives it that size once it is stopped).
    const size = replicaSizeFor(v.spec?.size ?? '0', e);
    for (const r of ok) if (r.spec?.desireState !== 'running' && r.spec?.volumeSize === size) await patchReplica(r, { desireState: 'running', engineName: e.metadata.name ?? '' });
    for (const r of mine) if (r.spec?.failedAt && r.spec.desireState === 'running') await patchReplica(r, { desireState: 'stopped' });
    const addressOf = (r: RO<Replica>) => (r.status?.currentState === 'running' && r.status.ip && r.status.port ? `${r.status.ip}:${r.status.port}` : undefined);

    const frontendNone = v.spec?.disableFrontend || !v.spec?.frontend;
    // Attached without a frontend for maintenance (or a clone's copy), now wanted with one, or the other way round:
    // the engine restarts with the volume's setting.
    if (e.spec?.desireState === 'running' && (e.spec.disableFrontend ?? false) !== (v.spec?.disableFrontend ?? false)) {
      await patchEngine(e, { desireState: 'stopped' });
      return state(`restarting the engine on node ${target} ${v.spec?.disableFrontend ? 'without' : 'with'} its frontend`);
    }
    if (e.spec?.desireState !== 'running' && (e.status?.currentState === 'running' || e.status?.currentState === 'stopping')) {
      return state(`the engine on node ${target} is stopping before it starts again`);
    }
    if (e.spec?.desireState !== 'running' || !engineRunning(e)) {
      // (Re)starting: the engine starts with the replicas that hold data (a brand-new volume: all of them), at the
      // addresses they listen on now — after a node or cluster restart those are new ports, and replicas that
      // failed since the last start are left out.
      const everHealthy = mine.some((r) => r.spec?.healthyAt);
      const initial = everHealthy ? ok.filter((r) => r.spec?.healthyAt) : ok;
      if (initial.length === 0) {
        return state(everHealthy ? 'every replica that holds data has failed and none can be taken back: their nodes are down' : 'no replica is scheduled yet');
      }
      // A replica that went on running at its old size while the volume grew is stopped, grown and started again.
      const stale = initial.filter((r) => r.spec?.volumeSize !== size);
      if (stale.length > 0) {
        for (const r of stale) if (r.spec?.desireState === 'running') await patchReplica(r, { desireState: 'stopped' });
        return state(`replicas ${stale.map((r) => r.metadata.name).join(', ')} restart at the volume's size ${size} bytes`);
      }
      const notUp = initial.filter((r) => !addressOf(r));
      if (notUp.length > 0) return state(notUp.map((r) => `replica ${r.metadata.name} on node ${r.spec?.nodeID}: ${replicaProblem(r)}`).join('; '));
      const map = Object.fromEntries(initial.map((r) => [r.metadata.name ?? '', addressOf(r)!]));
      const cur = e.spec?.replicaAddressMap ?? {};
      const gone = Object.fromEntries(Object.keys(cur).filter((n) => !(n in map)).map((n) => [n, null]));
      if (e.spec?.desireState !== 'running') {
        await patchEngine(e, {
          nodeID: target,
          desireState: 'running',
          replicaAddressMap: { ...map, ...gone } as Record<string, string>,
          volumeSize: size,
          frontend: v.spec?.frontend ?? 'blockdev',
          disableFrontend: v.spec?.disableFrontend ?? false,
        });
        events.event(v as never, 'Normal', 'Attaching', `starting the engine on node ${target} with replicas ${Object.keys(map).join(', ')}`);
        return state(`the engine is starting on node ${target}`);
      }
      if (JSON.stringify(sorted(map)) !== JSON.stringify(sorted(cur))) await patchEngine(e, { replicaAddressMap: { ...map, ...gone } as Record<string, string> });
      const why = e.status?.conditions?.find((c) => c.type === 'InstanceReady')?.message;
      return state(`the engine on node ${target} is ${e.status?.currentState || 'starting'}${why ? `: ${why}` : ''}`);
    }
    if (!e.status?.endpoint && !frontendNone) return state(`the engine on node ${target} has no frontend endpoint yet`);
    // Attached: the engine should use every live replica that runs; new ones are rebuilt as they join.
    const want: Record<string, string> = {};
    for (const r of ok) {
      const a = addressOf(r);
      if (a) want[r.metadata.name ?? ''] = a;
    }
    const cur = e.spec.replicaAddressMap ?? {};
    if (JSON.stringify(sorted(want)) !== JSON.stringify(sorted(cur))) {
      // A merge patch keeps keys it does not mention: removed replicas are set to null.
      const gone = Object.fromEntries(Object.keys(cur).filter((n) => !(n in want)).map((n) => [n, null]));
      await patchEngine(e, { replicaAddressMap: { ...want, ...gone } as Record<string, string> });
    }
    return { state: 'attached', waiting: '', scheduled };
  }

  async function detach(v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[], scheduled: Outcome['scheduled']): Promise<Outcome> {
    const wasAttached = v.status?.state === 'attached' || v.status?.state === 'attaching' || v.status?.state === 'detaching';
    if (e.spec?.desireState === 'running') await patchEngine(e, { desireState: 'stopped' });
    const st = e.status?.currentState;
    if (st === 'running' || st === 'starting' || st === 'stopping') return { state: 'detaching', waiting: `the engine on node ${e.spec?.nodeID} is stopping`, scheduled };
    if (st === 'unknown') return { state: 'detaching', waiting: `the engine's node ${e.spec?.nodeID} is down; waiting for it to come back`, scheduled };
    for (const r of mine) if (r.spec?.desireState === 'running') await patchReplica(r, { desireState: 'stopped' });
    const stopping = live(mine).filter((r) => r.status?.currentState === 'running' || r.status?.currentState === 'starting');
    if (stopping.length > 0) return { state: 'detaching', waiting: `replicas ${stopping.map((r) => r.metadata.name).join(', ')} are stopping`, scheduled };
    // Created once every replica that can be placed exists: one or more that cannot (the Scheduled condition says
    // why) do not keep an attachable volume "creating".
    const count = live(mine).length;
    const created = count >= (v.spec?.numberOfReplicas ?? 3) || (!scheduled.ok && count > 0);
    return { state: !wasAttached && !created && v.status?.state !== 'detached' ? 'creating' : 'detached', waiting: '', scheduled };
  }

  const robustnessInputs = (v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[]) => ({
    wanted: v.spec?.numberOfReplicas ?? 3,
    modes: e.status?.replicaModeMap ?? {},
    liveReplicas: live(mine).map((r) => r.metadata.name ?? ''),
  });
  const robustnessNow = (v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[], attached: boolean) => robustnessOf({ attached, madeReplicas: mine.length, ...robustnessInputs(v, e, mine) });
  /** Records a change of robustness (degraded, faulted, healthy again) as an event of the volume. */
  const noteRobustness = (v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[], from: VolumeRobustness | '' | undefined, to: VolumeRobustness) => {
    const processStates = Object.fromEntries(mine.map((r) => [r.metadata.name ?? '', r.status?.currentState ?? '']));
    const ev = robustnessEvent({ from, to, ...robustnessInputs(v, e, mine), processStates });
    if (ev) events.event(v as never, ev.type, ev.reason, ev.message);
  };

  /** Only the robustness, for a reconcile that ends before the whole status is worked out. */
  async function writeRobustness(v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[]): Promise<void> {
    // An engine that is not running (its node down, its manager restarting) says nothing about the replicas' modes.
    const robustness = robustnessNow(v, e, mine, v.status?.state === 'attached' && engineRunning(e));
    if (v.status?.robustness === robustness) return;
    await mutateStatus<Volume>(store, 'Volume', v.metadata.namespace ?? '', v.metadata.name ?? '', (st) => {
      if (robustness === 'degraded' && st.robustness !== 'degraded') st.lastDegradedAt = now();
      noteRobustness(v, e, mine, st.robustness, robustness);
      st.robustness = robustness;
    });
  }

  async function updateStatus(v: RO<Volume>, e: RO<Engine>, mine: readonly RO<Replica>[], o: Outcome) {
    const attached = o.state === 'attached';
    const robustness = robustnessNow(v, e, mine, attached);
    await mutateStatus<Volume>(store, 'Volume', v.metadata.namespace ?? '', v.metadata.name ?? '', (st) => {
      const t = now();
      if (st.state !== o.state) events.event(v as never, 'Normal', stateReason(o.state), `volume is ${o.state}${o.waiting ? `: ${o.waiting}` : ''}`);
      const since = st.state === o.state ? Date.parse(getCondition(st.conditions, 'Attached')?.lastTransitionTime ?? t) : Date.parse(t);
      st.state = o.state;
      noteRobustness(v, e, mine, st.robustness, robustness);
      st.robustness = robustness;
      if (robustness === 'degraded' && v.status?.robustness !== 'degraded') st.lastDegradedAt = t;
      st.currentNodeID = attached ? (v.spec?.nodeID ?? '') : o.state === 'detached' || o.state === 'creating' ? '' : (st.currentNodeID ?? '');
      st.currentEngineNodeID = attached ? (e.spec?.nodeID ?? '') : '';
      st.frontendDisabled = v.spec?.disableFrontend ?? false;
      const expanding = expansionRequired(v.spec?.size ?? '0', e, live(mine));
      if (st.expansionRequired && !expanding) {
        const size = formatQuantity(Number(v.spec?.size ?? '0'));
        events.event(v as never, 'Normal', 'Expanded', engineRunning(e) ? `volume ${v.metadata.name} runs at its new size ${size}` : `volume ${v.metadata.name} is ${size}: it has never held data, its replicas start at that size`);
      }
      st.expansionRequired = expanding;
      // Stratum additions: where the attached volume is served (the device path or NBD URI, and the NBD URI).
      const ext = st as Record<string, unknown>;
      const engineExt = (e.status ?? {}) as Record<string, unknown>;
      ext['endpoint'] = attached ? (e.status?.endpoint ?? '') : '';
      ext['nbdEndpoint'] = attached ? String(engineExt['nbdEndpoint'] ?? '') : '';
      let conds = setCondition(st.conditions, { type: 'Scheduled', status: o.scheduled.ok ? 'True' : 'False', reason: o.scheduled.ok ? '' : 'ReplicaSchedulingFailure', message: o.scheduled.ok ? '' : o.scheduled.message }, t);
      const late = o.state === 'attaching' && nowDate().getTime() - since > ATTACH_TIMEOUT_MS;
      const reason = attached ? 'Attached' : o.state === 'attaching' ? (late ? 'AttachTimeout' : 'Attaching') : o.state === 'detaching' ? 'Detaching' : 'Detached';
      conds = setCondition(conds, {
        type: 'Attached',
        status: attached ? 'True' : 'False',
        reason,
        message: late ? `not attached after ${ATTACH_TIMEOUT_MS / 60_000} minutes: ${o.waiting}` : o.waiting,
      }, t, { phaseOf: (r) => (r === 'AttachTimeout' ? 'Attaching' : r) });
      // Longhorn's WaitForBackingImage on the volume: True while a replica waits for its disk's copy of the image
      // (the replica gate keeps the condition on each replica), False once none does.
      if (v.spec?.backingImage) {
        const waiting = mine.map((r) => r.status?.conditions?.find((c) => c.type === 'WaitForBackingImage' && c.status === 'True')).find((c) => c !== undefined);
        conds = setCondition(conds, { type: 'WaitForBackingImage', status: waiting ? 'True' : 'False', reason: waiting ? 'Waiting' : '', message: waiting?.message ?? '' }, t);
      }
      st.conditions = conds;
    });
  }

  async function finalize(v: RO<Volume>, e: RO<Engine> | undefined, mine: readonly RO<Replica>[]) {
    const ns = v.metadata.namespace ?? '';
    if (e) {
      // Stop the engine before its replicas disappear under it.
      if (e.spec?.desireState === 'running') await patchEngine(e, { desireState: 'stopped' });
      const st = e.status?.currentState;
      if (st === 'running' || st === 'starting') return { requeueAfter: 1000 };
      await store.delete('Engine', ns, e.metadata.name ?? '').catch(ignoreNotFound);
    }
    for (const r of mine) if (!r.metadata.deletionTimestamp) await store.delete('Replica', ns, r.metadata.name ?? '').catch(ignoreNotFound);
    if (mine.length > 0 || e) return { requeueAfter: 1000 };
    const finalizers = (v.metadata.finalizers ?? []).filter((f) => f !== LONGHORN_FINALIZER);
    await store.patch('Volume', ns, v.metadata.name ?? '', 'merge', { metadata: { finalizers, resourceVersion: v.metadata.resourceVersion } }).catch(ignoreNotFound);
    return undefined;
  }

  const controller = new Controller({ name: 'volume', workers: 4, reconcile });
  volumes.addEventHandler({ onAdd: (o) => controller.enqueueObject(o), onUpdate: (_a, b) => controller.enqueueObject(b) });
  const byVolume = (o: RO<Replica> | RO<Engine>) => {
    const vol = o.spec?.volumeName;
    if (vol) controller.enqueue(`${o.metadata.namespace ?? ''}/${vol}`);
  };
  replicas.addEventHandler({ onAdd: byVolume, onUpdate: (_a, b) => byVolume(b), onDelete: byVolume });
  engines.addEventHandler({ onAdd: byVolume, onUpdate: (_a, b) => byVolume(b), onDelete: byVolume });
  // A volume short of replicas gets another try when room may have appeared: a node or disk changed (space freed,
  // scheduling enabled, a disk added), its image's copies or size changed, or soft anti-affinity was turned on.
  const retryShort = (image?: string) => {
    for (const v of volumes.byIndex(SHORT_OF_REPLICAS, 'short')) if (image === undefined || v.spec?.backingImage === image) controller.enqueueObject(v);
  };
  // An eviction asked for or called off on a node or disk: the volumes with replicas there.
  const evictionChanged = (a: RO<Node>, b: RO<Node>) => {
    if ([...evictingDisks([a])].join() === [...evictingDisks([b])].join()) return;
    for (const r of replicas.list()) if (r.spec?.nodeID === b.metadata.name) byVolume(r);
  };
  nodes.addEventHandler({
    onAdd: () => retryShort(),
    onUpdate: (a, b) => {
      retryShort();
      evictionChanged(a, b);
    },
  });
  images.addEventHandler({ onUpdate: (_a, b) => retryShort(b.metadata.name ?? '') });
  const placementSettings = new Set(['replica-soft-anti-affinity', 'storage-over-provisioning-percentage', 'storage-minimal-available-percentage']);
  settingsInformer.addEventHandler({ onUpdate: (_a, b) => placementSettings.has(b.metadata.name ?? '') && retryShort() });
  return controller;
}

/**
 * A clone that is not completed is seen as detached (its own maintenance attach, without a frontend, does the copy):
 * a user's attach waits. Only this controller's view changes.
 */
function cloneView(v: RO<Volume> | undefined): RO<Volume> | undefined {
  if (!v || !v.spec?.nodeID || v.metadata.deletionTimestamp || !clonePending(v)) return v;
  return { ...v, spec: { ...v.spec, nodeID: '' } };
}

/**
 * A detached volume with a maintenance-attach annotation (src/api/volume.ts) is handled as if attached to that node
 * without a frontend. Only this controller's view changes: the spec is never written back from it.
 */
function maintenanceView(v: RO<Volume> | undefined): RO<Volume> | undefined {
  if (!v || v.spec?.nodeID || v.metadata.deletionTimestamp) return v;
  const node = maintenanceNode(v.metadata.annotations);
  if (!node) return v;
  return { ...v, spec: { ...v.spec, nodeID: node, disableFrontend: true } };
}

function replicaProblem(r: RO<Replica>): string {
  const conds = r.status?.conditions ?? [];
  const wait = conds.find((c) => c.type === 'WaitForBackingImage' && c.status === 'True');
  if (wait) return wait.message ?? 'waiting for its backing image copy';
  const inst = conds.find((c) => c.type === 'InstanceReady' && c.status === 'False');
  return inst?.message || `its process is ${r.status?.currentState || 'not started'}`;
}

function stateReason(s: VolumeState): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function sorted(m: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(m).sort(([a], [b]) => a.localeCompare(b));
}


function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}
