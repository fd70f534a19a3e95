// replica: one replica of a volume on one disk, and the engine ↔ replica wire protocol. A replica is a directory
// with a sparse head file and a crash-consistent written-block map over a read-only backing file read natively
// (raw or qcow2), plus a pending map log that keeps acknowledged writes across a process crash (pending-log.ts).
// ReplicaServer serves it to engines; ReplicaClient is the engine's end; runReplica is the
// `stratum replica` process body. docs/replica-protocol.md describes the protocol and the on-disk layout.

export { REPLICA_ERROR_CODES, ReplicaError, isReplicaError } from './errors.js';
export type { ReplicaErrorCode, ReplicaErrorDetails } from './errors.js';

export { BlockState, blockStateName } from './block-map.js';
export type { StateRun } from './block-map.js';
export { DEFAULT_BLOCK_SIZE, ReplicaStore } from './store.js';
export { LayeredReplica } from './layered.js';
export { LayerReader } from './layers.js';
export { readPieces, readSnapshotPieces, snapshotRanges, SNAPSHOT_MAP_WINDOW, SNAPSHOT_READ_CHUNK } from './snapshot-read.js';
export type { Range as SnapshotRange, SnapshotSource } from './snapshot-read.js';
export { VOLUME_HEAD } from './chain.js';
export type { ChainLayer } from './chain.js';
export type { ChainView, ControlAnswer, ControlRequest, SnapshotInfo } from './control.js';
export type { CreateReplicaOptions, ReplicaStoreOptions } from './store.js';
export type { BackingIdentity, ReplicaMeta } from './meta.js';
export type { MapJournalOptions } from './map-journal.js';
export type { PendingLogOptions, PendingReplay } from './pending-log.js';
export { fsStorage } from './storage.js';
export type { StorageDir, StorageFile } from './storage.js';
export { RangeLock } from './range-lock.js';
export type { LockMode } from './range-lock.js';
export type {
  ExtentData,
  ExtentRun,
  ReplicaBackingInfo,
  ReplicaDevice,
  ReplicaInfo,
  WrittenExtent,
  WrittenExtents,
} from './types.js';

export { ReplicaServer, statusOf } from './server.js';
export type { ReplicaAddress, ReplicaListenOptions, ReplicaServerOptions } from './server.js';
export { ReplicaClient, formatEndpoint } from './client.js';
export type { ReplicaClientOptions, ReplicaEndpoint, RequestOptions } from './client.js';
export * as replicaProtocol from './protocol.js';
export { isImageDataError, WireStatus } from './protocol.js';

export { runReplica } from './run.js';
export type { RunReplicaOptions } from './run.js';
