// Admission checks for Volumes that need other objects: a volume on a backing image may be created only when that
// image exists, is not being deleted, has the volume's data engine, and — once its virtual size is known — fits in
// the volume (`spec.size` ≥ the image's `status.virtualSize`). Longhorn makes the same checks in its volume
// validator; without them a too-small volume would only fail at attach time, deep inside the replica, with a message
// about neither the volume nor the image. Growing a volume is checked the same way, and refused while its engine
// still runs (validation in src/api/volume.ts has already refused it unless the volume is detached; this catches an
// engine the volume's status has not caught up with) and when a disk holding one of its replicas could not be
// promised the larger size (expansion-room.ts).
// A clone (`spec.dataSource` vol:// or snap://) is refused when its source volume or snapshot does not exist, when
// it is not on its source's backing image and data engine, or when it is smaller than its source.
//
// Updates that do not change `spec.size` are never refused here: the backing image may be gone by then (deleted
// with the volume, or forced), and a controller removing a finalizer must still be able to write the volume.

import type { BackingImage } from '../../api/backing-image.js';
import { invalid } from '../../api/field-errors.js';
import type { FieldError } from '../../api/kind.js';
import { DEFAULT_NAMESPACE, type KubeObject } from '../../api/meta.js';
import type { Engine } from '../../api/engine.js';
import { engineNameFor } from '../../api/labels.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import type { Setting } from '../../api/setting-resource.js';
import type { Snapshot } from '../../api/snapshot.js';
import { parseVolumeDataSource, type Volume, type VolumeSpec } from '../../api/volume.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { AdmissionPlugin } from '../../store/resource-store.js';
import type { Store } from '../../store/types.js';
import { provisioningLimits, settingsOf } from '../common/settings.js';
import { expansionShortfalls } from './expansion-room.js';

const VOLUME_RESOURCE = 'volumes.longhorn.io';

function specOf(obj: KubeObject): VolumeSpec {
  return (obj.spec ?? {}) as VolumeSpec;
}

/** Same message format as the store's schema errors: `Volume "v" is invalid: <field>: <message>, …`. */
function refuse(obj: KubeObject, causes: FieldError[]): never {
  const name = obj.metadata.name ?? '';
  const summary = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
  throw new StoreError('Invalid', `Volume "${name}" is invalid: ${summary}`, {
    causes,
    details: { kind: VOLUME_RESOURCE, name },
  });
}

