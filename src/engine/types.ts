// Shapes of the engine's public surface: the replica backend it drives (ReplicaClient fits it), replica modes, and
// the status it exposes to controllers.

import type { ControlAnswer, ControlRequest, ExtentData, ReplicaInfo, RequestOptions, WrittenExtents } from '../replica/index.js';

/** RW: receives writes and serves reads. WO: rebuilding, receives writes only. ERR: failed, receives nothing. */
export type ReplicaMode = 'RW' | 'WO' | 'ERR';

/** Options of a mutation (write, trim, write zeroes, flush). */
export interface MutationOptions extends RequestOptions {
  fua?: boolean;
  /**
   * The same mutation went to remote replicas just before: a replica in this process runs it in the check phase,
   * after those requests left (local-replica.ts). Others ignore it.
   */
  deferred?: boolean;
}

/** What the engine needs from a replica; `ReplicaClient` implements it. */
export interface ReplicaBackend {
  readonly address: string;
  /** In this process (no socket): reads prefer it, as they cost no copy over the network. */
  readonly local?: boolean;
  /** Resolves when the connection is gone. */
  readonly closed: Promise<void>;
  info(opts?: RequestOptions): Promise<ReplicaInfo>;
  ping(opts?: RequestOptions): Promise<void>;
  read(offset: number, length: number, opts?: RequestOptions): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array, opts?: MutationOptions): Promise<void>;
  flush(opts?: MutationOptions): Promise<void>;
  trim(offset: number, length: number, opts?: MutationOptions): Promise<void>;
  writeZeroes(offset: number, length: number, opts?: MutationOptions): Promise<void>;
  listExtents(offset: number, maxExtents?: number, opts?: RequestOptions): Promise<WrittenExtents>;
  readExtent(offset: number, length: number, opts?: RequestOptions): Promise<ExtentData>;
  setRevision(revision: number, opts?: RequestOptions): Promise<void>;
  /** Snapshot operations and layer copies (the replica's CONTROL op). */
  control(req: ControlRequest, data?: Uint8Array, opts?: RequestOptions): Promise<ControlAnswer>;
  close(): Promise<void>;
  destroy(err?: Error): void;
}

export interface ReplicaStatus {
  name: string;
  address: string;
  mode: ReplicaMode;
  /** Revision reported when the replica joined. */
  revision: number;
  /** Why the replica is ERR. */
  error?: string;
  /** When the mode last changed (ISO 8601). */
  since: string;
}

export interface RebuildStatus {
  replica: string;
  /** The RW replica currently copied from (changes if a source fails). */
  source: string;
  state: 'running' | 'complete' | 'failed';
  startedAt: string;
  finishedAt?: string;
  /** Written bytes (data and zero extents) listed on the source so far. */
  bytesListed: number;
  /** Data bytes copied to the new replica. */
  bytesCopied: number;
  /** Bytes of zero extents reproduced on the new replica with write-zeroes (no data sent). */
  zeroBytes: number;
  /** Copy windows done. */
  chunks: number;
  /** Snapshot layers copied (their extents count in the bytes above). */
  snapshots?: number;
  error?: string;
}

export interface EngineStatus {
  volume: string;
  size: number;
  blockSize: number;
  /** 'healthy': every replica RW; 'degraded': some replica WO or ERR but one RW; 'faulted': no RW replica. */
  state: 'healthy' | 'degraded' | 'faulted';
  replicas: ReplicaStatus[];
  rebuild?: RebuildStatus;
}
