// `stratum manager`: the control plane in one process — the durable store, the API server in front of it, and the
// controllers. It owns no data-plane process; killing it stops no pod. On SQLite it is the only manager; on etcd
// (`etcd` option) several run, all serve the API, and only the elected leader runs the controllers (etcd-mode.ts).

import { join } from 'node:path';
import { collectDefaultMetrics } from 'prom-client';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../api/meta.js';
import { SETTINGS } from '../api/settings.js';
import { agentPodLogs } from '../agent/log-client.js';
import { startApiServer, type ApiServer } from '../apiserver/server.js';
import { metricsRegistry } from '../controller-kit/metrics.js';
import { isAlreadyExists } from '../store/errors.js';
import { openStore } from '../store/index.js';
import type { ResourceStore } from '../store/resource-store.js';
import { startControllers } from './controllers.js';
import { registerLonghornV1 } from '../apiserver/longhorn-v1/index.js';
import { backingImageAdmission } from '../controllers/backing-image/admission.js';
import { volumeAdmission } from '../controllers/volume/admission.js';
import { defaultIdentity, openEtcdControlPlane } from './etcd-mode.js';

export interface ManagerOptions {
  dataDir: string;
  host?: string;
  port?: number;
  signal: AbortSignal;
  log?: (line: string) => void;
  /** Catalog images of data-plane components (Longhorn's --backing-image-manager-image); written to their settings. */
  images?: { backingImageManager?: string | undefined; instanceManager?: string | undefined };
  /** Client URLs of an etcd cluster: keep the state there and elect a leader among the managers sharing it. */
  etcd?: string[] | undefined;
  /** Key prefix of this cluster in etcd (default /stratum/). */
  etcdPrefix?: string | undefined;
  /** Leader lease duration (ms) on etcd. */
  leaseMs?: number | undefined;
}

export interface RunningManager {
  store: ResourceStore;
  api: ApiServer;
  /** Resolves once everything has stopped (after `signal` aborts). */
  done: Promise<void>;
}

/** Creates every catalogued Setting that does not exist yet, with its default value. */
export async function ensureSettings(store: ResourceStore): Promise<void> {
  for (const def of SETTINGS) {
    try {
      await store.create({
        apiVersion: LONGHORN_API_VERSION,
        kind: 'Setting',
        metadata: { name: def.name, namespace: DEFAULT_NAMESPACE },
        value: def.default,
      });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }
}

export async function startManager(opts: ManagerOptions): Promise<RunningManager> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const admission = [backingImageAdmission, volumeAdmission];
  const port = opts.port ?? 9500;
  const cp = opts.etcd
    ? await openEtcdControlPlane({
        endpoints: opts.etcd,
        ...(opts.etcdPrefix ? { prefix: opts.etcdPrefix } : {}),
        ...(opts.leaseMs ? { leaseMs: opts.leaseMs } : {}),
        identity: defaultIdentity(port),
        admission,
        log,
      })
    : undefined;
  const sqlite = cp ? undefined : await openStore({ path: join(opts.dataDir, 'state.db'), admission });
  const store = cp?.apiStore ?? (sqlite as NonNullable<typeof sqlite>).store;
  const closeStore = async () => (cp ? cp.close() : sqlite?.close());
  await ensureSettings(store);
  // The default images are the manager's to decide (read-only settings): an upgrade starts the manager with new
  // ones, and the controllers then retire managers of the old image.
  const pin = async (name: string, value: string | undefined) => {
    if (value) await store.patch('Setting', DEFAULT_NAMESPACE, name, 'merge', { value });
  };
  await pin('default-backing-image-manager-image', opts.images?.backingImageManager);
  await pin('default-instance-manager-image', opts.images?.instanceManager);
  // One registry for the process: the controller kit's queue and reconcile metrics plus Node's defaults.
  const metrics = metricsRegistry;
  if (!metrics.getSingleMetric('process_cpu_user_seconds_total')) collectDefaultMetrics({ register: metrics });
  const controllers = cp
    ? {
        stopped: cp.run(opts.signal, async (term) => {
          await startControllers({ store: cp.controllerStore, metrics, signal: term.signal, log }).stopped;
        }),
      }
    : startControllers({ store, metrics, signal: opts.signal, log });
  const api = await startApiServer({
    store,
    host: opts.host ?? '127.0.0.1',
    port,
    metrics,
    podLogs: agentPodLogs(store),
    extend: async (app) => {
      cp?.extendApi(app);
      registerLonghornV1(app, store);
    },
  });
  log(`stratum manager: API server listening on ${api.url} (${opts.etcd ? `state in etcd ${opts.etcd.join(',')}` : `data in ${opts.dataDir}`})`);
  const done = new Promise<void>((resolve) => {
    const stop = async () => {
      await api.close().catch(() => undefined);
      await controllers.stopped;
      await closeStore();
      resolve();
    };
    if (opts.signal.aborted) void stop();
    else opts.signal.addEventListener('abort', () => void stop(), { once: true });
  });
  return { store, api, done };
}
