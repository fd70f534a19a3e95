// The volume-clone controller: fills a volume created with `spec.dataSource` (vol://<volume> or
// snap://<volume>/<snapshot>, Longhorn's volume clone) from its source, and keeps `status.cloneStatus`. Per clone:
//   completed? release (its own maintenance attach, the source's) → initiate (cloneStatus initiated, the snapshot
//   named: the given one, or for vol:// a fresh one of the source, `clone-<clone uid>`) → backoff (a failed attempt
//   waits before the next: 5 s doubling to 5 min) → sourceEngine (the source's running engine and one of its RW
//   replicas; a detached source is attached without a frontend for it) → sourceSnapshot (exists; for vol:// taken
//   now) → cloneEngine (the clone's engine, attached without a frontend on the source's node) → copy (the clone's
//   engine reads the snapshot's written ranges from the source replica and writes them to every replica: engine
//   clone.ts) → completed (the fresh vol:// snapshot is deleted from the source; the attaches are released).
// A clone deleted before it completed leaves no snapshot behind: fresh snapshots labelled for a clone that is gone
// (or completed) are deleted whenever their source's engine runs.
// The volume controller keeps a clone from attaching with a frontend until it is completed (src/api/volume.ts
// clonePending). The source keeps serving I/O: the copy reads a frozen snapshot, never the source's head.

