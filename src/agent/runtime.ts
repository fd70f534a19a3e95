// The pod runtime of a node agent: watches the Pods bound to its node (field selector `spec.nodeName=<node>`)
// and keeps one PodWorker per pod (by uid) that runs it as OS processes.
//
// Graceful deletion. The store only sets `deletionTimestamp` on objects that have finalizers, so every pod the
// agent runs carries the finalizer `stratum.io/pod-runtime`. On `kubectl delete pod` the store marks the pod
// deleting; the worker sends SIGTERM to the pod's process group, SIGKILL after
// `terminationGracePeriodSeconds`, waits until the process is gone, frees its ports and files, and only then
// removes the finalizer, so the object disappears (and `kubectl delete` returns) once the process has ended.
// Pods that ended for good (Succeeded/Failed) drop the finalizer at once: deleting them needs no agent.
//
// Survival. Processes run in their own session and outlive the agent. A restarted agent reads each pod's record
// (pods/<ns>_<name>_<uid>/record.json), waits for its first list of pods, and adopts every process whose shim
// still runs with the recorded pid *and* start time; exits that happened meanwhile were written by the shim.
// Records of pods that no longer exist are orphans: their processes are stopped and their files removed.
//
// Stopping. `run(signal)` ends after every worker stopped watching, leaving processes running (a restart adopts
// them). `stopPods()` first stops every pod's process, for a node that really goes away (`stratum up` Ctrl-C).

import type { DeepReadonly } from '../api/meta.js';
import type { Pod } from '../api/pod.js';
import { Informer } from '../controller-kit/informer.js';
import { errorMessage, type Logger } from '../controller-kit/log.js';
import type { Store } from '../store/types.js';
import type { BackoffPolicy } from './backoff.js';
import { AgentError } from './errors.js';
import type { ImageCatalog } from './images.js';
import { stopInstance } from './instance.js';
import type { LogSource } from './logs.js';
import { PodStore } from './pod-record.js';
import { POD_FINALIZER } from './pod-spec.js';
import { PodWorker } from './pod-worker.js';
import type { PortAllocator } from './ports.js';
import { PodVolumes } from './volumes.js';

export interface PodRuntimeOptions {
  store: Store;
  nodeName: string;
  hostIP: string;
  managerUrl: string;
  /** Handed to every pod (STRATUM_CLUSTER_SECRET_FILE): the data plane's credential. */
  clusterSecretFile?: string | undefined;
  probeHeaders?: Record<string, string> | undefined;
  dataDir: string;
  catalog: ImageCatalog;
  ports: PortAllocator;
  backoff: BackoffPolicy;
  logger: Logger;
}

interface Running {
  worker: PodWorker;
  done: Promise<void>;
}

export class PodRuntime {
  readonly #o: PodRuntimeOptions;
  readonly #pods: PodStore;
  readonly #volumes: PodVolumes;
  readonly #informer: Informer<Pod>;
  readonly #workers = new Map<string, Running>();
  #signal: AbortSignal | undefined;
  #shuttingDown = false;

