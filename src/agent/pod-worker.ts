// One pod on this node, from acceptance to deletion: a loop that looks at the pod (latest from the informer), its
// record on disk and its live process, does the next thing, and publishes the resulting status.
//
//   accept ─► finalizer ─► ports ─► start ─► running ──exit──► restart? ─yes─► backoff ─► start …
//     │ unknown image / unsupported spec                        └─no──► Succeeded / Failed (terminal)
//     └─► Failed (terminal)
//   deletionTimestamp (any time) ─► SIGTERM … grace … SIGKILL ─► free ports, files ─► remove finalizer
//
// The worker never blocks on the manager: status and finalizer writes that fail are retried on the next turn
// of the loop (at most 2 s later), while the process keeps running.

import type { ChildProcess } from 'node:child_process';
import type { DeepReadonly } from '../api/meta.js';
import type { ContainerPort, Pod, Probe } from '../api/pod.js';
import { errorMessage, type Logger } from '../controller-kit/log.js';
import type { Store } from '../store/types.js';
import { failuresAfterExit, restartDelayMs, shouldRestart, volumeRecheckMs, type BackoffPolicy } from './backoff.js';
import { AgentError, isAgentError } from './errors.js';
import type { ImageCatalog } from './images.js';
import {
  instanceRunning, readExit, readPidFile, startInstance, stopInstance, waitForExit, type ExitRecord, type InstanceRecord,
} from './instance.js';
import type { LogSource } from './logs.js';
import { newPodRecord, type PodRecord, type PodStore } from './pod-record.js';
import { setPodFinalizer, writePodPorts, writePodStatus } from './pod-api.js';
import { podArgv, podEnv, POD_FINALIZER, PORTS_ANNOTATION, resolvePod, type ResolvedPod } from './pod-spec.js';
import { computePodStatus, sameStatus, type ContainerView } from './pod-status.js';
import type { PortAllocator } from './ports.js';
import { identityOf } from './proc.js';
import { portKey, readinessLoop } from './probes.js';
import { Waker } from './sleep.js';
import { MOUNTS_ENV, type PodVolumes } from './volumes.js';

export interface WorkerDeps {
  store: Store;
  nodeName: string;
  hostIP: string;
  managerUrl: string;
  clusterSecretFile?: string | undefined;
  /** Headers of httpGet readiness probes (the cluster credential). */
  probeHeaders?: Record<string, string> | undefined;
  catalog: ImageCatalog;
  ports: PortAllocator;
  pods: PodStore;
  backoff: BackoffPolicy;
  logger: Logger;
  volumes: PodVolumes;
}

interface Live {
  record: InstanceRecord;
  child: ChildProcess | undefined;
  /** Resolves with the exit record; undefined when the worker stopped watching (agent shutdown). */
  exit: Promise<ExitRecord | undefined>;
  ready: boolean;
  notReadyMessage: string;
  ac: AbortController;
}

const RETRY_MS = 2000;

export class PodWorker {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly #d: WorkerDeps;
  #pod: DeepReadonly<Pod>;
  #record: PodRecord;
  #live: Live | undefined;
  #deleted = false;
  #shutdown = false;
  readonly #waker = new Waker();
  #portsClaimed = false;
  #lastStatus: unknown;
  #lastError = '';
  /** Checks in a row that found the pod's volumes not ready, for the same reason (volumeRecheckMs). */
  #volumeChecks = 0;
  #volumeWait = '';

  constructor(d: WorkerDeps, pod: DeepReadonly<Pod>, record: PodRecord | undefined) {
    this.#d = d;
    this.#pod = pod;
    this.uid = pod.metadata.uid ?? '';
    this.namespace = pod.metadata.namespace ?? '';
    this.name = pod.metadata.name ?? '';
    this.#record = record ?? newPodRecord(pod);
  }

  get deleting(): boolean {
    return this.#deleted || this.#pod.metadata.deletionTimestamp !== undefined;
  }

