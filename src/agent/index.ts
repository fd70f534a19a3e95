// The node agent (`stratum node`): registers its node and disks, heartbeats, and runs the Pods bound to its
// node as OS processes from the image catalog. Everything it needs from the manager goes through the Store
// interface over HTTP; everything it must remember across restarts lives in its data directory.
//
//   <data-dir>/agent.lock           one agent per directory
//   <data-dir>/cluster-secret       the cluster secret (0600), named to pods by STRATUM_CLUSTER_SECRET_FILE
//   <data-dir>/pods/<ns>_<name>_<uid>/   per-pod record, logs, shim status files (see pod-record.ts)
//
// Stopping: abort `signal` → the agent stops watching and exits, pods keep running (a restarted agent adopts
// them). Call `stopPods()` first to stop them too.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { clusterAuthHeaders, writeSecretFile } from '../auth/index.js';
import { HttpStore } from '../client/http-store.js';
import { consoleLogger, errorMessage, type Logger } from '../controller-kit/log.js';
import { backoffPolicy } from './backoff.js';
import type { DiskFlag } from './disks.js';
import { isAgentError } from './errors.js';
import { loadCatalog } from './images.js';
import { lockDataDir } from './lock.js';
import { PortAllocator } from './ports.js';
import { NodeRegistration } from './registration.js';
import { PodRuntime } from './runtime.js';
import { startAgentServer } from './server.js';
import { pause } from './sleep.js';

export { AgentError, isAgentError, type AgentErrorCode } from './errors.js';
export { agentPodLogs } from './log-client.js';
export { formatCatalog, loadCatalog, BUILTIN_IMAGES, type ImageEntry } from './images.js';
export { parseDiskFlag, type DiskFlag } from './disks.js';
export { parsePortRange, portIsFree } from './ports.js';
export { lockDataDir } from './lock.js';
export { PORTS_ANNOTATION, POD_FINALIZER } from './pod-spec.js';

const CLUSTER_SECRET_FILE = 'cluster-secret';

export interface AgentOptions {
  nodeName: string;
  managerUrl: string;
  /** The node's API token (role node) and the cluster secret (node credentials file). */
  credentials: { token: string; clusterSecret: string };
  disks: DiskFlag[];
  dataDir: string;
  /** The node's IP: pods' hostIP/podIP, where probes connect, where the agent's endpoint listens. */
  address: string;
  /** Catalog files added to the built-in catalog, in order (a release file last). */
  imagesFile?: string | readonly string[] | undefined;
  /** First crash-loop backoff step (kubelet: 10 s); the cap is 30× unless given. */
  restartBackoffMs?: number | undefined;
  restartBackoffMaxMs?: number | undefined;
  heartbeatIntervalMs?: number | undefined;
  diskSyncIntervalMs?: number | undefined;
  portDir?: string | undefined;
  portRange?: readonly [number, number] | undefined;
  /** Port of the agent's HTTP endpoint; default any free one. */
  listenPort?: number | undefined;
  logger?: Logger;
  signal: AbortSignal;
}

export interface RunningAgent {
  /** The agent's HTTP endpoint (pod logs), as published on its Node. */
  url: string;
  /** Stops every pod's process (SIGTERM, grace, SIGKILL) and waits; call before aborting to leave nothing running. */
  stopPods(): Promise<void>;
  /** Resolves once the agent stopped after `signal` aborted. */
  done: Promise<void>;
  /** Replaces the image catalog (an upgrade brings a release); pods started later use the new entries. */
  reloadCatalog(files: readonly string[]): void;
}

export async function startAgent(o: AgentOptions): Promise<RunningAgent> {
  const logger = o.logger ?? consoleLogger;
  const dataDir = resolve(o.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const lock = await lockDataDir(dataDir);
  try {
    const store = new HttpStore({ server: o.managerUrl, timeoutMs: 15_000, token: o.credentials.token });
    // Pods get the secret through a file of the agent's own (0600), never in their environment or argv.
    const clusterSecretFile = join(dataDir, CLUSTER_SECRET_FILE);
    writeSecretFile(clusterSecretFile, o.credentials.clusterSecret);
    const catalog = loadCatalog(o.imagesFile);
    const ports = new PortAllocator({ ...(o.portDir ? { dir: o.portDir } : {}), ...(o.portRange ? { range: o.portRange } : {}) });
    const runtime = new PodRuntime({
      store,
      nodeName: o.nodeName,
      hostIP: o.address,
      managerUrl: o.managerUrl,
      clusterSecretFile,
      probeHeaders: clusterAuthHeaders(o.credentials.clusterSecret),
      dataDir,
      catalog,
      ports,
      backoff: backoffPolicy(o.restartBackoffMs ?? 10_000, o.restartBackoffMaxMs ?? (o.restartBackoffMs ?? 10_000) * 30),
      logger,
    });
    const server = await startAgentServer({ host: o.address, port: o.listenPort ?? 0, logs: (ns, name, q) => runtime.logSource(ns, name, q), clusterSecret: o.credentials.clusterSecret });
    const registration = new NodeRegistration({
      store,
      nodeName: o.nodeName,
      disks: o.disks,
      agentUrl: server.url,
      logger,
      ...(o.heartbeatIntervalMs ? { heartbeatIntervalMs: o.heartbeatIntervalMs } : {}),
      ...(o.diskSyncIntervalMs ? { diskSyncIntervalMs: o.diskSyncIntervalMs } : {}),
    });
    await registerUntilDone(registration, o.managerUrl, logger, o.signal);
    logger.info(`stratum node ${o.nodeName}: registered with ${o.managerUrl}; endpoint ${server.url}; data in ${dataDir}`);
    const done = Promise.all([runtime.run(o.signal), registration.run(o.signal)]).finally(async () => {
      await server.close();
      await lock.release();
    });
    return {
      url: server.url,
      stopPods: () => runtime.stopPods(),
      done: done.then(() => undefined),
      reloadCatalog: (files) => {
        catalog.replace(loadCatalog(files));
        logger.info(`stratum node ${o.nodeName}: image catalog reloaded from ${files.join(', ') || 'the built-in entries'}`);
      },
    };
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/**
 * Registers, retrying while the manager is unreachable (it may still be starting). A refusal (AgentError, e.g.
 * the node name is in use) is final. Resolves early when aborted.
 */
async function registerUntilDone(r: NodeRegistration, managerUrl: string, logger: Logger, signal: AbortSignal): Promise<void> {
  let last = '';
  for (let delay = 200; !signal.aborted; delay = Math.min(delay * 2, 5000)) {
    try {
      await r.register();
      return;
    } catch (err) {
      if (isAgentError(err)) throw err;
      const msg = errorMessage(err);
      if (msg !== last) logger.warn(`cannot register with the manager at ${managerUrl} yet; retrying (is \`stratum manager\` running?)`, { error: msg });
      last = msg;
    }
    await pause(delay, signal);
  }
}
