// The resource store: Kubernetes semantics (src/store/resource-store.ts) over a revisioned backend
// (src/store/sqlite for the embedded one, src/store/etcd for a cluster). `openStore` is what the manager and tests
// use.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ResourceStore, type AdmissionPlugin } from './resource-store.js';
import { EtcdBackend, type EtcdBackendOptions } from './etcd/index.js';
import { SqliteBackend } from './sqlite/backend.js';
import type { Backend } from './types.js';

export * from './errors.js';
export * from './types.js';
export { ResourceStore, objectKey, FOREGROUND_FINALIZER, ORPHAN_FINALIZER } from './resource-store.js';
export type { AdmissionPlugin } from './resource-store.js';
export { parseLabelSelector, parseFieldSelector, fieldValue } from './selectors.js';
export { mergePatch } from './merge-patch.js';

export { EtcdBackend, fromEtcdError, type EtcdBackendOptions, type Fence } from './etcd/index.js';

export interface OpenStoreOptions {
  /** SQLite database file, or ':memory:'. Ignored when `etcd` is given. */
  path: string;
  /** Keep the objects in this etcd cluster instead of SQLite. */
  etcd?: EtcdBackendOptions | undefined;
  admission?: AdmissionPlugin[];
  historyRevisions?: number;
  now?: () => Date;
}

export async function openStore(
  opts: OpenStoreOptions,
): Promise<{ store: ResourceStore; backend: Backend; close(): Promise<void> }> {
  const backend = opts.etcd ? new EtcdBackend(opts.etcd) : openSqlite(opts);
  const store = new ResourceStore({
    backend,
    ...(opts.admission ? { admission: opts.admission } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  try {
    await store.init();
  } catch (err) {
    await backend.close();
    throw err;
  }
  return { store, backend, close: () => backend.close() };
}

function openSqlite(opts: OpenStoreOptions): SqliteBackend {
  if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
  return new SqliteBackend({
    path: opts.path,
    ...(opts.historyRevisions === undefined ? {} : { historyRevisions: opts.historyRevisions }),
  });
}
