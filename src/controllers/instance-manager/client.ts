// The controller side of the instance manager's HTTP API (docs/instance-manager-api.md), engines' control API
// included: what the replica, engine and instance-manager
// controllers call. Every call has a timeout; errors carry the remote's own message and HTTP status.

import type { SnapshotInfo } from '../../replica/index.js';
import type { EngineStatus as LiveEngineStatus } from '../../engine/types.js';
import type { CloneProgress } from '../../engine/clone.js';
import type { Instance } from '../../instance-manager/instance.js';
import type { EngineSpec as EngineInstanceSpec, ReplicaSpec as ReplicaInstanceSpec } from '../../instance-manager/spec.js';
import { callJson, isRemoteNotFound } from '../common/http-json.js';

// The shapes are the instance manager's own (one definition for both sides of the API).
export type { Instance } from '../../instance-manager/instance.js';

export interface RemovedData {
  dir: string;
  removed: boolean;
}

export class InstanceManagerClient {
  readonly base: string;
  readonly #timeoutMs: number;

  constructor(base: string, timeoutMs = 10_000) {
    this.base = base.replace(/\/+$/, '');
    this.#timeoutMs = timeoutMs;
  }

  version(signal?: AbortSignal) {
    return callJson<{ apiVersion: number; apiMinVersion: number }>(this.base, 'GET', '/v1/version', this.#timeoutMs, undefined, signal);
  }

  async list(signal?: AbortSignal): Promise<Instance[]> {
    return (await callJson<{ instances: Instance[] }>(this.base, 'GET', '/v1/instances', this.#timeoutMs, undefined, signal)).instances;
  }

  watchUrl(): string {
    return `${this.base}/v1/instances?watch=true`;
  }

  createReplica(name: string, replica: ReplicaInstanceSpec, signal?: AbortSignal) {
    return callJson<Instance>(this.base, 'POST', '/v1/instances', this.#timeoutMs, { name, type: 'replica', replica }, signal);
  }

  createEngine(name: string, engine: EngineInstanceSpec, signal?: AbortSignal) {
    return callJson<Instance>(this.base, 'POST', '/v1/instances', this.#timeoutMs, { name, type: 'engine', engine }, signal);
  }

  /** A live engine upgrade: the engine is replaced under its frontend (docs/upgrade.md). */
  async swapEngine(name: string, image: string, opts: { signal?: AbortSignal } = {}): Promise<{ image: string; heldMs: number }> {
    return (await callJson(this.base, 'POST', `/v1/engines/${encodeURIComponent(name)}/swap`, 70_000, { image }, opts.signal)) as { image: string; heldMs: number };
  }

  /** Stops the instance (and with `cleanup`, removes a replica's directory); a missing instance is not an error. */
  async delete(name: string, opts: { cleanup?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    try {
      // Stopping waits out the instance's grace period (10 s) on the server side.
      await callJson(this.base, 'DELETE', `/v1/instances/${encodeURIComponent(name)}${opts.cleanup ? '?cleanup=true' : ''}`, 30_000, undefined, opts.signal);
    } catch (err) {
      if (!isRemoteNotFound(err)) throw err;
    }
  }

  /** Makes `dataRoots` (the node's disk paths) the disks the manager may open replicas on; returns the new list. */
  async setDataRoots(dataRoots: readonly string[], signal?: AbortSignal): Promise<string[]> {
    return (await callJson<{ dataRoots: string[] }>(this.base, 'PUT', '/v1/data-roots', this.#timeoutMs, { dataRoots }, signal)).dataRoots;
  }

  /** Removes the data directory of a replica that is not running. */
  removeReplicaData(dir: string, signal?: AbortSignal) {
    return callJson<RemovedData>(this.base, 'DELETE', `/v1/replica-data?dir=${encodeURIComponent(dir)}`, 30_000, undefined, signal);
  }
}


/** An engine's control API, served by the instance manager that hosts it under /v1/engines/{name}. */
export class EngineControlClient {
  readonly base: string;
  readonly #path: string;

  /** `address`: "host:port" of the instance manager's API (the engine instance's `control`). */
  constructor(address: string, engine: string) {
    this.base = `http://${address}`;
    this.#path = `/v1/engines/${encodeURIComponent(engine)}`;
  }

  status(signal?: AbortSignal) {
    return callJson<LiveEngineStatus>(this.base, 'GET', this.#path, 5000, undefined, signal);
  }

  watchUrl(): string {
    return `${this.base}${this.#path}?watch=true`;
  }

  addReplica(name: string, address: string, signal?: AbortSignal) {
    return callJson<LiveEngineStatus>(this.base, 'POST', `${this.#path}/replicas`, 15_000, { name, address }, signal);
  }

  removeReplica(name: string, signal?: AbortSignal) {
    return callJson<LiveEngineStatus>(this.base, 'DELETE', `${this.#path}/replicas/${encodeURIComponent(name)}`, 15_000, undefined, signal);
  }

  async snapshots(signal?: AbortSignal): Promise<SnapshotInfo[]> {
    return (await callJson<{ snapshots: SnapshotInfo[] }>(this.base, 'GET', `${this.#path}/snapshots`, 30_000, undefined, signal)).snapshots;
  }

  createSnapshot(name: string, labels: Record<string, string>, signal?: AbortSignal) {
    return callJson<{ name: string; snapshots: SnapshotInfo[] }>(this.base, 'POST', `${this.#path}/snapshots`, 180_000, { name, labels }, signal);
  }

  deleteSnapshot(name: string, signal?: AbortSignal) {
    return callJson<{ snapshots: SnapshotInfo[] }>(this.base, 'DELETE', `${this.#path}/snapshots/${encodeURIComponent(name)}`, 180_000, undefined, signal);
  }

  /** A volume clone's copy onto this engine (docs/instance-manager-api.md, "Clone"). */
  startClone(req: { sourceVolume: string; snapshot: string; sourceSize: number; replicaName: string; replicaAddress: string }, signal?: AbortSignal) {
    return callJson<CloneProgress>(this.base, 'POST', `${this.#path}/clone`, 15_000, req, signal);
  }

  /** Its progress; a remote 404 (isRemoteNotFound) when none was asked of the running engine. */
  cloneStatus(signal?: AbortSignal) {
    return callJson<CloneProgress>(this.base, 'GET', `${this.#path}/clone`, 5000, undefined, signal);
  }
}