async function getOrUndefined<T extends KubeObject>(store: Store, kind: string, ns: string, name: string): Promise<T | undefined> {
  try {
    return await store.get<T>(kind, ns, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * A clone (`spec.dataSource`): its source volume and snapshot exist, it is on the source's backing image and data
 * engine, and it is not smaller than the source. (The format of the field is the schema's check.)
 */
export async function cloneSourceProblems(store: Store, obj: KubeObject): Promise<FieldError[]> {
  const spec = specOf(obj);
  const ds = spec.dataSource ?? '';
  if (ds === '') return [];
  let src: ReturnType<typeof parseVolumeDataSource>;
  try {
    src = parseVolumeDataSource(ds);
  } catch (err) {
    return [invalid('spec.dataSource', ds, (err as Error).message)];
  }
  const ns = obj.metadata.namespace ?? DEFAULT_NAMESPACE;
  if (src.volume === obj.metadata.name) return [invalid('spec.dataSource', ds, 'a volume cannot be a clone of itself')];
  const source = await getOrUndefined<Volume>(store, 'Volume', ns, src.volume);
  if (!source) return [invalid('spec.dataSource', ds, `source volume "${src.volume}" does not exist`)];
  if (source.metadata.deletionTimestamp) return [invalid('spec.dataSource', ds, `source volume "${src.volume}" is being deleted`)];
  const errs: FieldError[] = [];
  if (src.kind === 'snapshot') {
    // The Snapshot object, or the engine's own list (a snapshot taken moments ago may have no object yet).
    const object = await getOrUndefined<Snapshot>(store, 'Snapshot', ns, src.snapshot);
    const engines = (await store.list<Engine>('Engine', { namespace: ns })).items.filter((e) => e.spec?.volumeName === src.volume);
    const live = engines.some((e) => {
      const s = e.status?.snapshots?.[src.snapshot];
      return s !== undefined && s['removed'] !== true;
    });
    if (!live && object?.spec?.volume !== src.volume) errs.push(invalid('spec.dataSource', ds, `snapshot "${src.snapshot}" of volume "${src.volume}" does not exist`));
  }
  const srcImage = source.spec?.backingImage ?? '';
  if ((spec.backingImage ?? '') !== srcImage) {
    errs.push(invalid('spec.backingImage', spec.backingImage ?? '', `must be the backing image of source volume "${src.volume}" (${srcImage === '' ? 'none' : `"${srcImage}"`}): a clone shares its source's backing image`));
  }
  if ((spec.dataEngine ?? 'v1') !== (source.spec?.dataEngine ?? 'v1')) {
    errs.push(invalid('spec.dataEngine', spec.dataEngine ?? 'v1', `must be the data engine of source volume "${src.volume}" (${source.spec?.dataEngine ?? 'v1'})`));
  }
  const size = spec.size ?? '';
  const srcSize = source.spec?.size ?? '0';
  if (/^[0-9]+$/.test(size) && /^[0-9]+$/.test(srcSize) && BigInt(size) < BigInt(srcSize)) {
    errs.push(invalid('spec.size', size, `must be at least the size of source volume "${src.volume}" (${srcSize} bytes)`));
  }
  return errs;
}

async function backingImageOf(store: Store, obj: KubeObject, name: string): Promise<BackingImage | undefined> {
  try {
    return await store.get<BackingImage>('BackingImage', obj.metadata.namespace ?? DEFAULT_NAMESPACE, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The field errors for `spec.size` against the image's virtual size (none while the size is unknown). */
export function sizeProblems(size: string | undefined, biName: string, virtualSize: number | undefined): FieldError[] {
  if (!virtualSize || virtualSize <= 0 || size === undefined || !/^[0-9]+$/.test(size)) return [];
  if (BigInt(size) >= BigInt(virtualSize)) return [];
  return [invalid('spec.size', size, `must be at least the virtual size of backing image "${biName}" (${virtualSize} bytes)`)];
}

/** Growth beyond what the disks holding the volume's replicas may be promised (expansion-room.ts): refused. */
async function roomProblems(store: Store, obj: KubeObject, old: KubeObject): Promise<FieldError[]> {
  const size = specOf(obj).size ?? '';
  const oldSize = specOf(old).size ?? '';
  if (!/^[0-9]+$/.test(size) || !/^[0-9]+$/.test(oldSize)) return [];
  const growBy = Number(BigInt(size) - BigInt(oldSize));
  if (growBy <= 0) return [];
  const ns = obj.metadata.namespace ?? DEFAULT_NAMESPACE;
  const [replicas, nodes, settings] = await Promise.all([
    store.list<Replica>('Replica', { namespace: ns }),
    store.list<Node>('Node', { namespace: ns }),
    store.list<Setting>('Setting', { namespace: ns }),
  ]);
  const live = replicas.items.filter((r) => !r.metadata.deletionTimestamp);
  const mine = live.filter((r) => r.spec?.volumeName === obj.metadata.name);
  const short = expansionShortfalls({ replicas: mine, allReplicas: live, nodes: nodes.items, limits: provisioningLimits(settingsOf(settings.items)), growBy });
  if (short.length === 0) return [];
  return [invalid('spec.size', size, `the disks of its replicas have no room for ${growBy} more bytes: ${short.join('; ')}`)];
}

/** A volume that grows while its engine is not stopped yet: refused, expansion is offline. */
async function engineRunningProblems(store: Store, obj: KubeObject, old: KubeObject): Promise<FieldError[]> {
  const size = specOf(obj).size ?? '';
  const oldSize = specOf(old).size ?? '';
  if (!/^[0-9]+$/.test(size) || !/^[0-9]+$/.test(oldSize) || BigInt(size) <= BigInt(oldSize)) return [];
  const e = await getOrUndefined<Engine>(store, 'Engine', obj.metadata.namespace ?? DEFAULT_NAMESPACE, engineNameFor(obj.metadata.name ?? ''));
  const state = e?.status?.currentState ?? '';
  if (!e || (e.spec?.desireState !== 'running' && (state === '' || state === 'stopped' || state === 'error'))) return [];
  const node = e.status?.currentTargetNodeID || e.spec?.nodeID || 'its node';
  return [invalid('spec.size', size, `a volume is expanded offline: detach it first (its engine is ${state || 'starting'} on ${node})`)];
}

export const volumeAdmission: AdmissionPlugin = {
  kinds: ['Volume'],
  async validateCreate(obj, store) {
    const spec = specOf(obj);
    const cloneErrs = await cloneSourceProblems(store, obj);
    if (cloneErrs.length > 0) refuse(obj, cloneErrs);
    const biName = spec.backingImage ?? '';
    if (biName === '') return;
    const bi = await backingImageOf(store, obj, biName);
    if (!bi) {
      refuse(obj, [invalid('spec.backingImage', biName, `backing image "${biName}" does not exist; create it first`)]);
    }
    const errs: FieldError[] = [];
    if (bi.metadata.deletionTimestamp) {
      errs.push(invalid('spec.backingImage', biName, `backing image "${biName}" is being deleted`));
    }
    const biEngine = bi.spec?.dataEngine ?? 'v1';
    const volEngine = spec.dataEngine ?? 'v1';
    if (biEngine !== volEngine) {
      errs.push(invalid('spec.dataEngine', volEngine, `must match the data engine of backing image "${biName}" (${biEngine})`));
    }
    errs.push(...sizeProblems(spec.size, biName, bi.status?.virtualSize));
    if (errs.length > 0) refuse(obj, errs);
  },
  async validateUpdate(obj, old, store) {
    const spec = specOf(obj);
    if (spec.size === specOf(old).size) return;
    const errs = await engineRunningProblems(store, obj, old);
    if (errs.length === 0) errs.push(...(await roomProblems(store, obj, old)));
    const biName = spec.backingImage ?? '';
    if (biName !== '') {
      const bi = await backingImageOf(store, obj, biName);
      errs.push(...sizeProblems(spec.size, biName, bi?.status?.virtualSize));
    }
    if (errs.length > 0) refuse(obj, errs);
  },
};
