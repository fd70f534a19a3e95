// Shapes shared by the replica store, its wire protocol, the server and the client: what a replica says about
// itself, its written extents, and the rebuild copy unit. `ReplicaDevice` is what the server serves (the store, or
// a wrapper of it in tests that injects stalls and failures).

import type { ControlAnswer, ControlRequest } from './control.js';
import type { ImageFormat } from '../imagefmt/index.js';
import type { BlockState } from './block-map.js';

export interface ReplicaBackingInfo {
  name: string;
  uuid: string;
  format: ImageFormat;
  virtualSize: number;
}

export interface ReplicaInfo {
  name: string;
  /** Volume size in bytes. */
  size: number;
  /** Map granularity in bytes. */
  blockSize: number;
  /**
   * Count of acknowledged mutations (write, trim, write-zeroes), made durable with each flush. Replicas fed by one
   * engine agree on it; at attach, a replica behind the others missed writes.
   */
  revision: number;
  /** Map checkpoint generation: grows at every open, so a restarted replica is told apart from a live one. */
  generation: number;
  backing: ReplicaBackingInfo | null;
}

export interface WrittenExtent {
  offset: number;
  length: number;
  /** 'data' blocks hold bytes in the head; 'zero' blocks were trimmed or zeroed and hide the backing image. */
  state: 'data' | 'zero';
}

export interface WrittenExtents {
  extents: WrittenExtent[];
  /** Where the next page starts, or undefined when the listing is complete. */
  nextOffset: number | undefined;
}

export interface ExtentRun {
  length: number;
  state: BlockState;
}

export interface ExtentData {
  /** Runs covering the requested range in order. */
  runs: ExtentRun[];
  /** The bytes of the DATA runs, concatenated in order. */
  data: Uint8Array;
}

interface Signal {
  signal?: AbortSignal | undefined;
}

export interface ReplicaDevice {
  readonly size: number;
  info(): ReplicaInfo;
  read(offset: number, length: number, opts?: Signal): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array, opts: { fua: boolean } & Signal): Promise<void>;
  flush(opts?: Signal): Promise<void>;
  trim(offset: number, length: number, opts: { fua: boolean } & Signal): Promise<void>;
  writeZeroes(offset: number, length: number, opts: { fua: boolean } & Signal): Promise<void>;
  writtenExtents(opts?: { offset?: number; maxExtents?: number }): WrittenExtents;
  readExtent(offset: number, length: number, opts?: Signal): Promise<ExtentData>;
  setRevision(revision: number): void;
  /** Snapshot operations and layer copies (the CONTROL op, control.ts); absent on a device without snapshots. */
  control?(req: ControlRequest, data: Uint8Array, opts?: Signal): Promise<ControlAnswer>;
}
