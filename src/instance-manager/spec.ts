// Instance specs: the POST /v1/instances body checked and normalised (so that "same spec" is a plain comparison).
// All path rules live here: replica directories and backing files are absolute, normalised and, when the manager
// has data roots, strictly inside one of them.

import { access, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { BACKING_IMAGES_DIR, DISK_CONFIG_FILE, diskOfReplicaDir } from '../api/disk-layout.js';
import { ImError } from './errors.js';

export interface ReplicaSpec {
  dir: string;
  size: number;
  blockSize?: number;
  backing?: { name: string; uuid: string; path: string };
}

export interface EngineSpec {
  volume: string;
  size: number;
  replicas: { name: string; address: string }[];
  frontend: 'nbd' | 'blockdev' | 'none';
  /** Only for frontend blockdev (default /dev/longhorn). */
  deviceDir?: string;
  /** The engine image it is started as (issue 12); a live swap changes what it runs, not this. */
  image?: string;
}

export type InstanceSpec = { type: 'replica'; replica: ReplicaSpec } | { type: 'engine'; engine: EngineSpec };

export interface CreateRequest {
  name: string;
  spec: InstanceSpec;
}

export const DEFAULT_DEVICE_DIR = '/dev/longhorn';

const NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const bad = (message: string) => new ImError('InvalidArgument', message);

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A DNS-1123-ish name: lower-case alphanumerics, "-" and ".", never ".." (it names files and export names). */
export function checkName(field: string, v: unknown): string {
  if (typeof v !== 'string' || !NAME.test(v) || v.includes('..')) {
    throw bad(`${field} must be a DNS-1123 name (lower-case letters, digits, "-" and ".", at most 253 characters, no ".."), not ${JSON.stringify(v)}`);
  }
  return v;
}

function checkString(field: string, v: unknown): string {
  if (typeof v !== 'string' || v === '' || v.includes('\0')) throw bad(`${field} must be a non-empty string`);
  return v;
}

function checkPositiveInt(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw bad(`${field} must be a positive integer, not ${JSON.stringify(v)}`);
  return v;
}

/**
 * An absolute, normalised path strictly inside one of `roots`, or anywhere when `roots` is 'any' (device
 * directories only). An instance manager without data roots accepts no replica path at all.
 */
export function checkPath(field: string, v: unknown, roots: readonly string[] | 'any'): string {
  const p = checkString(field, v);
  if (!isAbsolute(p)) throw bad(`${field} must be an absolute path, not ${JSON.stringify(p)}`);
  const n = normalize(p).replace(/\/+$/, '');
  if (n !== p.replace(/\/+$/, '') || n === '') throw bad(`${field} ${JSON.stringify(p)} must be normalised (no "..", ".", "//")`);
  if (roots !== 'any' && !roots.some((r) => isInside(r, n))) {
    throw bad(`${field} ${JSON.stringify(p)} is not inside the data roots of this instance manager (${roots.length ? roots.join(', ') : 'it has none'})`);
  }
  return n;
}

/** `path` is strictly below `root` (both normalised, absolute). */
export function isInside(root: string, path: string): boolean {
  return path.startsWith(`${root.replace(/\/+$/, '')}/`);
}

/**
 * `dir` with every symlink resolved is still strictly inside a data root (also resolved): a symlink planted inside
 * a disk cannot point a removal or a replica elsewhere. A path that does not exist yet is checked by its parent.
 */
export async function checkResolvedInside(field: string, dir: string, roots: readonly string[]): Promise<void> {
  const real = await realpathOfExisting(dir);
  const realRoots = await Promise.all(roots.map((r) => realpathOfExisting(r)));
  if (!realRoots.some((r) => isInside(r, real))) {
    throw bad(`${field} ${JSON.stringify(dir)} resolves to ${real}, outside the data roots of this instance manager (${roots.length ? roots.join(', ') : 'it has none'})`);
  }
}

/** realpath of the longest existing prefix of `p`, with the rest appended. */
async function realpathOfExisting(p: string): Promise<string> {
  let head = p;
  const tail: string[] = [];
  for (;;) {
    try {
      return join(await realpath(head), ...tail);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || head === '/') throw bad(`Cannot resolve ${p}: ${(err as Error).message}`);
      tail.unshift(basename(head));
      head = dirname(head);
    }
  }
}

/** "host:port" or "[v6]:port" with a port of 1–65535. */
export function checkAddress(field: string, v: unknown): string {
  const s = checkString(field, v);
  const m = /^(?:\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) throw bad(`${field} must be "host:port", not ${JSON.stringify(s)}`);
  return s;
}