  update(pod: DeepReadonly<Pod>): void {
    this.#pod = pod;
    this.#waker.kick();
  }

  /** The pod object is gone from the store (its finalizer was removed by someone, or it never had ours). */
  deleted(): void {
    this.#deleted = true;
    this.#waker.kick();
  }

  /** Node shutdown with "stop pods": the loop stops the process, records why, and ends. */
  stopForShutdown(): void {
    this.#shutdown = true;
    this.#waker.kick();
  }

  /**
   * The log of the running (or last) instance, or with `previous` of the last one that ended — what the kubelet
   * serves for `kubectl logs` and `kubectl logs --previous`.
   */
  logSource(previous: boolean): LogSource {
    const liveN = this.#live?.record.n;
    const last = this.#record.lastExit?.n;
    if (previous) {
      if (last === undefined || last === liveN) {
        throw new AgentError('InvalidArgument', `previous terminated container "${this.#containerName()}" in pod "${this.name}" not found`);
      }
      return { file: this.#d.pods.logFile(this.#record, last), ended: () => true };
    }
    const n = liveN ?? last ?? this.#record.restartCount;
    return { file: this.#d.pods.logFile(this.#record, n), ended: () => this.#live?.record.n !== n };
  }

  /** Runs until the pod is gone and cleaned up, or until `signal` (agent shutdown: processes keep running). */
  async run(signal: AbortSignal): Promise<void> {
    try {
      await this.#adopt(signal);
      while (!signal.aborted) {
        try {
          if (await this.#step(signal)) return;
          this.#lastError = '';
        } catch (err) {
          if (signal.aborted) break;
          const msg = errorMessage(err);
          if (msg !== this.#lastError) this.#d.logger.warn(`pod ${this.namespace}/${this.name}: ${msg}; retrying`);
          this.#lastError = msg;
          await this.#waker.wait(RETRY_MS, signal);
        }
      }
    } finally {
      // Agent shutdown: stop probing and watching, leave the process running for the next agent to adopt.
      this.#live?.ac.abort();
    }
  }

  /** One turn of the loop; true when the worker is done. */
  async #step(signal: AbortSignal): Promise<boolean> {
    if (this.deleting) {
      await this.#finishDeletion(signal);
      return true;
    }
    if (this.#shutdown) {
      await this.#stopForShutdown(signal);
      return true;
    }
    if (this.#record.terminal) {
      await this.#publish({ kind: 'terminal' });
      await this.#releasePorts();
      await this.#d.volumes.release(this, signal);
      await this.#setFinalizer(false);
      await this.#waker.wait(undefined, signal);
      return false;
    }
    let resolved: ResolvedPod;
    try {
      resolved = resolvePod(this.#pod, this.#d.catalog, this.#d.nodeName);
    } catch (err) {
      if (!isAgentError(err)) throw err;
      const reason = err.code === 'ImageNotFound' ? 'ErrImageNeverPull' : 'UnsupportedPodSpec';
      await this.#becomeTerminal({ phase: 'Failed', reason, message: err.message });
      return false;
    }
    await this.#setFinalizer(true);
    if (!(await this.#ensurePorts(resolved))) {
      await this.#waker.wait(5000, signal);
      return false;
    }
    const live = this.#live;
    if (live) {
      await this.#publish({ kind: 'running', startedAt: live.record.startedAt, pid: live.record.process?.pid, ready: live.ready, notReadyMessage: live.notReadyMessage });
      const exit = await Promise.race([live.exit, this.#waker.wait(undefined, signal).then(() => undefined)]);
      if (exit !== undefined && this.#live === live) await this.#onExit(exit, false);
      return false;
    }
    const until = this.#record.backoffUntil ? Date.parse(this.#record.backoffUntil) : 0;
    if (this.#record.everStarted && until > Date.now()) {
      const delay = restartDelayMs(this.#record.failures, this.#d.backoff);
      const e = this.#record.lastExit;
      await this.#publish({
        kind: 'backoff',
        delayMs: delay,
        message: `back-off ${formatMs(delay)} restarting failed container "${this.#containerName()}" of pod ${this.namespace}/${this.name}` +
          `${e ? ` (last exit code ${e.exitCode})` : ''}; next start at ${new Date(until).toISOString().replace(/\.\d+Z$/, 'Z')}`,
      });
      await this.#waker.wait(until - Date.now(), signal);
      return false;
    }
    // Volumes are attached and mounted before every start (a restart finds them mounted and goes on at once).
    const volumes = await this.#d.volumes.prepare(this.#pod, signal);
    if (!volumes.ready) {
      await this.#publish({ kind: 'waiting', reason: 'ContainerCreating', message: volumes.message });
      // Progress (the pod now waits for something else) starts the quick checks over.
      if (volumes.message !== this.#volumeWait) this.#volumeChecks = 0;
      this.#volumeWait = volumes.message;
      await this.#waker.wait(volumeRecheckMs(++this.#volumeChecks), signal);
      return false;
    }
    this.#volumeChecks = 0;
    this.#volumeWait = '';
    await this.#start(resolved, volumes.mounts, signal);
    return false;
  }

  async #adopt(signal: AbortSignal): Promise<void> {
    const cur = this.#record.current;
    if (cur === undefined) return;
    if (instanceRunning(cur)) {
      if (cur.process === undefined) {
        const pid = await readPidFile(this.#d.pods.dirOf(this.#record), cur.n);
        const id = pid === undefined ? undefined : identityOf(pid);
        if (id) cur.process = id;
      }
      // A process that was ready before the agent restarted stays ready until its probe says otherwise.
      const wasReady = this.#pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      this.#watch(cur, undefined, wasReady, signal);
      this.#d.logger.info(`pod ${this.namespace}/${this.name}: adopted running process ${cur.process?.pid ?? '?'} (restart count ${this.#record.restartCount})`);
      return;
    }
    // It ended while no agent was watching; its shim wrote down how.
    await this.#onExit(await readExit(this.#d.pods.dirOf(this.#record), cur), false);
  }

  async #start(r: ResolvedPod, mounts: Record<string, string>, signal: AbortSignal): Promise<void> {
    if (this.#record.everStarted) this.#record.restartCount++;
    const n = this.#record.restartCount;
    delete this.#record.backoffUntil;
    await this.#publish({ kind: 'waiting', reason: 'ContainerCreating', message: `starting ${r.image.name}` });
    const dir = this.#d.pods.dirOf(this.#record);
    await this.#d.pods.prune(this.#record, n - 1);
    const env = podEnv({ pod: this.#pod, container: r.container, image: r.image, ports: this.#record.ports, nodeName: this.#d.nodeName, hostIP: this.#d.hostIP, managerUrl: this.#d.managerUrl, clusterSecretFile: this.#d.clusterSecretFile });
    if (Object.keys(mounts).length > 0) env[MOUNTS_ENV] = JSON.stringify(mounts);
    try {
      const started = await startInstance({
        dir,
        n,
        // Args may refer to the environment, e.g. the allocated port as $(PORT).
        argv: podArgv(r.image, r.container, env),
        env,
        cwd: r.container.workingDir ?? dir,
        logFile: this.#d.pods.logFile(this.#record, n),
        signal,
      });
      this.#record.current = started.record;
      this.#record.everStarted = true;
      await this.#d.pods.save(this.#record);
      const owner = this.#owner();
      for (const port of Object.values(this.#record.ports)) await this.#d.ports.setHolder(port, owner, started.record.shim);
      this.#watch(started.record, started.child, false, signal);
      this.#d.logger.info(`pod ${this.namespace}/${this.name}: started ${r.image.name} as pid ${started.record.process?.pid ?? '?'} (instance ${n})`);
    } catch (err) {
      const now = new Date().toISOString();
      this.#record.everStarted = true;
      await this.#onExit({ n, exitCode: 128, reason: 'StartError', message: errorMessage(err), startedAt: now, finishedAt: now }, false);
    }
  }

  /** Follows a live instance: its exit and, when the container has one, its readiness probe. */
  #watch(record: InstanceRecord, child: ChildProcess | undefined, ready: boolean, signal: AbortSignal): void {
    const ac = new AbortController();
    const stop = AbortSignal.any([ac.signal, signal]);
    const dir = this.#d.pods.dirOf(this.#record);
    const live: Live = {
      record,
      child,
      ready,
      notReadyMessage: ready ? '' : 'waiting for the readiness probe',
      ac,
      exit: waitForExit(dir, record, child, stop).catch(() => undefined),
    };
    const c = this.#pod.spec?.containers[0];
    if (c?.readinessProbe === undefined) {
      live.ready = true;
      live.notReadyMessage = '';
    } else {
      const target = { host: this.#d.hostIP, declared: structuredClone(c.ports ?? []) as ContainerPort[], allocated: this.#record.ports, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, cwd: dir, headers: this.#d.probeHeaders ?? {} };
      void readinessLoop(structuredClone(c.readinessProbe) as Probe, target, ready, (r, message) => {
        live.ready = r;
        live.notReadyMessage = message;
        this.#waker.kick();
      }, stop);
    }
    this.#live = live;
  }

  /** Records an ended instance and decides what comes next (restart after backoff, or the final phase). */
  async #onExit(exit: ExitRecord, shutdown: boolean): Promise<void> {
    this.#live?.ac.abort();
    this.#live = undefined;
    const rec = this.#record;
    delete rec.current;
    rec.lastExit = exit;
    const policy = this.#pod.spec?.restartPolicy;
    if (!shouldRestart(policy, exit.exitCode)) {
      const failed = exit.exitCode !== 0;
      await this.#becomeTerminal({
        phase: failed ? 'Failed' : 'Succeeded',
        reason: shutdown ? 'NodeShutdown' : failed ? 'Error' : 'Completed',
        message: `container "${this.#containerName()}" exited with code ${exit.exitCode}` +
          `${exit.message ? ` (${exit.message})` : ''}; restartPolicy ${policy ?? 'Always'} does not restart it`,
      });
      return;
    }
    if (!shutdown) {
      const ran = Date.parse(exit.finishedAt) - Date.parse(exit.startedAt);
      rec.failures = failuresAfterExit(rec.failures, Number.isFinite(ran) ? ran : 0, this.#d.backoff);
      rec.backoffUntil = new Date(Date.parse(exit.finishedAt) + restartDelayMs(rec.failures, this.#d.backoff)).toISOString();
    }
    await this.#d.pods.save(rec);
    this.#d.logger.info(`pod ${this.namespace}/${this.name}: instance ${exit.n} exited with ${exit.exitCode} (${exit.reason})`);
  }

  async #becomeTerminal(t: NonNullable<PodRecord['terminal']>): Promise<void> {
    this.#record.terminal = t;
    delete this.#record.backoffUntil;
    await this.#d.pods.save(this.#record);
  }

  async #finishDeletion(signal: AbortSignal): Promise<void> {
    const live = this.#live;
    if (live) {
      const grace = (this.#pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
      this.#d.logger.info(`pod ${this.namespace}/${this.name}: deleting; stopping pid ${live.record.process?.pid ?? '?'} (grace ${grace / 1000} s)`);
      live.ac.abort();
      const exit = await stopInstance(this.#d.pods.dirOf(this.#record), live.record, live.child, grace);
      if (exit === undefined) throw new AgentError('StopFailed', `pid ${live.record.process?.pid ?? live.record.shim.pid} did not end even after SIGKILL; retrying`);
      this.#live = undefined;
    }
    await this.#d.volumes.release(this, signal);
    await this.#releasePorts(true);
    await this.#d.pods.remove(this.#record);
    if (!this.#deleted) await this.#setFinalizer(false);
  }

  async #stopForShutdown(signal: AbortSignal): Promise<void> {
    const live = this.#live;
    if (!live) {
      await this.#d.volumes.release(this, signal);
      return;
    }
    live.ac.abort();
    const grace = (this.#pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
    const exit = await stopInstance(this.#d.pods.dirOf(this.#record), live.record, live.child, grace);
    if (exit === undefined) return;
    // A node that goes away leaves nothing mounted; the volumes are attached again when the pod restarts.
    await this.#d.volumes.release(this, signal);
    await this.#onExit({ ...exit, message: 'stopped because its node agent shut down with its pods' }, true);
    if (this.#record.terminal) {
      await this.#publish({ kind: 'terminal' }).catch(() => undefined);
    } else {
      await this.#publish({ kind: 'waiting', reason: 'NodeShutdown', message: 'stopped with its node agent; it starts again when the agent does' }).catch(() => undefined);
    }
  }

  /** Reserves (or re-claims after an agent restart) a host port per declared container port. False: retry later. */
  async #ensurePorts(r: ResolvedPod): Promise<boolean> {
    const owner = this.#owner();
    const holder = this.#live?.record.shim ?? null;
    const wanted = (r.container.ports ?? []).map(portKey);
    let changed = false;
    try {
      for (const key of wanted) {
        const have = this.#record.ports[key];
        if (have !== undefined && !this.#portsClaimed && !(await this.#d.ports.reclaimOwn(have, owner, holder))) {
          this.#d.logger.warn(`pod ${this.namespace}/${this.name}: port ${have} (${key}) was taken by someone else meanwhile; reserving another`);
          delete this.#record.ports[key];
        }
        if (this.#record.ports[key] === undefined) {
          this.#record.ports[key] = await this.#d.ports.reserve(owner);
          changed = true;
        }
      }
    } catch (err) {
      if (!isAgentError(err, 'PortsExhausted')) throw err;
      await this.#publish({ kind: 'waiting', reason: 'PortsExhausted', message: err.message });
      return false;
    }
    this.#portsClaimed = true;
    if (changed) await this.#d.pods.save(this.#record);
    const text = JSON.stringify(this.#record.ports);
    if (wanted.length > 0 && this.#pod.metadata.annotations?.[PORTS_ANNOTATION] !== text) {
      await writePodPorts(this.#d.store, this, this.#record.ports);
    }
    return true;
  }

  async #releasePorts(all = false): Promise<void> {
    if (!all && this.#live) return;
    const owner = this.#owner();
    for (const port of Object.values(this.#record.ports)) await this.#d.ports.release(port, owner);
  }

  async #setFinalizer(present: boolean): Promise<void> {
    if ((this.#pod.metadata.finalizers ?? []).includes(POD_FINALIZER) === present) return;
    await setPodFinalizer(this.#d.store, this, present);
  }

  async #publish(view: ContainerView): Promise<void> {
    const base = (this.#lastStatus ?? this.#pod.status) as Pod['status'];
    const status = computePodStatus({
      pod: { spec: this.#pod.spec as Pod['spec'], status: base },
      record: this.#record,
      view,
      hostIP: this.#d.hostIP,
      imageID: this.#imageID(),
      now: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    });
    if (sameStatus(status, base)) return;
    if (await writePodStatus(this.#d.store, this, status)) this.#lastStatus = status;
  }

  #imageID(): string {
    const image = this.#d.catalog.get(this.#pod.spec?.containers[0]?.image ?? '');
    return image ? `stratum://${image.name}@${image.version}` : '';
  }

  #containerName(): string {
    return this.#pod.spec?.containers[0]?.name ?? 'main';
  }

  #owner(): string {
    return `${this.#d.nodeName}/${this.namespace}/${this.name}/${this.uid}`;
  }
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}