import type { Engine } from '../../api/engine.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import { clonePending, MAINTENANCE_ATTACH_PREFIX, parseVolumeDataSource, type Volume, type VolumeCloneStatus } from '../../api/volume.js';
import type { SnapshotInfo } from '../../replica/index.js';
import type { CloneProgress } from '../../engine/clone.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { errorMessage } from '../../controller-kit/log.js';
import { isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { isRemoteNotFound } from '../common/http-json.js';
import { mutateStatus } from '../common/status.js';
import { EngineControlClient } from '../instance-manager/client.js';

type RO<T> = DeepReadonly<T>;

/** The clone's own maintenance attach (one per volume), and the one it puts on its source (one per clone). */
const SELF_KEY = `${MAINTENANCE_ATTACH_PREFIX}clone`;
const SOURCE_KEY_PREFIX = `${MAINTENANCE_ATTACH_PREFIX}clone-`;
const sourceKeyOf = (clone: RO<Volume>) => `${SOURCE_KEY_PREFIX}${(clone.metadata.uid ?? '').slice(0, 8)}`;
/** The label on the snapshot a vol:// clone takes of its source: the clone's name. */
export const FOR_CLONING_LABEL = 'longhorn.io/for-cloning-volume';
/** The snapshot a vol:// clone takes of its source. */
export const freshSnapshotName = (clone: RO<Volume>) => `clone-${clone.metadata.uid ?? clone.metadata.name ?? ''}`;

export const CLONE_BACKOFF_MIN_MS = 5000;
export const CLONE_BACKOFF_MAX_MS = 5 * 60_000;
const POLL_MS = 2000;

/** What the controller asks of an engine's control API (the instance manager's; a fake in unit tests). */
export interface CloneEngineApi {
  snapshots(signal?: AbortSignal): Promise<SnapshotInfo[]>;
  createSnapshot(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<unknown>;
  deleteSnapshot(name: string, signal?: AbortSignal): Promise<unknown>;
  startClone(req: { sourceVolume: string; snapshot: string; sourceSize: number; replicaName: string; replicaAddress: string }, signal?: AbortSignal): Promise<CloneProgress>;
  /** Rejects with a remote 404 (isRemoteNotFound) when none was asked of the running engine. */
  cloneStatus(signal?: AbortSignal): Promise<CloneProgress>;
}

export interface VolumeCloneControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  /** The control API of a running engine at `address` (default: the instance manager's, EngineControlClient). */
  engineApi?: (address: string, engine: string) => CloneEngineApi;
  now?: () => number;
  /** First wait after a failed attempt, doubled per attempt up to the maximum (default 5 s and 5 min). */
  backoff?: { minMs: number; maxMs: number };
}

export function volumeCloneController(opts: VolumeCloneControllerOptions): Controller {
  const { store, informers, events } = opts;
  const now = opts.now ?? Date.now;
  const backoff = opts.backoff ?? { minMs: CLONE_BACKOFF_MIN_MS, maxMs: CLONE_BACKOFF_MAX_MS };
  const engineApi = opts.engineApi ?? ((address: string, engine: string) => new EngineControlClient(address, engine));
  const volumes = informers.informerFor<Volume>('Volume');
  const engines = informers.informerFor<Engine>('Engine');
  const replicas = informers.informerFor<Replica>('Replica');

  const setClone = (v: RO<Volume>, f: (cs: VolumeCloneStatus) => void) =>
    mutateStatus<Volume>(store, 'Volume', v.metadata.namespace ?? '', v.metadata.name ?? '', (st) => {
      const cs: VolumeCloneStatus = { ...(st.cloneStatus ?? {}) };
      f(cs);
      st.cloneStatus = cs;
    }).catch(ignoreNotFound);

  const annotate = async (v: RO<Volume>, key: string, node: string | null) => {
    if ((v.metadata.annotations?.[key] ?? null) === node) return;
    await store.patch('Volume', v.metadata.namespace ?? '', v.metadata.name ?? '', 'merge', { metadata: { annotations: { [key]: node } } }).catch(ignoreNotFound);
  };

  function runningEngine(ns: string, volume: string): RO<Engine> | undefined {
    return engines.list().find((e) => e.metadata.namespace === ns && e.spec?.volumeName === volume && e.status?.currentState === 'running' && !!e.status.ip && !!e.status.port);
  }

  /** A failed attempt: say why, and when the next one may start. */
  async function failed(v: RO<Volume>, message: string): Promise<{ requeueAfter: number }> {
    const attempts = (v.status?.cloneStatus?.attemptCount ?? 0) + 1;
    const wait = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(attempts - 1, 16));
    await setClone(v, (cs) => {
      cs.state = 'failed';
      cs.attemptCount = attempts;
      cs.nextAllowedAttemptAt = new Date(now() + wait).toISOString();
      cs.message = message;
    });
    if (v.status?.cloneStatus?.message !== message) events.event(v as never, 'Warning', 'CloneFailed', `${message} (attempt ${attempts}; retrying in ${Math.round(wait / 1000)} s)`);
    return { requeueAfter: wait };
  }

  /** Waiting for something (not a failure): the message says what. */
  async function waiting(v: RO<Volume>, message: string, requeueAfter = POLL_MS): Promise<{ requeueAfter: number }> {
    if (v.status?.cloneStatus?.message !== message || v.status.cloneStatus.state === 'failed') {
      await setClone(v, (cs) => {
        if (cs.state !== 'failed') cs.state = 'initiated';
        cs.message = message;
      });
    }
    return { requeueAfter };
  }

  /** Maintenance attaches of sources whose clone is gone or completed. */
  async function releaseStale(ns: string): Promise<void> {
    const live = new Set(volumes.list().filter((v) => v.metadata.namespace === ns && v.spec?.dataSource && v.status?.cloneStatus?.state !== 'completed' && !v.metadata.deletionTimestamp).map((v) => sourceKeyOf(v)));
    for (const v of volumes.list()) {
      if (v.metadata.namespace !== ns) continue;
      for (const k of Object.keys(v.metadata.annotations ?? {})) if (k.startsWith(SOURCE_KEY_PREFIX) && !live.has(k)) await annotate(v, k, null);
    }
  }

  /**
   * Fresh vol:// snapshots of clones that are gone, or done with them, still on a running source: deleted (marked
   * removed while the source's head sits on one). `keep` is the one the clone named `clone` still needs.
   */
  async function dropOrphanSnapshots(ns: string, clone: string, keep: string | undefined, signal: AbortSignal): Promise<void> {
    for (const e of engines.list()) {
      if (e.metadata.namespace !== ns || e.status?.currentState !== 'running' || !e.status.ip || !e.status.port) continue;
      const orphans = Object.entries(e.status.snapshots ?? {}).filter(([n, s]) => n !== keep && s.removed !== true && s.labels?.[FOR_CLONING_LABEL] === clone);
      for (const [n] of orphans) {
        await engineApi(`${e.status.ip}:${e.status.port}`, e.metadata.name ?? '').deleteSnapshot(n, signal).catch((err: unknown) => {
          if (!isRemoteNotFound(err)) throw err;
        });
        events.event(e as never, 'Normal', 'CloneSnapshotDeleted', `deleted snapshot ${n}, taken for clone ${clone}, which no longer needs it`);
      }
    }
  }

  const reconcile = async (key: string, signal: AbortSignal) => {
    const [ns = '', name = ''] = key.split('/');
    const v = volumes.get(ns, name);
    if (!v || v.metadata.deletionTimestamp || !v.spec?.dataSource || v.status?.cloneStatus?.state === 'completed') {
      if (v && v.metadata.annotations?.[SELF_KEY] !== undefined) await annotate(v, SELF_KEY, null);
      await releaseStale(ns);
      await dropOrphanSnapshots(ns, name, undefined, signal);
      return undefined;
    }
    const cs = v.status?.cloneStatus ?? {};
    let src: ReturnType<typeof parseVolumeDataSource>;
    try {
      src = parseVolumeDataSource(v.spec.dataSource);
    } catch (err) {
      // Admission refuses these; one written around it stays failed (no retry can fix it).
      await setClone(v, (c) => Object.assign(c, { state: 'failed', message: errorMessage(err) }));
      return undefined;
    }
    const snapshot = src.kind === 'snapshot' ? src.snapshot : cs.snapshot || freshSnapshotName(v);
    if (!cs.state) {
      await setClone(v, (c) => Object.assign(c, { sourceVolume: src.volume, snapshot, state: 'initiated', attemptCount: 0, nextAllowedAttemptAt: '', message: `cloning ${v.spec?.dataSource}` }));
      events.event(v as never, 'Normal', 'CloneInitiated', `cloning snapshot ${snapshot} of volume ${src.volume}`);
      return undefined; // the status update brings it back
    }
    if (cs.state === 'failed' && cs.nextAllowedAttemptAt) {
      const wait = Date.parse(cs.nextAllowedAttemptAt) - now();
      if (wait > 0) return { requeueAfter: wait };
    }

    // The source: its running engine and one RW replica reachable over the network.
    const source = volumes.get(ns, src.volume);
    if (!source || source.metadata.deletionTimestamp) return failed(v, `source volume "${src.volume}" does not exist${source ? ' (it is being deleted)' : ''}`);
    if (BigInt(source.spec?.size ?? '0') > BigInt(v.spec.size ?? '0')) return failed(v, `source volume "${src.volume}" (${source.spec?.size} bytes) is larger than this volume (${v.spec.size} bytes)`);
    // A clone of a clone waits for its source's copy: before that the source's content is not what it will be.
    if (clonePending(source)) return waiting(v, `source volume ${src.volume} is itself a clone that is not completed yet`, 5000);
    const se = runningEngine(ns, src.volume);
    if (!se) {
      const node = source.spec?.nodeID || source.status?.state !== 'detached' ? undefined : replicas.list().find((r) => r.metadata.namespace === ns && r.spec?.volumeName === src.volume && !r.spec.failedAt && r.spec.healthyAt && r.spec.nodeID)?.spec?.nodeID;
      if (node) await annotate(source, sourceKeyOf(v), node);
      return waiting(v, node ? `attaching source volume ${src.volume} without a frontend on node ${node} to read from it` : `waiting for source volume ${src.volume} to be attached or detached (it is ${source.status?.state || 'not ready'})`, 5000);
    }
    const modes = se.status?.replicaModeMap ?? {};
    const addrs = se.status?.currentReplicaAddressMap ?? {};
    const replica = Object.keys(modes).sort().find((r) => modes[r] === 'RW' && addrs[r] && !addrs[r]!.startsWith('unix:'));
    if (!replica) return waiting(v, `source volume ${src.volume} has no RW replica reachable over the network to read from`, 5000);
    const sourceApi = engineApi(`${se.status!.ip}:${se.status!.port}`, se.metadata.name ?? '');

    // The snapshot: the given one must exist; a vol:// clone takes its own, once.
    const have = (await sourceApi.snapshots(signal)).find((s) => s.name === snapshot);
    if (!have || have.removed) {
      if (src.kind === 'snapshot') return failed(v, `snapshot "${snapshot}" of volume "${src.volume}" does not exist${have ? ' (it is removed)' : ''}`);
      if (have) return failed(v, `the clone's snapshot "${snapshot}" of volume "${src.volume}" was removed before the copy completed`);
      await sourceApi.createSnapshot(snapshot, { [FOR_CLONING_LABEL]: name }, signal);
      events.event(v as never, 'Normal', 'CloneSnapshot', `took snapshot ${snapshot} of volume ${src.volume} to clone it`);
    }

    // The clone's engine, without a frontend, next to the source's.
    const ce = runningEngine(ns, name);
    if (!ce) {
      await annotate(v, SELF_KEY, se.spec?.nodeID ?? '');
      return waiting(v, `attaching this volume without a frontend on node ${se.spec?.nodeID ?? '?'} for the copy`);
    }
    const cloneApi = engineApi(`${ce.status!.ip}:${ce.status!.port}`, ce.metadata.name ?? '');
    let progress: CloneProgress | undefined;
    try {
      progress = await cloneApi.cloneStatus(signal);
    } catch (err) {
      if (!isRemoteNotFound(err)) throw err;
    }
    const mine = progress && progress.sourceVolume === src.volume && progress.snapshot === snapshot;
    if (!progress || !mine || (progress.state === 'failed' && cs.state === 'failed')) {
      // Not started on this engine (new, or restarted since), or the retry of a failed attempt.
      progress = await cloneApi.startClone({ sourceVolume: src.volume, snapshot, sourceSize: Number(source.spec?.size ?? 0), replicaName: replica, replicaAddress: addrs[replica]! }, signal);
      await setClone(v, (c) => Object.assign(c, { state: 'initiated', message: `copying snapshot ${snapshot} of volume ${src.volume} from replica ${replica}` }));
      return { requeueAfter: POLL_MS };
    }
    if (progress.state === 'failed') return failed(v, progress.error ?? 'the copy failed');
    if (progress.state === 'in-progress') return waiting(v, `copying snapshot ${snapshot} of volume ${src.volume}: ${progress.progress}% of ${progress.bytesTotal} bytes`);

    // Completed: a fresh vol:// snapshot is not needed any more (marked removed while the source's head sits on it).
    if (src.kind === 'volume') {
      await sourceApi.deleteSnapshot(snapshot, signal).catch((err: unknown) => {
        if (!isRemoteNotFound(err)) throw err;
      });
    }
    await setClone(v, (c) => Object.assign(c, { state: 'completed', nextAllowedAttemptAt: '', message: `copied ${progress.bytesCopied} bytes of snapshot ${snapshot} of volume ${src.volume}` }));
    events.event(v as never, 'Normal', 'CloneCompleted', `cloned snapshot ${snapshot} of volume ${src.volume} (${progress.bytesCopied} bytes copied)`);
    await annotate(v, SELF_KEY, null);
    await releaseStale(ns);
    return undefined;
  };

  const controller = new Controller({ name: 'volume-clone', workers: 2, reconcile });
  const enqueue = (v: RO<Volume>) => controller.enqueue(`${v.metadata.namespace ?? ''}/${v.metadata.name ?? ''}`);
  /** Clones of `volume` (as source) and `volume` itself when it is a clone. */
  const related = (ns: string | undefined, volume: string | undefined) => {
    for (const v of volumes.list()) {
      if (v.metadata.namespace !== ns || !v.spec?.dataSource) continue;
      if (v.metadata.name === volume || v.spec.dataSource.startsWith(`vol://${volume ?? ''}`) || v.spec.dataSource.startsWith(`snap://${volume ?? ''}/`)) enqueue(v);
    }
  };
  volumes.addEventHandler({
    onAdd: (v) => (v.spec?.dataSource ? enqueue(v) : undefined),
    onUpdate: (_a, v) => related(v.metadata.namespace, v.metadata.name),
    onDelete: (v) => {
      related(v.metadata.namespace, v.metadata.name);
      if (v.spec?.dataSource) enqueue(v);
    },
  });
  engines.addEventHandler({
    onUpdate: (a, e) => {
      if (a.status?.currentState !== e.status?.currentState) related(e.metadata.namespace, e.spec?.volumeName);
      // A fresh snapshot whose clone is gone or completed (deleted then, or the source was detached): cleaned up.
      for (const s of Object.values(e.status?.snapshots ?? {})) {
        const clone = s.labels?.[FOR_CLONING_LABEL];
        if (!clone || s.removed) continue;
        const c = volumes.get(e.metadata.namespace ?? '', clone);
        if (!c || c.status?.cloneStatus?.state === 'completed') controller.enqueue(`${e.metadata.namespace ?? ''}/${clone}`);
      }
    },
  });
  return controller;
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}
