// The engine-upgrade controller (issue 12): which engine image each Volume runs. Longhorn's fields: spec.image is
// the image the volume should run, status.currentImage the one it runs; they differ while it is being upgraded.
// Per volume:
//   defaultImage (a volume without spec.image gets default-engine-image) → recordCurrent (a volume with no engine
//   runs nothing: currentImage follows spec.image at once — the offline upgrade) → swapLive (an attached, healthy
//   volume whose spec.image changed gets its engine swapped under its frontend by its instance manager, then
//   currentImage follows; docs/upgrade.md) → autoUpgrade (with concurrent-automatic-engine-upgrade-per-node-limit
//   N > 0, a volume not on the default image is moved to it when fewer than N volumes of its node are being
//   upgraded; an attached one that is degraded, rebuilding or not healthy waits and says why).
// Waiting is said by a Normal event `EngineUpgradeWaiting` on the volume, once per reason.
// Kept apart from the volume controller (its own files, its own queue with one worker so that the per-node
// count it keeps is exact).

import type { Engine } from '../../api/engine.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import type { Volume } from '../../api/volume.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import type { Store } from '../../store/types.js';
import { settingsFrom } from '../common/settings.js';
import { mutateStatus } from '../common/status.js';
import type { InstanceManagers } from '../instance-manager/index.js';

type RO<T> = DeepReadonly<T>;

const REPLICAS_OF = 'replicasOfVolumeForUpgrade';
const ENGINES_OF = 'enginesOfVolumeForUpgrade';
export const LIMIT_SETTING = 'concurrent-automatic-engine-upgrade-per-node-limit';

export interface EngineUpgradeOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  managers: InstanceManagers;
}

/**
 * Why an attached volume cannot have its engine swapped now (undefined: it can): not attached yet, degraded or
 * otherwise not healthy, a replica rebuilding (WO), or no running engine.
 */
export function liveBlocker(v: RO<Volume>, engine: RO<Engine> | undefined): string | undefined {
  if (v.status?.state !== 'attached' || v.status.robustness !== 'healthy') {
    return `the volume is ${v.status?.state || 'unknown'} and ${v.status?.robustness || 'of unknown health'}`;
  }
  if (!engine || engine.status?.currentState !== 'running') return 'its engine is not running';
  const rebuilding = Object.entries(engine.status.replicaModeMap ?? {}).filter(([, m]) => m === 'WO').map(([r]) => r);
  if (rebuilding.length > 0) return `replica ${rebuilding.join(', ')} is rebuilding`;
  return undefined;
}

/** Why a volume must wait for a slot of its node (undefined: a slot is free). `busy`: the node's other upgrades. */
export function slotBlocker(busy: readonly string[], limit: number, node: string): string | undefined {
  return busy.length >= limit ? `${busy.join(', ')} on ${node || 'its node'} already upgrading (per-node limit ${limit})` : undefined;
}

/** A volume is being upgraded while it should run another image than it does. */
export function upgrading(v: RO<Volume>): boolean {
  return !!v.spec?.image && !!v.status?.currentImage && v.spec.image !== v.status.currentImage;
}

