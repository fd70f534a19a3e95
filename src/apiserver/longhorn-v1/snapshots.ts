// Longhorn's snapshot actions on `/v1/volumes/{name}`: snapshotCreate, snapshotList, snapshotGet, snapshotDelete,
// snapshotRevert, snapshotPurge. As in Longhorn they are synchronous calls to the volume's running engine (its
// control API on the instance manager that hosts it, under the cluster's data-plane credential); the engine makes a
// snapshot crash-consistent across the replicas. A detached volume has no engine: it is attached without a frontend
// for the action (a maintenance attach, src/api/volume.ts) and detached after. The answers are Longhorn's snapshot
// resources.

import { snapshotStatusOf, type Engine, type EngineSnapshotReport } from '../../api/engine.js';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import { MAINTENANCE_ATTACH_PREFIX, type Volume } from '../../api/volume.js';
import type { Replica } from '../../api/replica.js';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { collection } from './common.js';
import type { DataPlaneAuth } from './transfer.js';

export const SNAPSHOT_ACTIONS = ['snapshotCreate', 'snapshotList', 'snapshotGet', 'snapshotDelete', 'snapshotRevert', 'snapshotPurge'] as const;
export type SnapshotAction = (typeof SNAPSHOT_ACTIONS)[number];

/** Longhorn's snapshot resource. */
export function snapshotResource(s: EngineSnapshotReport, volume: string, base: string) {
  return {
    id: s.name,
    type: 'snapshot',
    ...snapshotStatusOf(s),
    links: { self: `${base}/v1/volumes/${volume}/snapshots/${s.name}` },
  };
}

/** How long a detached volume may take to come up for a snapshot operation. */
const MAINTENANCE_ATTACH_MS = 120_000;

async function runningEngineUrl(store: Store, volume: string): Promise<string | undefined> {
  const { items } = await store.list<Engine>('Engine', { namespace: DEFAULT_NAMESPACE, fieldSelector: `spec.volumeName=${volume}` });
  const e = items.find((x) => x.status?.currentState === 'running' && x.status.ip && x.status.port);
  if (!e) return undefined;
  const host = e.status!.ip!.includes(':') ? `[${e.status!.ip}]` : e.status!.ip;
  return `http://${host}:${e.status!.port}/v1/engines/${encodeURIComponent(e.metadata.name ?? '')}`;
}

/**
 * Runs `op` against the volume's running engine. A detached volume is attached without a frontend for it (a
 * maintenance-attach annotation of this request, on the node of one of its healthy replicas) and detached after.
 */
