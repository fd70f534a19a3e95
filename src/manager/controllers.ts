// Starts every controller of the manager on the in-process store, sharing one informer per kind. Controllers are
// added here issue by issue.

import { setMaxListeners } from 'node:events';
import type { Registry } from 'prom-client';
import { Controller } from '../controller-kit/controller.js';
import { InformerFactory } from '../controller-kit/informer-factory.js';
import { garbageCollector } from '../controllers/gc/index.js';
import { nodeController } from '../controllers/node/index.js';
import type { ResourceStore } from '../store/resource-store.js';

export interface ControllerSetOptions {
  store: ResourceStore;
  metrics: Registry;
  signal: AbortSignal;
  log: (line: string) => void;
}

export function startControllers(opts: ControllerSetOptions): { informers: InformerFactory; stopped: Promise<void> } {
  // One informer watch per kind listens on the same signal.
  setMaxListeners(0, opts.signal);
  const informers = new InformerFactory({ store: opts.store });
  const controllers: Controller[] = [
    garbageCollector({ store: opts.store, informers }),
    nodeController({ store: opts.store, informers }),
  ];
  const informersDone = informers.run(opts.signal);
  const stopped = (async () => {
    await informers.waitForSync(opts.signal).catch(() => undefined);
    await Promise.all(controllers.map((c) => c.run(opts.signal)));
    await informersDone;
  })();
  return { informers, stopped };
}
