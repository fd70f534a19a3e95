// The replica's metadata file (`replica.json`): who the replica is and what it sits on. Written once at creation by
// atomic replacement, and written last, so its presence means the replica directory is complete.

import { checkBlockSize } from './block-map.js';
import { corrupt, ReplicaError } from './errors.js';
import type { ImageFormat } from '../imagefmt/index.js';
import type { ReplicaBackingInfo } from './types.js';

export const META_FILE = 'replica.json';
export const HEAD_FILE = 'head.img';

export interface BackingIdentity {
  /** BackingImage name. */
  name: string;
  /** BackingImage uuid (its files live at `<disk>/backing-images/<name>-<uuid>/`). */
  uuid: string;
  /** The backing file, absolute or relative to the replica directory. Read-only; never copied or converted. */
  path: string;
  /** Recorded at creation and checked at every open, so a swapped file is refused rather than served. */
  format: ImageFormat;
  virtualSize: number;
}

/** What a replica reports of its backing image (info, the wire): its identity without the local path. */
export function backingInfo(b: BackingIdentity | undefined | null): ReplicaBackingInfo | null {
  return b ? { name: b.name, uuid: b.uuid, format: b.format, virtualSize: b.virtualSize } : null;
}

export interface ReplicaMeta {
  version: 1;
  /** Replica name (the Replica resource's name). */
  name: string;
  /** Volume size in bytes, a multiple of blockSize. */
  size: number;
  /** Map granularity in bytes (a power of two, 512 B to 1 MiB; 4096 by default). */
  blockSize: number;
  backing: BackingIdentity | null;
  createdAt: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

export function checkName(what: string, name: string): void {
  if (!NAME.test(name)) {
    throw new ReplicaError('InvalidArgument', `${what} ${JSON.stringify(name)} must be 1-253 letters, digits, '.', '_' or '-'`);
  }
}

export function checkGeometry(size: number, blockSize: number): void {
  if (!checkBlockSize(blockSize)) {
    throw new ReplicaError('InvalidArgument', `block size ${blockSize} must be a power of two from 512 to 1048576`);
  }
  if (!Number.isSafeInteger(size) || size <= 0 || size % blockSize !== 0) {
    throw new ReplicaError('InvalidArgument', `volume size ${size} must be a positive multiple of the block size ${blockSize}`);
  }
}

export function encodeMeta(m: ReplicaMeta): Uint8Array {
  return Buffer.from(`${JSON.stringify(m, null, 2)}\n`, 'utf8');
}

export function decodeMeta(bytes: Uint8Array): ReplicaMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw corrupt(META_FILE, 0, `not JSON (${(err as Error).message})`);
  }
  const m = raw as Partial<ReplicaMeta> | null;
  if (typeof m !== 'object' || m === null || m.version !== 1) throw corrupt(META_FILE, 0, 'not a version 1 replica metadata object');
  if (typeof m.name !== 'string' || typeof m.size !== 'number' || typeof m.blockSize !== 'number' || typeof m.createdAt !== 'string') {
    throw corrupt(META_FILE, 0, 'name, size, blockSize and createdAt are required');
  }
  try {
    checkGeometry(m.size, m.blockSize);
  } catch (err) {
    throw corrupt(META_FILE, 0, (err as Error).message);
  }
  const b = m.backing;
  if (b !== null) {
    const ok =
      typeof b === 'object' &&
      typeof b.name === 'string' &&
      typeof b.uuid === 'string' &&
      typeof b.path === 'string' &&
      (b.format === 'raw' || b.format === 'qcow2') &&
      Number.isSafeInteger(b.virtualSize);
    if (!ok) throw corrupt(META_FILE, 0, 'backing must be null or {name, uuid, path, format, virtualSize}');
  }
  return { version: 1, name: m.name, size: m.size, blockSize: m.blockSize, backing: b ?? null, createdAt: m.createdAt };
}
