// The node half of the agent: registers the Longhorn `Node` (spec.disks from the `--disk` flags, the agent URL
// annotation), keeps `status.diskStatus` current (on start, every `diskSyncIntervalMs`, and when someone edits
// the Node's spec), and heartbeats by renewing the Lease named after the node. The node controller in the
// manager turns missing heartbeats into Ready=False (see src/api/node-contract.ts for who owns what).

import { hostname } from 'node:os';
import { basename } from 'node:path';
import type { Lease } from '../api/lease.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../api/meta.js';
import { NodeCondition, type DiskSpec, type DiskStatus, type Node } from '../api/node.js';
import { settingInt } from '../api/settings.js';
import { Informer } from '../controller-kit/informer.js';
import { errorMessage, type Logger } from '../controller-kit/log.js';
import {
  AGENT_URL_ANNOTATION, LEASE_NAMESPACE, microTimestamp, NodeReadyReason, setCondition, timestamp,
} from '../api/node-contract.js';
import { isAlreadyExists, isConflict, isNotFound } from '../store/errors.js';
import type { Store } from '../store/types.js';
import { diskStatusFor, flagDuplicateDisks, probeDisk, readDiskConfig, type DiskFlag, type DiskProbe } from './disks.js';
import { AgentError } from './errors.js';
import { sameStatus } from './pod-status.js';
import { Waker } from './sleep.js';

export interface RegistrationOptions {
  store: Store;
  nodeName: string;
  disks: DiskFlag[];
  agentUrl: string;
  logger: Logger;
  heartbeatIntervalMs?: number;
  /** Written into the Lease; the node controller judges by the `node-down-timeout` setting. */
  leaseDurationSeconds?: number;
  diskSyncIntervalMs?: number;
}

const MAX_CONFLICT_RETRIES = 8;

export class NodeRegistration {
  readonly #o: RegistrationOptions;
  readonly #holder: string;
  readonly #heartbeatMs: number;
  readonly #leaseSeconds: number;
  readonly #diskSyncMs: number;
  #lastError = new Map<string, string>();
  /** Wakes the disk status loop when someone edits the Node. */
  readonly #diskSync = new Waker();

  constructor(o: RegistrationOptions) {
    this.#o = o;
    this.#holder = `${o.nodeName}@${hostname()}`;
    this.#heartbeatMs = o.heartbeatIntervalMs ?? 2000;
    this.#leaseSeconds = o.leaseDurationSeconds ?? 40;
    this.#diskSyncMs = o.diskSyncIntervalMs ?? 30_000;
  }

  /** Heartbeat, create or update the Node, report disks once. Throws AgentError `NodeNameInUse`. */
  async register(): Promise<void> {
    await this.#checkLeaseHolder();
    await this.#renew();
    await this.#ensureNode(true);
    await this.syncStatus();
  }

  /** Heartbeats and disk status until `signal` aborts; failures are logged (once per distinct error) and retried. */
  async run(signal: AbortSignal): Promise<void> {
    const own = new Informer<Node>({
      store: this.#o.store,
      kind: 'Node',
      namespace: DEFAULT_NAMESPACE,
      fieldSelector: `metadata.name=${this.#o.nodeName}`,
      logger: this.#o.logger,
      backoff: { baseMs: 200, maxMs: 3000 },
    });
    own.addEventHandler({
      onUpdate: (a, b) => {
        if (a.metadata.generation !== b.metadata.generation || a.metadata.annotations?.[AGENT_URL_ANNOTATION] !== b.metadata.annotations?.[AGENT_URL_ANNOTATION]) {
          this.#diskSync.kick();
        }
      },
      onDelete: () => this.#diskSync.kick(),
    });
    await Promise.all([
      own.run(signal),
      this.#loop('heartbeat', this.#heartbeatMs, new Waker(), signal, () => this.#renew()),
      this.#loop('disk status', this.#diskSyncMs, this.#diskSync, signal, () => this.syncStatus()),
    ]);
  }

