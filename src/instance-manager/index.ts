// instance-manager: the per-node service that hosts the replicas and engines of volumes inside its own process (no
// OS process per replica or engine), serves every replica of the node on one replica listener and every engine's
// export on one NBD listener, and reports and controls them over HTTP (docs/instance-manager-api.md).
// `startInstanceManager` runs one; `stratum instance-manager` is its process.

import { mkdir } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { NbdServer } from '../frontend/nbd/index.js';
import { SharedBackingReaders } from '../replica/shared-backing.js';
import { DataRoots } from './data-roots.js';
import { InstanceManager } from './manager.js';
import { ReplicaHub } from './replica-hub.js';
import { startImServer } from './server.js';

export { ImError, IM_ERROR_CODES, httpStatusOf, isImError } from './errors.js';
export type { ImErrorCode } from './errors.js';
export { InstanceManager } from './manager.js';
export type { WatchEvent } from './manager.js';
export type { Instance, InstanceState } from './instance.js';
export type { EngineSpec, InstanceSpec, ReplicaSpec } from './spec.js';
export { DEFAULT_DEVICE_DIR, checkName } from './spec.js';

export interface InstanceManagerOptions {
  node: string;
  /** Where the API and the replica listener listen (the NBD listener is on loopback: see NBD_HOST). */
  host: string;
  /** The API port (the replica and NBD listeners take free ports; the API reports them). */
  port: number;
  /** Also serve NBD on this Unix socket (for clients on the node: cheaper than loopback TCP). */
  nbdSocket?: string;
  /** Replica directories must be inside one of these; none: no replica can be created. */
  dataRoots?: readonly string[];
  /**
   * The cluster secret: the API, and the replica listener's OPEN, then require the cluster's credential, and this
   * manager's engines present it to remote replicas (docs/security.md). The CLI always passes one.
   */
  clusterSecret?: string;
  /**
   * Where the node's instance-name locks live; every instance manager of the node (whatever its image) must use the
   * same one. Default: one per node name and uid under the system's temporary directory.
   */
  lockDir?: string;
  nodeUid?: string;
  /** Names this manager in lock records and logs (default: the node). */
  name?: string;
  versions?: { apiVersion: number; apiMinVersion: number };
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
  replicaTimeoutMs?: number;
  heartbeatMs?: number;
  log?: (line: string) => void;
}

export interface RunningInstanceManager {
  readonly url: string;
  /** "host:port" of the replica listener and the NBD listener. */
  readonly replicaAddress: string;
  readonly nbdAddress: string;
  readonly manager: InstanceManager;
  /** Stops every instance gracefully, then the listeners. */
  close(): Promise<void>;
}

/**
 * The NBD listener serves the volumes attached on this node to this node only: NBD has no credential of its own
 * (docs/security.md, "NBD"), so it listens on loopback whatever address the node has.
 */
export const NBD_HOST = '127.0.0.1';

export function defaultLockDir(node: string, nodeUid?: string): string {
  return join(tmpdir(), `stratum-${userInfo().username}`, 'instances', nodeUid ? `${node}-${nodeUid}` : node);
}

export async function startInstanceManager(opts: InstanceManagerOptions): Promise<RunningInstanceManager> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const lockDir = opts.lockDir ?? defaultLockDir(opts.node, opts.nodeUid);
  await mkdir(lockDir, { recursive: true, mode: 0o700 });
  const hub = new ReplicaHub(log, opts.clusterSecret);
  const nbd = new NbdServer({ onError: (err) => log(`nbd: ${err.message}`) });
  const replicaAddress = await hub.listen(opts.host);
  await nbd.listen({ host: NBD_HOST, port: 0 });
  if (opts.nbdSocket) await nbd.listen({ path: opts.nbdSocket });
  const t = nbd.address().tcp;
  const nbdAddress = t ? (t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`) : '';
  const dataRoots = new DataRoots(opts.dataRoots);
  // The API's address is known only once it listens; instances are created only through it, so none reads it early.
  const ctx = {
    hub,
    nbd,
    apiAddress: '',
    backingReaders: new SharedBackingReaders(),
    lockDir,
    dataRoots,
    holder: `instance manager ${opts.name ?? opts.node} (pid ${process.pid}) on node ${opts.node}`,
    startTimeoutMs: opts.startTimeoutMs ?? 60_000,
    stopTimeoutMs: opts.stopTimeoutMs ?? 10_000,
    replicaTimeoutMs: opts.replicaTimeoutMs ?? 8000,
    log,
  };
  const manager = new InstanceManager(ctx);
  const server = await startImServer({
    manager,
    node: opts.node,
    versions: opts.versions ?? { apiVersion: 2, apiMinVersion: 2 },
    dataRoots,
    clusterSecret: opts.clusterSecret,
    host: opts.host,
    port: opts.port,
    listeners: { replica: replicaAddress, nbd: nbdAddress },
    ...(opts.heartbeatMs === undefined ? {} : { heartbeatMs: opts.heartbeatMs }),
  });
  ctx.apiAddress = new URL(server.url).host;
  return {
    url: server.url,
    replicaAddress,
    nbdAddress,
    manager,
    close: async () => {
      // Instances first: their MODIFIED events (stopping, stopped) still reach watchers before the streams end.
      await manager.close();
      await server.close();
      await Promise.all([hub.close(AbortSignal.timeout(5000)), nbd.close({ signal: AbortSignal.timeout(5000) })]);
    },
  };
}