/** Checks a POST /v1/instances body. */
export function parseCreateRequest(body: unknown, roots: readonly string[]): CreateRequest {
  if (!isRecord(body)) throw bad('the request body must be a JSON object');
  const name = checkName('name', body.name);
  if (body.type === 'replica') {
    const r = body.replica;
    if (!isRecord(r)) throw bad('replica must be an object {dir, size, blockSize?, backing?}');
    const spec: ReplicaSpec = { dir: checkPath('replica.dir', r.dir, roots), size: checkPositiveInt('replica.size', r.size) };
    if (r.blockSize !== undefined) spec.blockSize = checkPositiveInt('replica.blockSize', r.blockSize);
    if (r.backing !== undefined) {
      const b = r.backing;
      if (!isRecord(b)) throw bad('replica.backing must be an object {name, uuid, path}');
      spec.backing = { name: checkString('replica.backing.name', b.name), uuid: checkString('replica.backing.uuid', b.uuid), path: checkPath('replica.backing.path', b.path, roots) };
    }
    return { name, spec: { type: 'replica', replica: spec } };
  }
  if (body.type === 'engine') {
    const e = body.engine;
    if (!isRecord(e)) throw bad('engine must be an object {volume, size, replicas, frontend, deviceDir?}');
    if (!Array.isArray(e.replicas)) throw bad('engine.replicas must be a list of {name, address}');
    const replicas = e.replicas.map((r: unknown, i) => {
      if (!isRecord(r)) throw bad(`engine.replicas[${i}] must be {name, address}`);
      return { name: checkName(`engine.replicas[${i}].name`, r.name), address: checkAddress(`engine.replicas[${i}].address`, r.address) };
    });
    if (new Set(replicas.map((r) => r.name)).size !== replicas.length) throw bad('engine.replicas names a replica twice');
    const frontend = e.frontend ?? 'nbd';
    if (frontend !== 'nbd' && frontend !== 'blockdev' && frontend !== 'none') throw bad(`engine.frontend must be "nbd", "blockdev" or "none", not ${JSON.stringify(frontend)}`);
    const spec: EngineSpec = { volume: checkName('engine.volume', e.volume), size: checkPositiveInt('engine.size', e.size), replicas, frontend };
    if (e.image !== undefined) {
      if (typeof e.image !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,252}$/.test(e.image)) throw bad('engine.image must be an image name');
      spec.image = e.image;
    }
    if (frontend === 'blockdev') spec.deviceDir = e.deviceDir === undefined ? DEFAULT_DEVICE_DIR : checkPath('engine.deviceDir', e.deviceDir, 'any');
    else if (e.deviceDir !== undefined) throw bad('engine.deviceDir applies to frontend "blockdev" only');
    return { name, spec: { type: 'engine', engine: spec } };
  }
  throw bad(`type must be "replica" or "engine", not ${JSON.stringify(body.type)}`);
}

/** Specs are built in a fixed key order by parseCreateRequest, so JSON equality is spec equality. */
export function sameSpec(a: InstanceSpec, b: InstanceSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * A replica lives at `<disk>/replicas/<name>` on a registered disk (one holding longhorn-disk.cfg) inside a data
 * root, symlinks resolved, and reads a backing file of that same disk: an instance never opens files elsewhere.
 */
export async function checkOnDisk(spec: InstanceSpec, roots: readonly string[]): Promise<void> {
  if (spec.type !== 'replica') return;
  const r = spec.replica;
  checkPath('replica.dir', r.dir, roots);
  // The directory is written and, on cleanup, removed: a symlink must not lead that elsewhere. The backing file is
  // only read, and may be a link the operator made (the path rules below still hold for the link itself).
  await checkResolvedInside('replica.dir', r.dir, roots);
  const disk = diskOfReplicaDir(r.dir);
  if (!disk) throw bad(`replica.dir ${JSON.stringify(r.dir)} must be <disk>/replicas/<name>`);
  try {
    await access(join(disk, DISK_CONFIG_FILE));
  } catch {
    throw bad(`replica.dir ${JSON.stringify(r.dir)} is not on a registered disk: ${disk} holds no ${DISK_CONFIG_FILE}`);
  }
  if (r.backing && !r.backing.path.startsWith(`${disk}/${BACKING_IMAGES_DIR}/`)) {
    throw bad(`replica.backing.path ${JSON.stringify(r.backing.path)} must be a backing-image file of the replica's disk (${disk}/${BACKING_IMAGES_DIR}/…)`);
  }
}
