// runReplica: the replica process body, for `stratum replica` (and tests that start replicas as child processes).
// Opens the replica in a directory (creating it when asked and absent), serves it until `signal` aborts, then shuts
// down gracefully: answer what was received, flush, close the files.

import { isReplicaError } from './errors.js';
import { ReplicaServer, type ReplicaAddress, type ReplicaListenOptions } from './server.js';
import { LayeredReplica } from './layered.js';

export interface RunReplicaOptions {
  /** The replica directory (on the disk that also holds the backing file). */
  dir: string;
  listen: ReplicaListenOptions;
  /** Create the replica when `dir` holds none; without it a missing replica is an error. */
  create?: {
    name: string;
    size: number;
    blockSize?: number;
    backing?: { name: string; uuid: string; path: string };
  };
  /** How long the graceful shutdown may take before connections are dropped (default 10 s). */
  shutdownTimeoutMs?: number;
  log?: (line: string) => void;
  /** Called once listening, with the bound address (the real port when port 0 was asked). */
  onListening?: (address: ReplicaAddress) => void;
}

/** Runs until `signal` aborts; resolves after the server and the store have closed. */
export async function runReplica(opts: RunReplicaOptions, signal: AbortSignal): Promise<void> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let store: LayeredReplica;
  try {
    // A size given for creation also grows an existing, smaller replica (grow.ts).
    store = await LayeredReplica.open(opts.dir, { signal, ...(opts.create ? { size: opts.create.size } : {}) });
  } catch (err) {
    if (!isReplicaError(err, 'NotFound') || !opts.create) throw err;
    const c = opts.create;
    store = await LayeredReplica.create(opts.dir, { ...c, signal });
    log(`replica ${c.name}: created in ${opts.dir}`);
  }
  const server = new ReplicaServer(store, { onError: (err) => log(`replica ${store.meta.name}: ${err.message}`) });
  try {
    const address = await server.listen(opts.listen, { signal });
    const i = store.info();
    const where = 'path' in address ? address.path : `${address.host}:${address.port}`;
    const backing = i.backing ? `backing ${i.backing.name} (${i.backing.format}, ${i.backing.virtualSize} B)` : 'no backing image';
    log(`replica ${i.name}: serving ${opts.dir} on ${where}: ${i.size} B in ${i.blockSize} B blocks, ${backing}, revision ${i.revision}`);
    opts.onListening?.(address);
    if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    await server.close({ signal: AbortSignal.timeout(opts.shutdownTimeoutMs ?? 10_000) });
  } finally {
    await server.destroy();
    await store.close();
  }
  log(`replica ${store.meta.name}: stopped`);
}
