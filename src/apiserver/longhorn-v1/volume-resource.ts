// The /v1 JSON shape of a Volume, as Longhorn's API returns it: the spec fields under Longhorn's API names,
// `state`/`robustness` from status, `conditions` as a map by type, `controllers` from the volume's Engines (with the
// frontend `endpoint`), `replicas` from its Replicas (with each one's `mode` from the engine's replicaModeMap), and
// the `actions` that apply in its current state. Engines and Replicas are found by `spec.volumeName`, never by name.
//
// Stratum additions (not in Longhorn's API): `nodeID` (the node the volume is asked to attach to) and
// `currentNodeID` (where it is attached), so clients need not dig through controllers.

import type { Engine } from '../../api/engine.js';
import type { Condition } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import { expansionBlocker, type Volume } from '../../api/volume.js';

export interface VolumeParts {
  engines: Engine[];
  replicas: Replica[];
}

/** Longhorn's API gives conditions as an object keyed by type. */
export function conditionMap(conditions: readonly Condition[] | null | undefined): Record<string, Condition> {
  const map: Record<string, Condition> = {};
  for (const c of conditions ?? []) {
    map[c.type] = {
      type: c.type,
      status: c.status,
      reason: c.reason ?? '',
      message: c.message ?? '',
      lastProbeTime: c.lastProbeTime ?? '',
      lastTransitionTime: c.lastTransitionTime ?? '',
    };
  }
  return map;
}

/** Which actions a volume offers: Longhorn lists only those that make sense in the current state. */
function actionsFor(v: Volume): string[] {
  // Snapshot actions apply attached or detached (a detached volume is attached without a frontend for them).
  const actions = ['updateReplicaCount', 'snapshotCreate', 'snapshotList', 'snapshotGet', 'snapshotDelete', 'snapshotRevert', 'snapshotPurge'];
  if (v.metadata.deletionTimestamp) return [];
  if (v.spec?.nodeID) actions.unshift('detach');
  else actions.unshift('attach');
  // Expansion is offline: offered while the volume is detached (src/api/volume.ts expansionBlocker).
  if (!expansionBlocker(v)) actions.push('expand');
  return actions;
}

function controllerOf(e: Engine) {
  const spec = e.spec ?? {};
  const st = e.status ?? {};
  return {
    name: e.metadata.name ?? '',
    hostId: spec.nodeID ?? '',
    address: st.ip ?? '',
    port: st.port ?? 0,
    running: st.currentState === 'running',
    image: spec.image ?? '',
    currentImage: st.currentImage ?? '',
    instanceManagerName: st.instanceManagerName ?? '',
    size: st.currentSize ?? '0',
    endpoint: st.endpoint ?? '',
    active: spec.active ?? false,
  };
}

function replicaOf(r: Replica, modes: Record<string, string>) {
  const spec = r.spec ?? {};
  const st = r.status ?? {};
  const name = r.metadata.name ?? '';
  const diskPath = spec.diskPath ?? '';
  return {
    name,
    hostId: spec.nodeID ?? '',
    diskID: spec.diskID ?? '',
    diskPath,
    // Longhorn's layout: <disk>/replicas/<dataDirectoryName>.
    dataPath: diskPath && spec.dataDirectoryName ? `${diskPath.replace(/\/+$/, '')}/replicas/${spec.dataDirectoryName}` : '',
    mode: modes[name] ?? '',
    running: st.currentState === 'running',
    failedAt: spec.failedAt ?? '',
    address: st.ip ?? '',
    port: st.port ?? 0,
    image: spec.image ?? '',
    currentImage: st.currentImage ?? '',
    instanceManagerName: st.instanceManagerName ?? '',
    dataEngine: spec.dataEngine ?? 'v1',
  };
}

/** Engines first by `active` (the one serving the frontend), then by name, so `controllers[0]` is the live one. */
function sortEngines(engines: Engine[]): Engine[] {
  return [...engines].sort((a, b) => Number(b.spec?.active ?? false) - Number(a.spec?.active ?? false) || (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
}

export function volumeResource(v: Volume, parts: VolumeParts, base: string): Record<string, unknown> {
  const name = v.metadata.name ?? '';
  const spec = v.spec ?? {};
  const status = v.status ?? {};
  const engines = sortEngines(parts.engines);
  const modes: Record<string, string> = {};
  for (const e of [...engines].reverse()) Object.assign(modes, e.status?.replicaModeMap ?? {});
  const conditions = conditionMap(status.conditions);
  const self = `${base}/v1/volumes/${encodeURIComponent(name)}`;
  return {
    id: name,
    type: 'volume',
    name,
    size: spec.size ?? '0',
    numberOfReplicas: spec.numberOfReplicas ?? 0,
    frontend: spec.frontend ?? '',
    disableFrontend: spec.disableFrontend ?? false,
    backingImage: spec.backingImage ?? '',
    dataEngine: spec.dataEngine ?? 'v1',
    dataLocality: spec.dataLocality ?? '',
    accessMode: spec.accessMode ?? '',
    nodeSelector: spec.nodeSelector ?? [],
    diskSelector: spec.diskSelector ?? [],
    staleReplicaTimeout: spec.staleReplicaTimeout ?? 0,
    encrypted: spec.encrypted ?? false,
    migratable: spec.migratable ?? false,
    revisionCounterDisabled: spec.revisionCounterDisabled ?? false,
    replicaAutoBalance: spec.replicaAutoBalance ?? '',
    snapshotDataIntegrity: spec.snapshotDataIntegrity ?? '',
    unmapMarkSnapChainRemoved: spec.unmapMarkSnapChainRemoved ?? '',
    replicaSoftAntiAffinity: spec.replicaSoftAntiAffinity ?? '',
    replicaZoneSoftAntiAffinity: spec.replicaZoneSoftAntiAffinity ?? '',
    replicaDiskSoftAntiAffinity: spec.replicaDiskSoftAntiAffinity ?? '',
    fromBackup: spec.fromBackup ?? '',
    dataSource: spec.dataSource ?? '',
    cloneStatus: { sourceVolume: '', snapshot: '', state: '', attemptCount: 0, nextAllowedAttemptAt: '', message: '', ...(status.cloneStatus ?? {}) },
    image: spec.image ?? '',
    currentImage: status.currentImage ?? '',
    lastAttachedBy: spec.lastAttachedBy ?? '',
    state: status.state ?? '',
    robustness: status.robustness ?? '',
    // Longhorn: ready means the replicas could be scheduled and the data is not lost.
    ready: conditions['Scheduled']?.status === 'True' && status.robustness !== 'faulted',
    nodeID: spec.nodeID ?? '',
    currentNodeID: status.currentNodeID ?? '',
    created: v.metadata.creationTimestamp ?? '',
    deletionTimestamp: v.metadata.deletionTimestamp ?? '',
    conditions,
    controllers: engines.map(controllerOf),
    replicas: [...parts.replicas].sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? '')).map((r) => replicaOf(r, modes)),
    actions: Object.fromEntries(actionsFor(v).map((a) => [a, `${self}?action=${a}`])),
    links: { self },
  };
}
