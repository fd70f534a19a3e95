// The etcd storage backend (cluster mode): the Backend interface on an etcd v3 cluster, shared by several
// managers. See backend.ts for the key layout and the mapping of revisions, transactions and watches.

export { EtcdBackend, DEFAULT_PREFIX, type EtcdBackendOptions, type Fence } from './backend.js';
export { fromEtcdError, isCompacted } from './errors.js';
