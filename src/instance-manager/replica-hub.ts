// The node's one replica listener: every replica the instance manager hosts is served on it, and a connection names
// its replica with OPEN (docs/replica-protocol.md). Engines hosted here reach local replicas without a socket
// (LocalReplica); remote engines connect to this listener. When a replica stops or fails, the hub drops every
// connection and local end that uses it, so its engines see the failure at once and nothing reaches a closed store.

import { LocalReplica } from '../engine/local-replica.js';
import type { ReplicaBackend } from '../engine/types.js';
import { parseEndpoint } from '../engine/control.js';
import { ReplicaClient, ReplicaServer, type ReplicaDevice } from '../replica/index.js';
import type { ReplicaDirectory } from '../replica/server.js';

interface Hosted {
  device: ReplicaDevice;
  locals: Set<LocalReplica>;
}

export class ReplicaHub implements ReplicaDirectory {
  readonly initial = undefined;
  readonly #replicas = new Map<string, Hosted>();
  readonly #server: ReplicaServer;
  readonly #secret: string | undefined;
  #address = '';

  /**
   * With the cluster secret, the listener takes only connections that OPEN with the cluster credential, and this
   * node's engines present it to other nodes' listeners (docs/security.md). Local ends need nothing.
   */
  constructor(log: (line: string) => void, clusterSecret?: string) {
    this.#secret = clusterSecret;
    this.#server = new ReplicaServer(this, { clusterSecret, onError: (err) => log(`replica listener: ${err.message}`) });
  }

  /** "host:port" of the listener (the address of every replica hosted here). */
  get address(): string {
    return this.#address;
  }

  async listen(host: string, signal?: AbortSignal): Promise<string> {
    const a = await this.#server.listen({ host, port: 0 }, signal ? { signal } : {});
    if (!('port' in a)) throw new Error('the replica listener must be TCP');
    this.#address = a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
    return this.#address;
  }

  open(name: string): ReplicaDevice | undefined {
    return this.#replicas.get(name)?.device;
  }

  add(name: string, device: ReplicaDevice): void {
    if (this.#replicas.has(name)) throw new Error(`replica "${name}" is already served here`);
    this.#replicas.set(name, { device, locals: new Set() });
  }

  /** Stops serving `name`: its connections and local ends fail with `reason`. */
  async remove(name: string, reason: Error): Promise<void> {
    const h = this.#replicas.get(name);
    if (!h) return;
    this.#replicas.delete(name);
    for (const l of [...h.locals]) l.detach(reason);
    await this.#server.disconnect(name, reason);
  }

  /**
   * The engine's end of replica `name` at `address`: in-process when the replica is hosted here, else a connection
   * that OPENs it on the remote node's listener.
   */
  async connect(name: string, address: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplicaBackend> {
    if (address === this.#address) {
      const h = this.#replicas.get(name);
      if (!h) throw new Error(`replica "${name}" is not running on this node (${address})`);
      const local: LocalReplica = new LocalReplica(h.device, { address, timeoutMs: opts.timeoutMs, onClose: () => h.locals.delete(local) });
      h.locals.add(local);
      return local;
    }
    return ReplicaClient.connect(parseEndpoint(address), { name, clusterSecret: this.#secret, timeoutMs: opts.timeoutMs, ...(opts.signal ? { signal: opts.signal } : {}) });
  }

  close(signal?: AbortSignal): Promise<void> {
    return this.#server.close(signal ? { signal } : {});
  }

  destroy(): Promise<void> {
    return this.#server.destroy();
  }
}
