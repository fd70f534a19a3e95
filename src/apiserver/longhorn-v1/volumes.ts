// Longhorn's `/v1/volumes` REST API: list, get, create, delete, and the actions `attach`, `detach`,
// `updateReplicaCount`, `expand` (volume-expand.ts), `engineUpgrade` and the snapshot actions (snapshots.ts). The objects behind it are the store's Volumes (plus their Engines and Replicas for the
// read side), so this API and the Kubernetes one always agree; every rule about volumes (schema, the backing-image
// checks of src/controllers/volume/admission.ts) is enforced by the store, not here.
//
// Attaching is `spec.nodeID` (Longhorn ≥1.5 uses VolumeAttachment tickets; Stratum has one attacher per volume):
// attach sets it, detach clears it, and a volume asked to attach elsewhere is refused rather than moved.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Engine } from '../../api/engine.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import { clonePending, type Volume } from '../../api/volume.js';
import { isConflict, isNotFound, StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { collection, invalidField, requireObject } from './common.js';
import { parseSize } from './quantity.js';
import { volumeResource, type VolumeParts } from './volume-resource.js';
import { SNAPSHOT_ACTIONS, snapshotAction, type SnapshotAction } from './snapshots.js';
import type { DataPlaneAuth } from './transfer.js';
import { expandVolume } from './volume-expand.js';
import { engineUpgrade } from './volume-upgrade.js';

const ACTIONS = ['attach', 'detach', 'updateReplicaCount', 'expand', 'engineUpgrade', ...SNAPSHOT_ACTIONS];
const MAX_CONFLICT_RETRIES = 8;

/** Create-body fields whose /v1 name is the spec field's name; empty values mean "the default". */
const PASSTHROUGH = [
  'numberOfReplicas', 'backingImage', 'frontend', 'disableFrontend', 'nodeSelector', 'diskSelector', 'dataLocality',
  'accessMode', 'dataEngine', 'staleReplicaTimeout', 'encrypted', 'migratable', 'revisionCounterDisabled',
  'replicaAutoBalance', 'snapshotDataIntegrity', 'unmapMarkSnapChainRemoved', 'replicaSoftAntiAffinity',
  'replicaZoneSoftAntiAffinity', 'replicaDiskSoftAntiAffinity', 'image', 'snapshotMaxCount', 'snapshotMaxSize',
  'freezeFilesystemForSnapshot', 'backupCompressionMethod', 'offlineRebuilding', 'rebuildConcurrentSyncLimit',
  'replicaRebuildingBandwidthLimit', 'dataSource',
] as const;
/** Accepted by Longhorn, not implemented by Stratum: refused when set rather than silently ignored. */
const UNSUPPORTED = ['fromBackup'] as const;

/** Maps the /v1 create body onto a Volume; type and range errors are left to the schema, which names the field. */
export function volumeFromCreateBody(body: Record<string, unknown>): Volume {
  const name = body['name'];
  if (typeof name !== 'string' || name === '') {
    throw new StoreError('Invalid', 'Volume "" is invalid: name: Required value', {
      causes: [{ field: 'name', reason: 'FieldValueRequired', message: 'Required value' }],
    });
  }
  if (body['size'] === undefined || body['size'] === '') {
    throw new StoreError('Invalid', `Volume "${name}" is invalid: size: Required value`, {
      causes: [{ field: 'size', reason: 'FieldValueRequired', message: 'Required value' }],
    });
  }
  const size = parseSize(body['size']);
  if ('problem' in size) throw invalidField(name, 'size', body['size'], size.problem);
  for (const k of UNSUPPORTED) {
    const v = body[k];
    if (v !== undefined && v !== null && v !== '') throw invalidField(name, k, v, 'not supported by Stratum yet');
  }
  const spec: Record<string, unknown> = { size: size.bytes };
  for (const k of PASSTHROUGH) {
    const v = body[k];
    // The Longhorn UI sends every field, unset ones as "" or 0: those mean "use the default".
    if (v === undefined || v === null || v === '' || (k === 'numberOfReplicas' && v === 0)) continue;
    spec[k] = v;
  }
  // ...except a frontend left empty on purpose: with disableFrontend, "" is "no frontend", not "the default".
  if (body['disableFrontend'] === true && body['frontend'] === '') spec['frontend'] = '';
  return {
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Volume',
    metadata: { name, namespace: DEFAULT_NAMESPACE },
    spec: spec as NonNullable<Volume['spec']>,
  };
}

/** Engines and replicas by volume: of every volume, or (`volume` given) of that one only. */
async function partsByVolume(store: Store, volume?: string): Promise<Map<string, VolumeParts>> {
  const only = volume === undefined ? {} : { fieldSelector: `spec.volumeName=${volume}` };
  const [engines, replicas] = await Promise.all([
    store.list<Engine>('Engine', { namespace: DEFAULT_NAMESPACE, ...only }),
    store.list<Replica>('Replica', { namespace: DEFAULT_NAMESPACE, ...only }),
  ]);
  const map = new Map<string, VolumeParts>();
  const entry = (v: string) => map.get(v) ?? (map.set(v, { engines: [], replicas: [] }).get(v) as VolumeParts);
  for (const e of engines.items) if (e.spec?.volumeName) entry(e.spec.volumeName).engines.push(e);
  for (const r of replicas.items) if (r.spec?.volumeName) entry(r.spec.volumeName).replicas.push(r);
  return map;
}

/** Reads, changes and writes one Volume under resourceVersion concurrency, retrying on conflicts. */
async function mutateVolume(store: Store, name: string, change: (v: Volume) => boolean): Promise<Volume> {
  for (let attempt = 0; ; attempt++) {
    const v = structuredClone(await store.get<Volume>('Volume', DEFAULT_NAMESPACE, name));
    if (!change(v)) return v;
    try {
      return (await store.update(v)).object;
    } catch (err) {
      if (!isConflict(err) || attempt >= MAX_CONFLICT_RETRIES) throw err;
    }
  }
}

async function nodeExists(store: Store, node: string): Promise<boolean> {
  try {
    await store.get('Node', DEFAULT_NAMESPACE, node);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export async function attachVolume(store: Store, name: string, body: Record<string, unknown>): Promise<Volume> {
  const hostId = body['hostId'];
  if (typeof hostId !== 'string' || hostId === '') {
    throw new StoreError('BadRequest', `attach needs {"hostId": "<node>"}: the node to attach volume "${name}" to`);
  }
  const disableFrontend = body['disableFrontend'];
  if (disableFrontend !== undefined && typeof disableFrontend !== 'boolean') {
    throw new StoreError('BadRequest', `attach: disableFrontend must be true or false, not ${JSON.stringify(disableFrontend)}`);
  }
  const attachedBy = body['attachedBy'];
  if (attachedBy !== undefined && typeof attachedBy !== 'string') {
    throw new StoreError('BadRequest', `attach: attachedBy must be a string, not ${JSON.stringify(attachedBy)}`);
  }
  if (!(await nodeExists(store, hostId))) {
    throw new StoreError('Invalid', `Cannot attach volume "${name}" to node "${hostId}": there is no such node (see GET /v1/nodes)`, {
      causes: [{ field: 'hostId', reason: 'FieldValueNotFound', message: `Not found: "${hostId}"` }],
      details: { kind: 'volumes.longhorn.io', name },
    });
  }
  return mutateVolume(store, name, (v) => {
    const spec = (v.spec ??= {});
    const current = v.status?.currentNodeID ?? '';
    if (v.metadata.deletionTimestamp) {
      throw new StoreError('Conflict', `Cannot attach volume "${name}": it is being deleted`);
    }
    if (spec.nodeID && spec.nodeID !== hostId) {
      throw new StoreError('Conflict', `Cannot attach volume "${name}" to node "${hostId}": it is attached to node "${spec.nodeID}"; detach it first`);
    }
    // A clone being copied is attached (without a frontend) for the copy only: the user's attach waits for it.
    if (!spec.nodeID && current && current !== hostId && !clonePending(v)) {
      throw new StoreError('Conflict', `Cannot attach volume "${name}" to node "${hostId}": it is still detaching from node "${current}"; retry once its state is detached`);
    }
    let changed = false;
    const set = <K extends keyof typeof spec>(k: K, val: (typeof spec)[K]) => {
      if (spec[k] !== val) {
        spec[k] = val;
        changed = true;
      }
    };
    set('nodeID', hostId);
    if (disableFrontend !== undefined) set('disableFrontend', disableFrontend);
    if (attachedBy !== undefined) set('lastAttachedBy', attachedBy);
    return changed;
  });
}

export async function detachVolume(store: Store, name: string, body: Record<string, unknown>): Promise<Volume> {
  const hostId = body['hostId'];
  if (hostId !== undefined && typeof hostId !== 'string') {
    throw new StoreError('BadRequest', `detach: hostId must be a string, not ${JSON.stringify(hostId)}`);
  }
  return mutateVolume(store, name, (v) => {
    const spec = (v.spec ??= {});
    if (!spec.nodeID) return false;
    if (hostId && spec.nodeID !== hostId) {
      throw new StoreError('Conflict', `Cannot detach volume "${name}" from node "${hostId}": it is attached to node "${spec.nodeID}"`);
    }
    spec.nodeID = '';
    return true;
  });
}

export function registerVolumeRoutes(app: FastifyInstance, store: Store, dataPlane: DataPlaneAuth = { headers: () => ({}) }): void {
  const base = (req: FastifyRequest) => `${req.protocol}://${req.headers.host ?? 'localhost'}`;
  const one = async (req: FastifyRequest, v: Volume) => {
    const parts = (await partsByVolume(store, v.metadata.name ?? '')).get(v.metadata.name ?? '') ?? { engines: [], replicas: [] };
    return volumeResource(v, parts, base(req));
  };

  app.get('/v1/volumes', async (req) => {
    const [{ items }, parts] = await Promise.all([store.list<Volume>('Volume', { namespace: DEFAULT_NAMESPACE }), partsByVolume(store)]);
    items.sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
    const data = items.map((v) => volumeResource(v, parts.get(v.metadata.name ?? '') ?? { engines: [], replicas: [] }, base(req)));
    return collection('volume', data, `${base(req)}/v1/volumes`);
  });

  app.get('/v1/volumes/:name', async (req) => {
    const { name } = req.params as { name: string };
    return one(req, await store.get<Volume>('Volume', DEFAULT_NAMESPACE, name));
  });

  app.post('/v1/volumes', async (req) => {
    const { object } = await store.create(volumeFromCreateBody(requireObject(req.body)));
    return one(req, object);
  });

  app.delete('/v1/volumes/:name', async (req, reply) => {
    const { name } = req.params as { name: string };
    await store.delete('Volume', DEFAULT_NAMESPACE, name);
    return reply.code(204).send();
  });

  app.post('/v1/volumes/:name', async (req) => {
    const { name } = req.params as { name: string };
    const action = (req.query as { action?: string }).action;
    // Longhorn clients send actions without a body as well as with `{}`.
    const body = req.body === undefined ? {} : requireObject(req.body);
    switch (action) {
      case 'attach':
        return one(req, await attachVolume(store, name, body));
      case 'detach':
        return one(req, await detachVolume(store, name, body));
      case 'updateReplicaCount': {
        if (body['replicaCount'] === undefined) {
          throw new StoreError('BadRequest', `updateReplicaCount needs {"replicaCount": N} for volume "${name}"`);
        }
        const { object } = await store.patch<Volume>('Volume', DEFAULT_NAMESPACE, name, 'merge', { spec: { numberOfReplicas: body['replicaCount'] } });
        return one(req, object);
      }
      case 'expand':
        return one(req, await expandVolume(store, name, body));
      case 'engineUpgrade':
        return one(req, await engineUpgrade(store, name, body));
      default:
        if ((SNAPSHOT_ACTIONS as readonly string[]).includes(action ?? '')) {
          const r = await snapshotAction(store, dataPlane, name, action as SnapshotAction, body, base(req));
          return r === 'volume' ? one(req, await store.get<Volume>('Volume', DEFAULT_NAMESPACE, name)) : r;
        }
        throw new StoreError('BadRequest', `unknown action "${action ?? ''}" on volume "${name}": use one of ${ACTIONS.join(', ')}`);
    }
  });
}