  constructor(o: PodRuntimeOptions) {
    this.#o = o;
    this.#pods = new PodStore(o.dataDir);
    this.#volumes = new PodVolumes({ store: o.store, nodeName: o.nodeName, dataDir: o.dataDir, logger: o.logger });
    this.#informer = new Informer<Pod>({
      store: o.store,
      kind: 'Pod',
      fieldSelector: `spec.nodeName=${o.nodeName}`,
      logger: o.logger,
      // The manager may restart at any time; come back within seconds rather than the default 30 s.
      backoff: { baseMs: 200, maxMs: 3000 },
    });
  }

  /** Watches and runs pods until `signal` aborts; resolves after every worker stopped (processes keep running). */
  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    const informerDone = this.#informer.run(signal);
    try {
      await this.#informer.waitForSync(signal);
    } catch {
      await informerDone;
      return;
    }
    // Only now is it known which recorded pods still exist.
    await this.#collectOrphans(signal);
    this.#informer.addEventHandler({
      onAdd: (p) => void this.#onPod(p),
      onUpdate: (_o, p) => void this.#onPod(p),
      onDelete: (p) => this.#workers.get(p.metadata.uid ?? '')?.worker.deleted(),
    });
    await informerDone;
    await Promise.all([...this.#workers.values()].map((r) => r.done));
  }

  /** Stops every pod's process (gracefully) and waits for it; the pods restart when an agent runs them again. */
  async stopPods(): Promise<void> {
    // From here no pod starts again: a worker that ended is gone from the map, and a later event about its pod
    // (the manager still writes status) would otherwise start a fresh worker for it.
    this.#shuttingDown = true;
    const running = [...this.#workers.values()];
    for (const r of running) r.worker.stopForShutdown();
    await Promise.all(running.map((r) => r.done));
  }

  /** For the agent's log endpoint. Throws AgentError `PodNotFound` / `InvalidArgument`. */
  logSource(namespace: string, name: string, opts: { previous: boolean; container: string | undefined }): LogSource {
    const candidates = [...this.#workers.values()].map((r) => r.worker).filter((w) => w.namespace === namespace && w.name === name);
    const worker = candidates.find((w) => !w.deleting) ?? candidates[0];
    if (!worker) throw new AgentError('PodNotFound', `pod "${name}" in namespace "${namespace}" does not run on node ${this.#o.nodeName}`);
    const pod = this.#informer.getByKey(`${namespace}/${name}`);
    const containerName = pod?.spec?.containers[0]?.name;
    if (opts.container && containerName && opts.container !== containerName) {
      throw new AgentError('InvalidArgument', `container ${opts.container} is not valid for pod ${name}`);
    }
    return worker.logSource(opts.previous);
  }

  async #onPod(pod: DeepReadonly<Pod>): Promise<void> {
    const uid = pod.metadata.uid ?? '';
    const running = this.#workers.get(uid);
    if (running) {
      running.worker.update(pod);
      return;
    }
    const signal = this.#signal;
    if (!signal || signal.aborted || !uid || this.#shuttingDown) return;
    // A deleting pod without our finalizer was never ours to run (or we are done with it).
    if (pod.metadata.deletionTimestamp && !(pod.metadata.finalizers ?? []).includes(POD_FINALIZER)) return;
    const record = await this.#pods.load(this.#pods.dirOf({ namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', uid }));
    if (this.#workers.has(uid)) {
      // Another event created the worker while the record was read.
      this.#workers.get(uid)?.worker.update(pod);
      return;
    }
    const worker = new PodWorker(
      {
        store: this.#o.store,
        nodeName: this.#o.nodeName,
        hostIP: this.#o.hostIP,
        managerUrl: this.#o.managerUrl,
        clusterSecretFile: this.#o.clusterSecretFile,
        probeHeaders: this.#o.probeHeaders,
        catalog: this.#o.catalog,
        ports: this.#o.ports,
        pods: this.#pods,
        backoff: this.#o.backoff,
        logger: this.#o.logger,
        volumes: this.#volumes,
      },
      this.#informer.getByKey(`${pod.metadata.namespace ?? ''}/${pod.metadata.name ?? ''}`) ?? pod,
      record,
    );
    const done = worker.run(signal).catch((err: unknown) => {
      this.#o.logger.error(`pod ${worker.namespace}/${worker.name}: worker failed`, { error: errorMessage(err) });
    }).finally(() => {
      if (this.#workers.get(uid)?.worker === worker) this.#workers.delete(uid);
    });
    this.#workers.set(uid, { worker, done });
  }

  /** Stops the processes of recorded pods that no longer exist (deleted while no agent ran) and removes their files. */
  async #collectOrphans(signal: AbortSignal): Promise<void> {
    const alive = new Set(this.#informer.list().map((p) => p.metadata.uid ?? ''));
    for (const entry of this.#pods.list()) {
      if (alive.has(entry.uid)) continue;
      const record = await this.#pods.load(entry.dir);
      if (record?.current) {
        this.#o.logger.info(`pod ${entry.namespace}/${entry.name} (uid ${entry.uid}) no longer exists; stopping its process`);
        await stopInstance(entry.dir, record.current, undefined, 30_000);
      }
      for (const port of Object.values(record?.ports ?? {})) {
        await this.#o.ports.release(port, `${this.#o.nodeName}/${entry.namespace}/${entry.name}/${entry.uid}`);
      }
      await this.#pods.remove(entry);
    }
    for (const ref of await this.#volumes.list()) {
      if (alive.has(ref.uid)) continue;
      this.#o.logger.info(`pod ${ref.namespace}/${ref.name} (uid ${ref.uid}) no longer exists; unmounting and detaching its volumes`);
      await this.#volumes.release(ref, signal).catch((err: unknown) => this.#o.logger.warn(`cannot release the volumes of ${ref.namespace}/${ref.name}`, { error: errorMessage(err) }));
    }
  }
}