export function engineUpgradeController(opts: EngineUpgradeOptions): Controller {
  const { store, informers, events, managers } = opts;
  const settings = settingsFrom(informers);
  const volumes = informers.informerFor<Volume>('Volume');
  const replicas = informers.informerFor<Replica>('Replica');
  const engines = informers.informerFor<Engine>('Engine');
  replicas.addIndex(REPLICAS_OF, (r) => (r.spec?.volumeName ? [r.spec.volumeName] : []));
  engines.addIndex(ENGINES_OF, (e) => (e.spec?.volumeName ? [e.spec.volumeName] : []));
  /** The last waiting reason said per volume: said again only when it changes. */
  const said = new Map<string, string>();
  /** Upgrades this process started and has not seen finish (volume key → node): the cache may lag behind them. */
  const started = new Map<string, string>();

  /** The node a volume's upgrade counts against: where it is attached, else where its first replica lives. */
  const nodeOf = (v: RO<Volume>) => {
    const ns = v.metadata.namespace ?? '';
    const first = replicas.byIndex(REPLICAS_OF, v.metadata.name ?? '').filter((r) => r.metadata.namespace === ns).map((r) => r.spec?.nodeID ?? '').sort()[0];
    return v.status?.currentNodeID || v.spec?.nodeID || first || '';
  };
  const attachedOrAttaching = (v: RO<Volume>) => !!v.spec?.nodeID || !!v.status?.currentNodeID || (v.status?.state !== 'detached' && v.status?.state !== 'creating' && !!v.status?.state);

  const wait = (v: RO<Volume>, why: string) => {
    const key = `${v.metadata.namespace}/${v.metadata.name}`;
    if (said.get(key) === why) return;
    said.set(key, why);
    events.event(v as never, 'Normal', 'EngineUpgradeWaiting', why);
  };

  const reconcile = async (key: string) => {
    const [ns = '', name = ''] = key.split('/');
    const v = volumes.get(ns, name);
    if (!v || v.metadata.deletionTimestamp) {
      said.delete(key);
      started.delete(key);
      return;
    }
    const def = settings.string('default-engine-image');
    // defaultImage
    if (!v.spec?.image) {
      await store.patch('Volume', ns, name, 'merge', { spec: { image: def }, metadata: { resourceVersion: v.metadata.resourceVersion } });
      return;
    }
    // recordCurrent: no engine runs, so nothing needs swapping.
    const running = engines.byIndex(ENGINES_OF, name).some((e) => e.metadata.namespace === ns && e.status?.currentState === 'running');
    if (!running && !attachedOrAttaching(v) && v.status?.currentImage !== v.spec.image) {
      const from = v.status?.currentImage;
      await mutateStatus<Volume>(store, 'Volume', ns, name, (st) => void (st.currentImage = v.spec?.image ?? ''));
      if (from) events.event(v as never, 'Normal', 'EngineUpgraded', `offline: the detached volume now uses engine image ${v.spec.image} (was ${from})`);
      said.delete(key);
      started.delete(key);
      return;
    }
    if (!v.status?.currentImage) {
      // Attached before this controller knew it: it runs what it was asked to run.
      await mutateStatus<Volume>(store, 'Volume', ns, name, (st) => void (st.currentImage = v.spec?.image ?? ''));
      return;
    }
    // swapLive: an attached volume asked to run another image gets its engine swapped under its frontend.
    if (upgrading(v)) {
      const e = engines.byIndex(ENGINES_OF, name).find((x) => x.metadata.namespace === ns && x.status?.currentState === 'running');
      const blocked = liveBlocker(v, e);
      if (blocked || !e) {
        wait(v, `waiting to move the engine to ${v.spec.image} live: ${blocked ?? 'its engine is not running'}; it moves once attached and healthy`);
        return { requeueAfter: 5000 };
      }
      const m = managers.managerFor(e.spec?.nodeID ?? '', e.metadata.name ?? '');
      if (!('client' in m)) {
        wait(v, `waiting to move the engine to ${v.spec.image} live: ${m.problem}`);
        return { requeueAfter: 5000 };
      }
      const from = v.status.currentImage;
      const r = await m.client.swapEngine(e.metadata.name ?? '', v.spec.image);
      await mutateStatus<Volume>(store, 'Volume', ns, name, (st) => void (st.currentImage = v.spec?.image ?? ''));
      events.event(v as never, 'Normal', 'EngineUpgraded', `live: engine ${e.metadata.name} swapped from image ${from} to ${v.spec.image} on ${e.spec?.nodeID}; I/O was held ${r.heldMs} ms, no connection was closed`);
      said.delete(key);
      started.delete(key);
      return;
    }
    // autoUpgrade
    const limit = settings.int(LIMIT_SETTING);
    if (limit <= 0 || v.spec.image === def) return;
    if (attachedOrAttaching(v)) {
      const e = engines.byIndex(ENGINES_OF, name).find((x) => x.metadata.namespace === ns);
      const blocked = liveBlocker(v, e);
      if (blocked) {
        wait(v, `waiting for automatic engine upgrade to ${def}: ${blocked}; it is upgraded once attached and healthy, or detached`);
        return { requeueAfter: 5000 };
      }
    }
    const node = nodeOf(v);
    const busy = [...new Set([
      ...volumes.list().filter((o) => o.metadata.name !== name && upgrading(o) && nodeOf(o) === node).map((o) => `${o.metadata.namespace}/${o.metadata.name}`),
      ...[...started].filter(([k, n]) => k !== key && n === node).map(([k]) => k),
    ])].map((k) => k.split('/')[1] ?? k);
    const full = slotBlocker(busy, limit, node);
    if (full) {
      wait(v, `waiting for automatic engine upgrade to ${def}: ${full}`);
      return { requeueAfter: 2000 };
    }
    await store.patch('Volume', ns, name, 'merge', { spec: { image: def }, metadata: { resourceVersion: v.metadata.resourceVersion } });
    started.set(key, node);
    events.event(v as never, 'Normal', 'EngineUpgradeStarted', `automatic engine upgrade from ${v.spec.image} to ${def}${node ? ` (node ${node})` : ''}`);
    return undefined;
  };

  const controller = new Controller({ name: 'engine-upgrade', workers: 1, reconcile });
  volumes.addEventHandler({ onAdd: (v) => controller.enqueueObject(v as never), onUpdate: (_a, b) => controller.enqueueObject(b as never), onDelete: (v) => controller.enqueueObject(v as never) });
  engines.addEventHandler({
    onUpdate: (a, b) => {
      if (a.status?.currentState !== b.status?.currentState && b.spec?.volumeName) controller.enqueue(`${b.metadata.namespace ?? ''}/${b.spec.volumeName}`);
    },
  });
  // A changed default or limit concerns every volume (an upgrade is rare; there is no finer key).
  informers.informerFor('Setting').addEventHandler({
    onUpdate: (a, b) => {
      const n = b.metadata.name;
      if ((n !== 'default-engine-image' && n !== LIMIT_SETTING) || a['value'] === b['value']) return;
      for (const v of volumes.list()) controller.enqueueObject(v as never);
    },
  });
  return controller;
}