async function withEngine<T>(store: Store, volume: string, op: (url: string) => Promise<T>): Promise<T> {
  // A volume on its way (attaching, detaching) is waited for, briefly.
  const settle = Date.now() + 30_000;
  let v: Volume;
  for (;;) {
    v = await store.get<Volume>('Volume', DEFAULT_NAMESPACE, volume);
    const url = await runningEngineUrl(store, volume);
    if (url && v.status?.state === 'attached') return op(url);
    if (!v.spec?.nodeID && v.status?.state === 'detached') break;
    if (Date.now() > settle) {
      throw new StoreError('Conflict', `Cannot change or list the snapshots of volume "${volume}": it is ${v.status?.state || 'not ready'}; retry once it is attached or detached`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const { items } = await store.list<Replica>('Replica', { namespace: DEFAULT_NAMESPACE, fieldSelector: `spec.volumeName=${volume}` });
  const node = items.find((r) => !r.spec?.failedAt && r.spec?.healthyAt && r.spec.nodeID)?.spec?.nodeID;
  if (!node) throw new StoreError('Conflict', `Cannot change the snapshots of detached volume "${volume}": it has no healthy replica to attach it with`);
  const key = `${MAINTENANCE_ATTACH_PREFIX}api-${randomUUID().slice(0, 8)}`;
  await store.patch('Volume', DEFAULT_NAMESPACE, volume, 'merge', { metadata: { annotations: { [key]: node } } });
  try {
    const deadline = Date.now() + MAINTENANCE_ATTACH_MS;
    for (;;) {
      const u = await runningEngineUrl(store, volume);
      if (u) return await op(u);
      if (Date.now() > deadline) throw new StoreError('Conflict', `Cannot change the snapshots of detached volume "${volume}": it did not come up on node ${node} within ${MAINTENANCE_ATTACH_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await store.patch('Volume', DEFAULT_NAMESPACE, volume, 'merge', { metadata: { annotations: { [key]: null } } }).catch(() => undefined);
  }
}

async function call<T>(url: string, method: string, dataPlane: DataPlaneAuth, body?: unknown, timeoutMs = 180_000): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { ...dataPlane.headers(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new StoreError('Internal', `cannot reach the volume's engine at ${new URL(url).origin}: ${(err as Error).message}`);
  }
  const text = await res.text();
  if (res.ok) return JSON.parse(text) as T;
  let code = '';
  let message = text;
  try {
    ({ code, message } = JSON.parse(text) as { code: string; message: string });
  } catch {
    // a plain-text body
  }
  const storeCode = res.status === 404 || code === 'SnapshotUnknown' ? 'NotFound' : res.status === 400 ? 'BadRequest' : res.status === 409 ? 'Conflict' : 'Internal';
  throw new StoreError(storeCode, message);
}

function nameOf(body: Record<string, unknown>, action: string, volume: string, required: boolean): string | undefined {
  const name = body['name'];
  if (name === undefined || name === '') {
    if (required) throw new StoreError('BadRequest', `${action} needs {"name": "<snapshot>"} for volume "${volume}"`);
    return undefined;
  }
  if (typeof name !== 'string') throw new StoreError('BadRequest', `${action}: name must be a string, not ${JSON.stringify(name)}`);
  return name;
}

/**
 * Runs a snapshot action; returns the answer body, or `volume` when Longhorn answers with the volume resource
 * (delete, revert, purge) and the caller renders it.
 */
export async function snapshotAction(store: Store, dataPlane: DataPlaneAuth, volume: string, action: SnapshotAction, body: Record<string, unknown>, base: string): Promise<unknown> {
  return withEngine(store, volume, async (url) => {
    const answer = await actionOn(url, dataPlane, volume, action, body, base);
    if (action === 'snapshotCreate') await untilListed(store, volume, (answer as { name: string }).name);
    return answer;
  });
}

/** How long snapshotCreate waits for the cluster's view to list the new snapshot before it answers anyway. */
const SNAPSHOT_LISTED_MS = 10_000;

/**
 * Waits until the volume's Engine status lists snapshot `name` (the engine tells its controller at once; this is
 * well under a second), at most SNAPSHOT_LISTED_MS: a clone from the snapshot requested right after the answer is
 * then accepted, since admission checks the snapshot against the cluster's view.
 */
async function untilListed(store: Store, volume: string, name: string): Promise<void> {
  for (const until = Date.now() + SNAPSHOT_LISTED_MS; Date.now() < until; await sleep(100)) {
    const { items } = await store.list<Engine>('Engine', { namespace: DEFAULT_NAMESPACE, fieldSelector: `spec.volumeName=${volume}` });
    if (items.some((e) => e.status?.snapshots?.[name] !== undefined)) return;
  }
}

async function actionOn(url: string, dataPlane: DataPlaneAuth, volume: string, action: SnapshotAction, body: Record<string, unknown>, base: string): Promise<unknown> {
  const one = (s: EngineSnapshotReport) => snapshotResource(s, volume, base);
  switch (action) {
    case 'snapshotCreate': {
      const labels = body['labels'];
      if (labels !== undefined && labels !== null && (typeof labels !== 'object' || Object.values(labels).some((x) => typeof x !== 'string'))) {
        throw new StoreError('BadRequest', 'snapshotCreate: labels must be a map of strings');
      }
      const r = await call<{ name: string; snapshots: EngineSnapshotReport[] }>(`${url}/snapshots`, 'POST', dataPlane, { name: nameOf(body, action, volume, false), ...(labels ? { labels } : {}) });
      return one(r.snapshots.find((s) => s.name === r.name)!);
    }
    case 'snapshotList': {
      const r = await call<{ snapshots: EngineSnapshotReport[] }>(`${url}/snapshots`, 'GET', dataPlane);
      return collection('snapshot', r.snapshots.map(one), `${base}/v1/volumes/${volume}?action=snapshotList`);
    }
    case 'snapshotGet': {
      const name = nameOf(body, action, volume, true)!;
      const r = await call<{ snapshots: EngineSnapshotReport[] }>(`${url}/snapshots`, 'GET', dataPlane);
      const s = r.snapshots.find((x) => x.name === name);
      if (!s) throw new StoreError('NotFound', `Volume "${volume}" has no snapshot "${name}"`);
      return one(s);
    }
    case 'snapshotDelete':
      await call(`${url}/snapshots/${encodeURIComponent(nameOf(body, action, volume, true)!)}`, 'DELETE', dataPlane);
      return 'volume';
    case 'snapshotRevert':
      await call(`${url}/snapshots/${encodeURIComponent(nameOf(body, action, volume, true)!)}/revert`, 'POST', dataPlane);
      return 'volume';
    case 'snapshotPurge':
      await call(`${url}/purge`, 'POST', dataPlane, undefined, 30 * 60_000);
      return 'volume';
  }
}
