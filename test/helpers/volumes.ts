// Test helpers for volumes on a running cluster: create, attach, detach and wait through the Kubernetes-style
// API, and read the engine and replica objects the controllers made. Failures name the last state seen.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { authFor } from './credentials.js';
import { waitFor } from './processes.js';

export const NS = 'longhorn-system';
const BASE = `/apis/longhorn.io/v1beta2/namespaces/${NS}`;

export interface Cond {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface VolumeView {
  metadata: { name: string; resourceVersion?: string };
  spec: { size: string; nodeID?: string; numberOfReplicas: number; backingImage?: string; frontend?: string };
  status?: { state?: string; robustness?: string; currentNodeID?: string; lastDegradedAt?: string; endpoint?: string; nbdEndpoint?: string; conditions?: Cond[] };
}

export interface EngineView {
  metadata: { name: string };
  spec: { nodeID?: string; desireState?: string; replicaAddressMap?: Record<string, string> };
  status?: { currentState?: string; endpoint?: string; nbdEndpoint?: string; replicaModeMap?: Record<string, string>; rebuildStatus?: Record<string, unknown> };
}

export interface ReplicaView {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { nodeID: string; diskID: string; diskPath: string; dataDirectoryName: string; failedAt?: string; healthyAt?: string; volumeName: string };
  status?: { currentState?: string; instanceManagerName?: string; conditions?: Cond[] };
}

export class Volumes {
  constructor(readonly url: string) {}

  async req<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: T }> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { ...authFor(this.url), ...(body === undefined ? {} : { 'content-type': contentType }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : {}) as T };
  }

  async create(name: string, spec: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> {
    return this.req('POST', `${BASE}/volumes`, { apiVersion: 'longhorn.io/v1beta2', kind: 'Volume', metadata: { name, namespace: NS }, spec });
  }

  async get(name: string): Promise<VolumeView> {
    const r = await this.req<VolumeView>('GET', `${BASE}/volumes/${name}`);
    if (r.status !== 200) throw new Error(`volume ${name}: HTTP ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  }

  /** Messages of the events about a volume and its engine, oldest first. */
  async eventsFor(volume: string): Promise<string[]> {
    const r = await this.req<{ items: { involvedObject?: { name?: string }; message?: string }[] }>('GET', `/api/v1/namespaces/${NS}/events`);
    return r.json.items.filter((e) => e.involvedObject?.name === volume || e.involvedObject?.name === `${volume}-e-0`).map((e) => e.message ?? '');
  }

  async engine(volume: string): Promise<EngineView> {
    const r = await this.req<EngineView>('GET', `${BASE}/engines/${volume}-e-0`);
    if (r.status !== 200) throw new Error(`engine of ${volume}: HTTP ${r.status}`);
    return r.json;
  }

  async replicas(volume: string): Promise<ReplicaView[]> {
    const r = await this.req<{ items: ReplicaView[] }>('GET', `${BASE}/replicas`);
    return r.json.items.filter((x) => x.spec.volumeName === volume);
  }

  async instanceManagers(): Promise<{ spec: { nodeID: string }; status?: { instanceReplicas?: Record<string, { status?: { pid?: number; state?: string } }> } }[]> {
    return (await this.req<{ items: [] }>('GET', `${BASE}/instancemanagers`)).json.items;
  }

  async setNode(name: string, nodeID: string): Promise<void> {
    const r = await this.req('PATCH', `${BASE}/volumes/${name}`, { spec: { nodeID } }, 'application/merge-patch+json');
    if (r.status !== 200) throw new Error(`patch volume ${name}: HTTP ${r.status} ${JSON.stringify(r.json)}`);
  }

  /** Waits until `pred` holds of the volume; the timeout message shows its last state and conditions. */
  async waitVolume(name: string, what: string, pred: (v: VolumeView) => boolean, timeoutMs = 90_000): Promise<VolumeView> {
    let last: VolumeView | undefined;
    try {
      return await waitFor(what, async () => {
        last = await this.get(name);
        return pred(last) ? last : undefined;
      }, timeoutMs);
    } catch (err) {
      const conds = (last?.status?.conditions ?? []).map((c) => `${c.type}=${c.status} ${c.reason ?? ''} ${c.message ?? ''}`).join(' | ');
      throw new Error(`${(err as Error).message}; volume ${name} last ${last?.status?.state}/${last?.status?.robustness}: ${conds}`);
    }
  }

  /** Attaches and waits until attached with an endpoint; returns the engine (endpoint, NBD URI). */
  async attach(name: string, nodeID: string, timeoutMs = 120_000): Promise<EngineView> {
    await this.setNode(name, nodeID);
    await this.waitVolume(name, `volume ${name} attached on ${nodeID}`, (v) => v.status?.state === 'attached' && v.status.currentNodeID === nodeID, timeoutMs);
    return waitFor(`engine of ${name} has an endpoint`, async () => {
      const e = await this.engine(name);
      return e.status?.endpoint ? e : undefined;
    });
  }

  async detach(name: string, timeoutMs = 60_000): Promise<void> {
    await this.setNode(name, '');
    await this.waitVolume(name, `volume ${name} detached`, (v) => v.status?.state === 'detached', timeoutMs);
  }

  async delete(name: string): Promise<void> {
    await this.req('DELETE', `${BASE}/volumes/${name}`);
    await waitFor(`volume ${name} gone`, async () => (await this.req('GET', `${BASE}/volumes/${name}`)).status === 404, 60_000);
  }
}

/** "nbd://host:port/export" → its parts. */
export function parseNbdUri(uri: string): { host: string; port: number; exportName: string } {
  const u = new URL(uri);
  return { host: u.hostname, port: Number(u.port || 10809), exportName: decodeURIComponent(u.pathname.replace(/^\//, '')) };
}

/**
 * The OS locks held on a replica directory's lock file, from /proc/locks (an open-file-description lock per
 * opener: exactly one while the replica is open, none once it is closed or its process died).
 */
export function replicaLockHolders(replicaDir: string): string[] {
  let ino: number;
  try {
    ino = statSync(join(replicaDir, 'replica.lock')).ino;
  } catch {
    return [];
  }
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((l) => l.split(/\s+/).some((f) => f.endsWith(`:${ino}`)));
}
