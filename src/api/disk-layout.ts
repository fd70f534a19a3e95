// The layout of a disk folder, shared by every component that touches one (node agent, backing-image manager,
// instance manager, controllers):
//
//   <disk>/longhorn-disk.cfg                         the disk's identity {diskName, diskUUID} (marks a registered disk)
//   <disk>/backing-images/<image>-<uuid>/backing     a backing-image copy (src/bim/names.ts owns the rest of it)
//   <disk>/replicas/<dataDirectoryName>/             a replica directory (src/replica/meta.ts owns its files)

import { dirname, basename, join } from 'node:path';

export const DISK_CONFIG_FILE = 'longhorn-disk.cfg';
export const REPLICAS_DIR = 'replicas';
export const BACKING_IMAGES_DIR = 'backing-images';

/**
 * What a backing-image file being written (a download, an upload, a sync) leaves free on its disk: the volumes whose
 * replicas live there write into it, and a full disk fails their writes. The smaller of 64 MiB and 5% of the disk.
 */
export function reserveFor(diskBytes: number): number {
  return Math.min(64 * 1024 * 1024, Math.floor(diskBytes * 0.05));
}

export function replicaDirOf(diskPath: string, dataDirectoryName: string): string {
  return join(diskPath, REPLICAS_DIR, dataDirectoryName);
}

/** The disk a replica directory lives on, or undefined when `dir` is not `<disk>/replicas/<name>`. */
export function diskOfReplicaDir(dir: string): string | undefined {
  const parent = dirname(dir);
  if (basename(parent) !== REPLICAS_DIR || basename(dir) === '' || basename(dir) === '..' || basename(dir) === '.') return undefined;
  return dirname(parent);
}
