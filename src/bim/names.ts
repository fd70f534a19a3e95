// Path safety and the on-disk layout. Every path the manager writes is built here from a checked name and uuid, so a
// request can never reach outside `<disk>/backing-images/`: names and uuids with a separator, "..", NUL or nothing
// at all are refused before any path is formed.

import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { BimError } from './errors.js';

/** The folder under the disk that the manager owns. */
export const IMAGES_DIR = 'backing-images';
/**
 * In IMAGES_DIR: the image of the manager that last owned the folder (JSON `{"image": …}`). A manager of another
 * image finding it takes the folder over from an upgraded-away manager (see takeOver in manager.ts).
 */
export const OWNER_FILE = '.manager-image.json';
/** The disk's identity file, written by the node agent. */
export const DISK_CONFIG = 'longhorn-disk.cfg';

/** File names inside `<disk>/backing-images/<name>-<uuid>/`. */
export const FILES = {
  /** The complete, verified file. */
  backing: 'backing',
  /** Metadata of `backing` (JSON), written after the data is durable. */
  meta: 'backing.meta.json',
  /** The file being received, created at full size; holes stay holes. */
  partial: 'backing.partial',
  /** The persisted map of received chunks of `backing.partial` (binary, see chunkmap.ts). */
  chunkMap: 'backing.partial.map',
  /** What was asked for when the partial was started (name, uuid, size, checksum), so a restart knows it. */
  intent: 'backing.partial.json',
  /** A `backing` that failed verification at start, kept for a human to look at, never served. */
  rejected: 'backing.rejected',
} as const;

/** The cached chunk manifest of `backing` for one chunk size. */
export function manifestFileName(chunkSize: number): string {
  return `backing.chunks-${chunkSize}.json`;
}

/**
 * Where a finished file's producer (the data source) leaves the chunk manifest it computed while writing the file:
 * beside it, named like the manager's own cache (`<file>.chunks-<N>.json`, `{identity, manifest}` in JSON). A fetch
 * that trusts the file's SHA-512 trusts this too when its identity matches, so the first sync reads nothing.
 */
export function manifestSidecarPath(filePath: string, chunkSize: number): string {
  return `${filePath}.chunks-${chunkSize}.json`;
}

// Longer names could not be a directory entry once "-<uuid>" is added (255 bytes on every Linux file system).
const MAX_NAME_BYTES = 200;

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Throws InvalidArgument naming `field` when `value` cannot safely be part of a path: empty, "/", "\", "..", NUL,
 * other control characters, or too long.
 */
export function checkPathComponent(field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new BimError('InvalidArgument', `${field} is required and must be a non-empty string`);
  const bad = value.includes('/')
    ? '"/"'
    : value.includes('\\')
      ? '"\\"'
      : value.includes('..')
        ? '".."'
        : value.includes('\0')
          ? 'NUL'
          : hasControlChar(value)
            ? 'a control character'
            : undefined;
  if (bad) throw new BimError('InvalidArgument', `${field} ${JSON.stringify(value)} must not contain ${bad}`);
  if (Buffer.byteLength(value) > MAX_NAME_BYTES) {
    throw new BimError('InvalidArgument', `${field} is ${Buffer.byteLength(value)} bytes long; at most ${MAX_NAME_BYTES} are allowed`);
  }
  return value;
}

/** The directory name of a file: `<name>-<uuid>`, both checked. */
export function fileDirName(name: string, uuid: string): string {
  return `${checkPathComponent('name', name)}-${checkPathComponent('uuid', uuid)}`;
}

/** True when `child` is `parent` itself or lies below it (both resolved; no symlink resolution). */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(resolve(parent), resolve(child));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** The paths of one disk. */
export class DiskLayout {
  readonly disk: string;
  readonly images: string;

  constructor(disk: string) {
    this.disk = resolve(disk);
    this.images = join(this.disk, IMAGES_DIR);
  }

  get configPath(): string {
    return join(this.disk, DISK_CONFIG);
  }

  /** The directory of a file; `dir` is a name from `fileDirName` or an entry of the scanned folder. */
  dirOf(dir: string): string {
    checkPathComponent('directory', dir);
    return join(this.images, dir);
  }

  path(dir: string, file: string): string {
    return join(this.dirOf(dir), file);
  }
}

/** Chunk sizes a sender accepts: powers of two from 64 KiB to 64 MiB. */
export function checkChunkSize(value: unknown): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 65536 || n > 64 * 1024 * 1024 || (n & (n - 1)) !== 0) {
    throw new BimError('InvalidArgument', `chunk size ${JSON.stringify(value)} must be a power of two between 65536 and 67108864`);
  }
  return n;
}

/** A non-negative safe integer from a query or body field, or InvalidArgument naming the field. */
export function checkSize(field: string, value: unknown): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new BimError('InvalidArgument', `${field} must be a non-negative integer, not ${JSON.stringify(value)}`);
  }
  return n;
}

/** A SHA-512 hex digest (128 lower-case hex characters), or InvalidArgument naming the field. */
export function checkSha512(field: string, value: unknown): string {
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{128}$/.test(value)) {
    throw new BimError('InvalidArgument', `${field} must be a SHA-512 digest in hex (128 characters), not ${JSON.stringify(value)}`);
  }
  return value.toLowerCase();
}

/** A peer manager's base URL (http, no query), normalised without a trailing slash. */
export function checkPeerUrl(field: string, value: unknown): string {
  if (typeof value !== 'string') throw new BimError('InvalidArgument', `${field} must be a URL string`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BimError('InvalidArgument', `${field} ${JSON.stringify(value)} is not a URL`);
  }
  // Managers talk plain HTTP to each other (the data is verified by checksums, not by the transport).
  if (url.protocol !== 'http:') throw new BimError('InvalidArgument', `${field} ${JSON.stringify(value)} must be an http:// URL of a peer manager`);
  if (url.search || url.hash) throw new BimError('InvalidArgument', `${field} ${JSON.stringify(value)} must not have a query or fragment`);
  return url.toString().replace(/\/+$/, '');
}
