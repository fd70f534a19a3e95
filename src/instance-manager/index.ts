// instance-manager: the per-node service that hosts the replicas and engines of volumes as child processes
// (`stratum replica`, `stratum engine`), reports their state from the children's own ready lines and exits, and
// serves that over HTTP (docs/instance-manager-api.md). `startInstanceManager` runs one; `stratum
// instance-manager` is its process.

import { fileURLToPath } from 'node:url';
import { InstanceManager } from './manager.js';
import { startImServer } from './server.js';

export { ImError, IM_ERROR_CODES, httpStatusOf, isImError } from './errors.js';
export type { ImErrorCode } from './errors.js';
export { InstanceManager } from './manager.js';
export type { ManagerOptions, WatchEvent } from './manager.js';
export type { Instance, InstanceState } from './instance.js';
export type { EngineSpec, InstanceSpec, ReplicaSpec } from './spec.js';
export { DEFAULT_DEVICE_DIR, checkName } from './spec.js';

/** The compiled CLI the children run (this file runs from dist/src/instance-manager). */
export const CLI_PATH = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface InstanceManagerOptions {
  node: string;
  /** Where the API listens, and the address children listen on. */
  host: string;
  port: number;
  dataRoots?: readonly string[];
  versions?: { apiVersion: number; apiMinVersion: number };
  readyTimeoutMs?: number;
  stopGraceMs?: number;
  heartbeatMs?: number;
  log?: (line: string) => void;
}

export interface RunningInstanceManager {
  readonly url: string;
  readonly manager: InstanceManager;
  /** Stops every child gracefully, then the server. */
  close(): Promise<void>;
}

export async function startInstanceManager(opts: InstanceManagerOptions): Promise<RunningInstanceManager> {
  const manager = new InstanceManager({
    host: opts.host,
    command: [process.execPath, CLI_PATH],
    ...(opts.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: opts.readyTimeoutMs }),
    ...(opts.stopGraceMs === undefined ? {} : { stopGraceMs: opts.stopGraceMs }),
    ...(opts.log ? { log: opts.log } : {}),
  });
  const server = await startImServer({
    manager,
    node: opts.node,
    versions: opts.versions ?? { apiVersion: 1, apiMinVersion: 1 },
    dataRoots: opts.dataRoots ?? [],
    host: opts.host,
    port: opts.port,
    ...(opts.heartbeatMs === undefined ? {} : { heartbeatMs: opts.heartbeatMs }),
  });
  return {
    url: server.url,
    manager,
    close: async () => {
      // Children first: their MODIFIED events (stopping, stopped) still reach watchers before the streams end.
      await manager.close();
      await server.close();
    },
  };
}
