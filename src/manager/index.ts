// `stratum manager`: the control plane in one process — the durable store, the API server in front of it, and the
// controllers. It owns no data-plane process; killing it stops no pod. On SQLite it is the only manager; on etcd
// (`etcd` option) several run, all serve the API, and only the elected leader runs the controllers (etcd-mode.ts).

import { readFileSync } from 'node:fs';
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
import { DEFAULT_EVENT_TTL_MS, startEventExpiry } from './event-expiry.js';
import { registerLonghornV1 } from '../apiserver/longhorn-v1/index.js';
import { registerUiRoutes } from '../apiserver/ui/index.js';
import { backingImageAdmission } from '../controllers/backing-image/admission.js';
import { volumeAdmission } from '../controllers/volume/admission.js';
import { claimAdmission } from '../controllers/provisioner/admission.js';
import { nodeAdmission } from '../controllers/node/admission.js';
import { defaultIdentity, openEtcdControlPlane } from './etcd-mode.js';
import { useDataPlaneCredential } from '../controllers/common/http-json.js';
import { loadManagerCredentials, policyContext } from './credentials.js';
import { loadCatalog } from '../agent/images.js';
import { podAdmission } from '../agent/pod-admission.js';
import { backingImageDataSourceAdmission } from '../controllers/backing-image-data-source/admission.js';
import { registerUpgradeRoutes } from '../apiserver/longhorn-v1/upgrade.js';
import { activeRelease, releaseSettings, upgrader } from './upgrade.js';
import { RELEASE_FILE, syncReleaseFromEtcd, watchReleaseInEtcd, writeReleaseToEtcd } from './release-store.js';
import { parseRelease } from '../release/index.js';

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
  /** Image catalog files added to the built-in one: Pods may use only catalog images (pod admission). */
  imagesFiles?: readonly string[];
  /** Asks the supervisor to restart this manager (an accepted upgrade); without it upgrades are refused. */
  restart?: () => void;
  /** DNS names the API answers for besides IP literals and localhost (Host check against DNS rebinding). */
  advertiseHosts?: string[];
  /** Origins allowed to call the API from a browser on another origin; none: CORS off. */
  corsOrigins?: string[];
  /** Events older than this are deleted (default one hour, as Kubernetes' --event-ttl). */
  eventTtlMs?: number;
}

export interface RunningManager {
  store: ResourceStore;
  api: ApiServer;
  /**
   * Resolves once everything has stopped: after `signal` aborts, or, on etcd without a supervisor (`restart`), once
   * the cluster's release changed under this manager. Then `releaseChanged` says so, and the manager must be
   * started again to run the new release.
   */
  done: Promise<void>;
  readonly releaseChanged: string | undefined;
}

/**
 * The exit status of a manager that stopped because the cluster's release changed (EX_TEMPFAIL of sysexits.h): its
 * service manager should start it again, as systemd's `Restart=on-failure` does, and it then runs the new release.
 */
export const EXIT_RELEASE_CHANGED = 75;

