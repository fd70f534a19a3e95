// The manager on etcd (`stratum manager --etcd URL,…`): several managers share one etcd cluster. Every manager
// serves the API from etcd; only the elected leader runs the controllers (leader-election.ts).
//
// Two stores over two etcd clients: the API server's, unfenced (a standby must accept writes), and the
// controllers', whose every write is fenced on this manager's leader key, so a deposed leader cannot write.

import type { FastifyInstance } from 'fastify';
import { hostname } from 'node:os';
import { EtcdBackend, type Fence } from '../store/index.js';
import { ResourceStore, type AdmissionPlugin } from '../store/resource-store.js';
import { LeaderElection, type LeaderTerm } from './leader-election.js';

export interface EtcdModeOptions {
  endpoints: string[];
  /** Key prefix of this cluster in etcd. */
  prefix?: string;
  identity: string;
  admission: AdmissionPlugin[];
  log: (line: string) => void;
  leaseMs?: number;
}

export interface EtcdControlPlane {
  apiStore: ResourceStore;
  controllerStore: ResourceStore;
  election: LeaderElection;
  /** Adds GET /stratum/leader and the stale-read warning to the API server. */
  extendApi(app: FastifyInstance): void;
  /** Campaigns until `signal` aborts, running `lead` for each term won. */
  run(signal: AbortSignal, lead: (term: LeaderTerm) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export const STALE_WARNING = '299 - "the etcd cluster has no quorum: this answer comes from one member and may be stale"';

export async function openEtcdControlPlane(o: EtcdModeOptions): Promise<EtcdControlPlane> {
  const prefix = o.prefix ?? '/stratum/';
  const apiBackend = new EtcdBackend({ endpoints: o.endpoints, prefix: `${prefix}registry/` });
  // History is compacted by the API side of every manager (harmless when several do); the fenced client never.
  const ctrlBackend = new EtcdBackend({ endpoints: o.endpoints, prefix: `${prefix}registry/`, compactIntervalMs: 0 });
  const election = new LeaderElection({ client: apiBackend.client, key: `${prefix}leader`, identity: o.identity, log: o.log, ...(o.leaseMs ? { leaseMs: o.leaseMs } : {}) });
  ctrlBackend.setFence((): Fence | undefined => election.fence());
  const apiStore = new ResourceStore({ backend: apiBackend, admission: [...o.admission] });
  const controllerStore = new ResourceStore({ backend: ctrlBackend, admission: [...o.admission] });
  try {
    await apiStore.init();
    await controllerStore.init();
  } catch (err) {
    await Promise.all([apiBackend.close(), ctrlBackend.close()]);
    throw err;
  }
  return {
    apiStore,
    controllerStore,
    election,
    extendApi(app) {
      app.get('/stratum/leader', async () => ({ identity: o.identity, isLeader: election.isLeader, holder: (await election.holder()) ?? null }));
      app.addHook('onSend', async (_req, reply, payload) => {
        if (apiBackend.stale()) reply.header('warning', STALE_WARNING);
        return payload;
      });
    },
    run: (signal, lead) => election.run(signal, lead),
    close: async () => {
      await Promise.all([apiBackend.close(), ctrlBackend.close()]);
    },
  };
}

export function defaultIdentity(port: number): string {
  return `${hostname()}:${port}:${process.pid}`;
}
