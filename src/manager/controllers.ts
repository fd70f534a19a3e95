// Starts every controller of the manager on the in-process store, sharing one informer per kind and one event
// recorder. Controllers are added here issue by issue.

import { setMaxListeners } from 'node:events';
import type { Registry } from 'prom-client';
import { DEFAULT_NAMESPACE } from '../api/meta.js';
import { Controller } from '../controller-kit/controller.js';
import { EventRecorder } from '../controller-kit/events.js';
import { InformerFactory } from '../controller-kit/informer-factory.js';
import { backingImageController } from '../controllers/backing-image/index.js';
import { replicaGateController } from '../controllers/backing-image/replica-gate.js';
import { backingImageManagerController } from '../controllers/backing-image-manager/index.js';
import { registerBackingImageMetrics } from '../controllers/backing-image-manager/metrics.js';
import { dataSourceController } from '../controllers/backing-image-data-source/index.js';
import { garbageCollector } from '../controllers/gc/index.js';
import { nodeController } from '../controllers/node/index.js';
import { podSchedulerController } from '../controllers/pod-scheduler/index.js';
import { provisionerController } from '../controllers/provisioner/index.js';
import { statefulSetController } from '../controllers/stateful-set/index.js';
import { engineController } from '../controllers/engine/index.js';
import { instanceManagerController } from '../controllers/instance-manager/index.js';
import { replicaController } from '../controllers/replica/index.js';
import { volumeController } from '../controllers/volume/index.js';
import { snapshotController } from '../controllers/snapshot/index.js';
import { volumeCloneController } from '../controllers/volume-clone/index.js';
import { volumeSnapshotController } from '../controllers/volume-snapshot/index.js';
import type { ResourceStore } from '../store/resource-store.js';
import { BUILTIN_RELEASE, type Release } from '../release/index.js';
import { engineImageController, type ImageInfo } from '../controllers/engine-image/index.js';
import { engineUpgradeController } from '../controllers/engine-upgrade/index.js';

export interface ControllerSetOptions {
  store: ResourceStore;
  metrics: Registry;
  signal: AbortSignal;
  log: (line: string) => void;
  /** API ranges the manager's release speaks towards each data-plane component (default: the built-in release). */
  apis?: Release['apis'];
  /** What the manager's catalog says of an image (EngineImage versions and API ranges). */
  imageInfo?: (image: string) => ImageInfo | undefined;
}

export function startControllers(opts: ControllerSetOptions): { informers: InformerFactory; stopped: Promise<void> } {
  // One informer watch per kind listens on the same signal.
  setMaxListeners(0, opts.signal);
  const { store } = opts;
  const informers = new InformerFactory({ store });
  const events = new EventRecorder({ store, component: 'stratum-manager' });
  const bim = backingImageManagerController({ store, informers, events, namespace: DEFAULT_NAMESPACE, ...(opts.apis ? { api: opts.apis['backing-image-manager'] } : {}) });
  const bids = dataSourceController({ store, informers, events });
  const ims = instanceManagerController({ store, informers, events, namespace: DEFAULT_NAMESPACE, ...(opts.apis ? { api: opts.apis['instance-manager'] } : {}) });
  const engines = engineController({ store, informers, events, managers: ims });
  const controllers: Controller[] = [
    garbageCollector({ store, informers }),
    nodeController({ store, informers, recorder: events }),
    // Registers the replica-by-image index the replica gate reads, so it is built first.
    backingImageController({ store, informers, events }),
    replicaGateController({ store, informers }),
    bim.controller,
    bids.controller,
    ims.controller,
    replicaController({ store, informers, events, managers: ims }),
    engines.controller,
    volumeController({ store, informers, events }),
    snapshotController({ store, informers, events }),
    volumeCloneController({ store, informers, events }),
    volumeSnapshotController({ store, informers, events, namespace: DEFAULT_NAMESPACE }),
    engineImageController({ store, informers, namespace: DEFAULT_NAMESPACE, imageInfo: opts.imageInfo ?? (() => undefined), api: (opts.apis ?? BUILTIN_RELEASE.apis).engine }),
    engineUpgradeController({ store, informers, events, managers: ims }),
    provisionerController({ store, informers, events, namespace: DEFAULT_NAMESPACE }),
    statefulSetController({ store, informers, events }),
    podSchedulerController({ store, informers, events }),
  ];
  const unregisterMetrics = registerBackingImageMetrics(opts.metrics, informers);
  const informersDone = informers.run(opts.signal);
  const stopped = (async () => {
    await informers.waitForSync(opts.signal).catch(() => undefined);
    await Promise.all(controllers.map((c) => c.run(opts.signal)));
    await Promise.all([bim.stop(), bids.stop(), ims.stop(), engines.stop()]);
    await events.close().catch(() => undefined);
    unregisterMetrics();
    await informersDone;
  })();
  return { informers, stopped };
}
