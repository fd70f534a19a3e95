// The controller side of the instance manager's HTTP API (docs/instance-manager-api.md) and of the engine's
// control API (docs/replica-protocol.md, "Engine control API"): what the replica, engine and instance-manager
// controllers call. Every call has a timeout; errors carry the remote's own message and HTTP status.

import type { EngineStatus as LiveEngineStatus } from '../../engine/types.js';

export type InstanceState = 'starting' | 'running' | 'stopping' | 'stopped' | 'error';

export interface ReplicaInstanceSpec {
  dir: string;
  size: number;
  blockSize?: number;
  backing?: { name: string; uuid: string; path: string };
}

export interface EngineInstanceSpec {
  volume: string;
  size: number;
  replicas: { name: string; address: string }[];
  frontend: 'nbd' | 'blockdev' | 'none';
  deviceDir?: string;
}

export interface Instance {
  name: string;
  type: 'replica' | 'engine';
  state: InstanceState;
  pid?: number;
  /** Replica: host:port. */
  address?: string;
  /** Engine: the NBD URI, control address and block device. */
  nbd?: string;
  control?: string;
  device?: string;
  errorMsg?: string;
  exitCode?: number;
  signal?: string;
  startedAt?: string;
}

export class RemoteError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.name = 'RemoteError';
    this.status = status;
  }
}

export const isRemoteNotFound = (err: unknown) => err instanceof RemoteError && err.status === 404;

async function call<T>(base: string, method: string, path: string, timeoutMs: number, body?: unknown, signal?: AbortSignal): Promise<T> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  });
  const text = await res.text();
  if (!res.ok) {
    let msg = text;
    try {
      msg = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // plain-text error body
    }
    throw new RemoteError(`${method} ${base}${path}: HTTP ${res.status}: ${msg.trim()}`, res.status);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

export class InstanceManagerClient {
  readonly base: string;
  readonly #timeoutMs: number;

  constructor(base: string, timeoutMs = 10_000) {
    this.base = base.replace(/\/+$/, '');
    this.#timeoutMs = timeoutMs;
  }

  version(signal?: AbortSignal) {
    return call<{ apiVersion: number; apiMinVersion: number }>(this.base, 'GET', '/v1/version', this.#timeoutMs, undefined, signal);
  }

  async list(signal?: AbortSignal): Promise<Instance[]> {
    return (await call<{ instances: Instance[] }>(this.base, 'GET', '/v1/instances', this.#timeoutMs, undefined, signal)).instances;
  }

  watchUrl(): string {
    return `${this.base}/v1/instances?watch=true`;
  }

  createReplica(name: string, replica: ReplicaInstanceSpec, signal?: AbortSignal) {
    return call<Instance>(this.base, 'POST', '/v1/instances', this.#timeoutMs, { name, type: 'replica', replica }, signal);
  }

  createEngine(name: string, engine: EngineInstanceSpec, signal?: AbortSignal) {
    return call<Instance>(this.base, 'POST', '/v1/instances', this.#timeoutMs, { name, type: 'engine', engine }, signal);
  }

  /** Stops the instance (and with `cleanup`, removes a replica's directory); a missing instance is not an error. */
  async delete(name: string, opts: { cleanup?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    try {
      // Stopping waits out the instance's grace period (10 s) on the server side.
      await call(this.base, 'DELETE', `/v1/instances/${encodeURIComponent(name)}${opts.cleanup ? '?cleanup=true' : ''}`, 30_000, undefined, opts.signal);
    } catch (err) {
      if (!isRemoteNotFound(err)) throw err;
    }
  }

  /** Removes the data directory of a replica that is not running. */
  removeReplicaData(dir: string, signal?: AbortSignal) {
    return call<RemovedData>(this.base, 'DELETE', `/v1/replica-data?dir=${encodeURIComponent(dir)}`, 30_000, undefined, signal);
  }
}

export interface RemovedData {
  dir: string;
  removed: boolean;
}

/** The engine process's control API. */
export class EngineControlClient {
  readonly base: string;

  constructor(address: string) {
    this.base = `http://${address}`;
  }

  status(signal?: AbortSignal) {
    return call<LiveEngineStatus>(this.base, 'GET', '/v1/engine', 5000, undefined, signal);
  }

  watchUrl(): string {
    return `${this.base}/v1/engine?watch=true`;
  }

  addReplica(name: string, address: string, signal?: AbortSignal) {
    return call<LiveEngineStatus>(this.base, 'POST', '/v1/engine/replicas', 15_000, { name, address }, signal);
  }

  removeReplica(name: string, signal?: AbortSignal) {
    return call<LiveEngineStatus>(this.base, 'DELETE', `/v1/engine/replicas/${encodeURIComponent(name)}`, 15_000, undefined, signal);
  }
}
