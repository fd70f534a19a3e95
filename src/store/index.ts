// The resource store: Kubernetes semantics (src/store/resource-store.ts) over a revisioned backend
// (src/store/sqlite for the embedded one). `openStore` is what the manager and tests use.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ResourceStore, type AdmissionPlugin } from './resource-store.js';
import { SqliteBackend } from './sqlite/backend.js';

export * from './errors.js';
export * from './types.js';
export { ResourceStore, objectKey, FOREGROUND_FINALIZER, ORPHAN_FINALIZER } from './resource-store.js';
export type { AdmissionPlugin } from './resource-store.js';
export { parseLabelSelector, parseFieldSelector, fieldValue } from './selectors.js';
export { mergePatch } from './merge-patch.js';

export interface OpenStoreOptions {
  /** SQLite database file, or ':memory:'. */
  path: string;
  admission?: AdmissionPlugin[];
  historyRevisions?: number;
  now?: () => Date;
}

export async function openStore(opts: OpenStoreOptions): Promise<{ store: ResourceStore; close(): Promise<void> }> {
  if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
  const backend = new SqliteBackend({
    path: opts.path,
    ...(opts.historyRevisions === undefined ? {} : { historyRevisions: opts.historyRevisions }),
  });
  const store = new ResourceStore({
    backend,
    ...(opts.admission ? { admission: opts.admission } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  await store.init();
  return { store, close: () => backend.close() };
}