/** "release 1.1.0", or what the stored text is when it is not a release, for the manager's log. */
function describeRelease(text: string | undefined): string {
  if (text === undefined) return 'none stored (the built-in release)';
  try {
    return `release ${parseRelease(text, 'the release stored in etcd').version}`;
  } catch (err) {
    return `a release that does not parse (${(err as Error).message})`;
  }
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
  // Confinement (docs/security.md): Pods only as the catalog allows, data sources only on registered disks.
  // The active release (src/manager/upgrade.ts): its images join the catalog, its defaults and API ranges rule. On
  // etcd it is the one stored there, the same for every manager (release-store.ts).
  const etcdRelease = opts.etcd ? { endpoints: opts.etcd, prefix: opts.etcdPrefix } : undefined;
  if (etcdRelease) {
    const did = await syncReleaseFromEtcd({ ...etcdRelease, dataDir: opts.dataDir, signal: opts.signal });
    if (did === 'written' || did === 'removed') log(`stratum manager: ${did} ${join(opts.dataDir, RELEASE_FILE)} to match the release stored in etcd`);
  }
  const active = activeRelease(opts.dataDir);
  // Managers under `stratum up` are all restarted by it when an upgrade is accepted. One without it stops itself when
  // the release changes (release-store.ts), so that no leader keeps running controllers of the old release.
  const self = new AbortController();
  const signal = AbortSignal.any([opts.signal, self.signal]);
  const startedOn = active.file ? readFileSync(active.file, 'utf8') : undefined;
  const imagesFiles = [...(opts.imagesFiles ?? []), ...(active.file ? [active.file] : [])];
  const catalog = loadCatalog(imagesFiles);
  const admission = [backingImageAdmission, volumeAdmission, claimAdmission, nodeAdmission, podAdmission(catalog), backingImageDataSourceAdmission];
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
  // The default images are the manager's to decide (read-only settings): an upgrade starts the manager on a new
  // release, and the controllers then retire managers of the old image. Without a stored release, the legacy flags
  // (--backing-image-manager-image) pin them, else the stored values stay.
  const pin = async (name: string, value: string | undefined) => {
    if (value) await store.patch('Setting', DEFAULT_NAMESPACE, name, 'merge', { value });
  };
  if (active.file) {
    for (const [name, value] of Object.entries(releaseSettings(active.release))) await pin(name, value);
  } else {
    await pin('default-backing-image-manager-image', opts.images?.backingImageManager);
    await pin('default-instance-manager-image', opts.images?.instanceManager);
  }
  log(`stratum manager: release ${active.release.version} (${active.source})`);
  // One registry for the process: the controller kit's queue and reconcile metrics plus Node's defaults.
  const metrics = metricsRegistry;
  if (!metrics.getSingleMetric('process_cpu_user_seconds_total')) collectDefaultMetrics({ register: metrics });
  // On etcd the managers share one credentials directory (`stratum up --store etcd`): the same tokens, CA and
  // cluster secret whichever manager a client or agent reaches.
  const creds = loadManagerCredentials(opts.dataDir, opts.advertiseHosts);
  useDataPlaneCredential(creds.dataPlaneHeaders);
  const ttlMs = opts.eventTtlMs ?? DEFAULT_EVENT_TTL_MS;
  // The release's API ranges and the catalog's image facts go to the controllers (docs/upgrade.md).
  const release = { apis: active.release.apis, imageInfo: (image: string) => catalog.get(image) };
  // Event expiry is controller work: on etcd only the leader does it, through the fenced store.
  const controllers = cp
    ? {
        stopped: cp.run(signal, async (term) => {
          await Promise.all([
            startControllers({ store: cp.controllerStore, metrics, signal: term.signal, log, ...release }).stopped,
            startEventExpiry({ store: cp.controllerStore, ttlMs, signal: term.signal, log }),
          ]);
        }),
      }
    : startControllers({ store, metrics, signal, log, ...release });
  const expiry = cp ? Promise.resolve() : startEventExpiry({ store, ttlMs, signal, log });
  // On etcd an accepted release is stored there first; the supervisor then restarts every manager on it.
  const upgrades = upgrader({
    store, dataDir: opts.dataDir, imagesFiles: opts.imagesFiles ?? [], restart: opts.restart, log,
    ...(etcdRelease ? { persist: (text: string, expected: string | undefined) => writeReleaseToEtcd({ ...etcdRelease, signal }, text, expected) } : {}),
  });
  const api = await startApiServer({
    store,
    host: opts.host ?? '127.0.0.1',
    port,
    metrics,
    podLogs: agentPodLogs(store, { headers: creds.dataPlaneHeaders }),
    tls: creds.tls,
    guard: {
      tokens: creds.tokens,
      policy: policyContext(store),
      origins: { hostNames: (opts.advertiseHosts ?? []).map((h) => h.toLowerCase()), corsOrigins: opts.corsOrigins ?? [] },
    },
    extend: async (app) => {
      cp?.extendApi(app);
      await registerLonghornV1(app, store, { headers: creds.dataPlaneHeaders });
      registerUpgradeRoutes(app, upgrades);
      registerUiRoutes(app);
    },
  });
  let unwatch: (() => Promise<void>) | undefined;
  const stop = async (): Promise<void> => {
    await api.close().catch(() => undefined);
    await controllers.stopped;
    await expiry;
    await closeStore();
    await unwatch?.();
  };
  // Started last: a change since the sync above still counts (the watch compares with what this manager read).
  let releaseChanged: string | undefined;
  if (etcdRelease && !opts.restart) {
    try {
      unwatch = await watchReleaseInEtcd({ ...etcdRelease, signal }, startedOn, (now) => {
        releaseChanged = `the cluster's release changed to ${describeRelease(now)} while this manager runs release ${active.release.version}; stopping, to be started again on it`;
        log(`stratum manager: ${releaseChanged}`);
        self.abort(new Error(releaseChanged));
      });
    } catch (err) {
      self.abort(err);
      await stop();
      throw err;
    }
  }
  const kubeconfig = creds.writeKubeconfig(api.url);
  log(`stratum manager: API server listening on ${api.url} (${opts.etcd ? `state in etcd ${opts.etcd.join(',')}` : `data in ${opts.dataDir}`})${kubeconfig ? `; admin credentials in ${kubeconfig}` : ''}`);
  const done = new Promise<void>((resolve) => {
    const end = (): void => void stop().then(resolve);
    if (signal.aborted) end();
    else signal.addEventListener('abort', end, { once: true });
  });
  return {
    store,
    api,
    done,
    get releaseChanged() {
      return releaseChanged;
    },
  };
}