  async #loop(what: string, everyMs: number, waker: Waker, signal: AbortSignal, fn: () => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      try {
        await fn();
        if (this.#lastError.delete(what)) this.#o.logger.info(`${what} of ${this.#o.nodeName} works again`);
      } catch (err) {
        const msg = errorMessage(err);
        if (this.#lastError.get(what) !== msg) this.#o.logger.warn(`${what} of ${this.#o.nodeName} failed; retrying`, { error: msg });
        this.#lastError.set(what, msg);
      }
      // Waker.wait also returns at once when `signal` aborted while fn() ran (a plain abort listener added
      // then would never fire, and shutdown would wait out the whole interval).
      await waker.wait(everyMs, signal);
    }
  }

  /** Refuses to start when another agent (another machine) heartbeats for this node name right now. */
  async #checkLeaseHolder(): Promise<void> {
    let lease: Lease;
    try {
      lease = await this.#o.store.get<Lease>('Lease', LEASE_NAMESPACE, this.#o.nodeName);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    const holder = lease.spec?.holderIdentity;
    const renewed = Date.parse(lease.spec?.renewTime ?? '');
    const ageS = (Date.now() - renewed) / 1000;
    if (holder && holder !== this.#holder && ageS < (lease.spec?.leaseDurationSeconds ?? this.#leaseSeconds)) {
      throw new AgentError(
        'NodeNameInUse',
        `Cannot register node ${this.#o.nodeName}: ${holder} renewed its heartbeat ${Math.round(ageS)} s ago; ` +
          `another \`stratum node --name ${this.#o.nodeName}\` runs elsewhere. Stop it, or choose another --name`,
      );
    }
  }

  async #renew(): Promise<void> {
    const { store, nodeName } = this.#o;
    const now = microTimestamp(Date.now());
    for (let attempt = 0; ; attempt++) {
      try {
        let lease: Lease;
        try {
          lease = await store.get<Lease>('Lease', LEASE_NAMESPACE, nodeName);
        } catch (err) {
          if (!isNotFound(err)) throw err;
          await store.create<Lease>({
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: nodeName, namespace: LEASE_NAMESPACE },
            spec: { holderIdentity: this.#holder, leaseDurationSeconds: this.#leaseSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
          });
          return;
        }
        const spec = (lease.spec ??= {});
        if (spec.holderIdentity !== this.#holder) {
          spec.leaseTransitions = (spec.leaseTransitions ?? 0) + 1;
          spec.acquireTime = now;
        }
        spec.holderIdentity = this.#holder;
        spec.leaseDurationSeconds = this.#leaseSeconds;
        spec.renewTime = now;
        await store.update(lease);
        return;
      } catch (err) {
        if (!(isConflict(err) || isAlreadyExists(err)) || attempt >= MAX_CONFLICT_RETRIES) throw err;
      }
    }
  }

  /** Creates the Node, or updates its disks from the flags (`flags`: only at start) and the agent URL annotation. */
  async #ensureNode(flags: boolean): Promise<void> {
    const { store, nodeName } = this.#o;
    for (let attempt = 0; ; attempt++) {
      let node: Node | undefined;
      try {
        node = await store.get<Node>('Node', DEFAULT_NAMESPACE, nodeName);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      const next: Node = node
        ? structuredClone(node)
        : { apiVersion: LONGHORN_API_VERSION, kind: 'Node', metadata: { name: nodeName, namespace: DEFAULT_NAMESPACE }, spec: {} };
      const spec = (next.spec ??= {});
      spec.name = nodeName;
      spec.allowScheduling ??= true;
      spec.evictionRequested ??= false;
      spec.tags ??= [];
      spec.instanceManagerCPURequest ??= 0;
      const disks = (spec.disks ??= {});
      if (flags || !node) for (const flag of this.#o.disks) await addDisk(disks, flag);
      next.metadata.annotations = { ...next.metadata.annotations, [AGENT_URL_ANNOTATION]: this.#o.agentUrl };
      try {
        if (!node) {
          await store.create(next);
          this.#o.logger.info(`registered node ${nodeName} with disks ${Object.keys(disks).join(', ') || '(none)'}`);
        } else if (!sameStatus(node.spec, next.spec) || !sameStatus(node.metadata.annotations, next.metadata.annotations)) {
          await store.update(next);
        }
        return;
      } catch (err) {
        if (!(isConflict(err) || isAlreadyExists(err)) || attempt >= MAX_CONFLICT_RETRIES) throw err;
      }
    }
  }

  /** Recomputes `status.diskStatus` and the agent's conditions; writes only when something changed. */
  async syncStatus(): Promise<void> {
    const { store, nodeName } = this.#o;
    const minimal = await this.#minimalAvailablePercent();
    for (let attempt = 0; ; attempt++) {
      let node: Node;
      try {
        node = await store.get<Node>('Node', DEFAULT_NAMESPACE, nodeName);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        // Someone deleted our Node while we run: register it again, as the agent would on start.
        await this.#ensureNode(true);
        continue;
      }
      if (node.metadata.annotations?.[AGENT_URL_ANNOTATION] !== this.#o.agentUrl) {
        await this.#ensureNode(false);
        continue;
      }
      const now = timestamp(Date.now());
      const old = node.status ?? {};
      const probes = new Map<string, DiskProbe>();
      for (const [name, d] of Object.entries(node.spec?.disks ?? {})) {
        probes.set(name, await probeDisk({ nodeName, diskName: name, path: d.path ?? '', recordedUUID: old.diskStatus?.[name]?.diskUUID || undefined }));
      }
      flagDuplicateDisks(probes);
      const diskStatus: Record<string, DiskStatus> = {};
      for (const [name, probe] of probes) {
        diskStatus[name] = diskStatusFor({
          nodeName,
          diskName: name,
          spec: node.spec?.disks?.[name] ?? {},
          old: old.diskStatus?.[name] ?? undefined,
          probe,
          minimalAvailablePercent: minimal,
          now,
        });
      }
      let conditions = old.conditions ?? [];
      if (!conditions.some((c) => c.type === NodeCondition.ready)) {
        conditions = setCondition(conditions, {
          type: NodeCondition.ready,
          status: 'Unknown',
          reason: NodeReadyReason.registered,
          message: `${nodeName} registered; waiting for the node controller to see its heartbeat`,
        }, now);
      }
      conditions = setCondition(conditions, { type: NodeCondition.schedulable, status: 'True', reason: '', message: '' }, now);
      const status = { ...old, conditions, diskStatus, region: old.region ?? '', zone: old.zone ?? '', autoEvicting: old.autoEvicting ?? false };
      if (sameStatus(status, old)) return;
      try {
        await store.update({ ...node, status }, { subresource: 'status' });
        return;
      } catch (err) {
        if (!isConflict(err) || attempt >= MAX_CONFLICT_RETRIES) throw err;
      }
    }
  }

  async #minimalAvailablePercent(): Promise<number> {
    let value: string | undefined;
    try {
      value = (await this.#o.store.get<{ value?: string } & Node>('Setting', DEFAULT_NAMESPACE, 'storage-minimal-available-percentage')).value;
    } catch {
      // Unreachable or unset: the catalogue default applies.
    }
    return settingInt('storage-minimal-available-percentage', () => value);
  }
}

/** Adds or updates the spec entry for a `--disk` flag, keeping what users changed (scheduling, reservation). */
async function addDisk(disks: Record<string, DiskSpec>, flag: DiskFlag): Promise<void> {
  const existing = Object.entries(disks).find(([, d]) => normalize(d.path ?? '') === normalize(flag.path))?.[0];
  const name = existing ?? (await newDiskName(disks, flag.path));
  const d: DiskSpec = disks[name] ?? {};
  d.path = flag.path;
  d.diskType ??= 'filesystem';
  d.allowScheduling ??= true;
  d.evictionRequested ??= false;
  d.storageReserved ??= 0;
  d.tags = flag.tags ?? d.tags ?? [];
  d.diskDriver ??= '';
  disks[name] = d;
}

/** The name a disk had (its identity file), else its directory name, else `disk-<n>`; never one in use. */
async function newDiskName(disks: Record<string, DiskSpec>, path: string): Promise<string> {
  const taken = (n: string): boolean => n in disks;
  const cfg = await readDiskConfig(path).catch(() => undefined);
  const valid = (n: string): boolean => /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(n);
  for (const candidate of [cfg?.diskName, basename(path).toLowerCase()]) {
    if (candidate && valid(candidate) && !taken(candidate)) return candidate;
  }
  for (let i = 1; ; i++) if (!taken(`disk-${i}`)) return `disk-${i}`;
}

function normalize(p: string): string {
  return p.replace(/\/+$/, '') || '/';
}
