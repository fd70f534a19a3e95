// Choosing disks: which disks can take a backing image copy or a replica, and which of them is best. Longhorn
// picks a random first fit and ignores free space (longhorn-manager-backing-images.md §8.4); we score eligible
// disks by failure domain first (a node that holds no copy yet), then by free space.

import type { DeepReadonly } from '../api/meta.js';
import type { Node } from '../api/node.js';
import type { Replica } from '../api/replica.js';
import { humanBytes } from '../util/bytes.js';

export interface DiskCandidate {
  nodeName: string;
  diskName: string;
  diskUUID: string;
  diskPath: string;
  /** Bytes free for new data now: available minus reserved (what replicas will still write is not counted). */
  free: number;
  /** The filesystem's size. */
  maximum: number;
  /** The disk's `storageReserved`: bytes kept for others, counted against what may be scheduled. */
  reserved: number;
  diskTags: readonly string[];
  nodeTags: readonly string[];
}

export interface DiskFilter {
  nodeSelector?: readonly string[] | undefined;
  diskSelector?: readonly string[] | undefined;
  /** Disk UUIDs that must not be chosen (they hold a copy already). */
  excludeDisks?: ReadonlySet<string> | undefined;
  /** Nodes preferred against (they hold a copy already): chosen only when nothing else fits. */
  avoidNodes?: ReadonlySet<string> | undefined;
  /** Bytes the disk must have free. */
  needBytes?: number | undefined;
}

const isTrue = (conds: DeepReadonly<{ type: string; status: string }[]> | null | undefined, type: string) =>
  (conds ?? []).some((c) => c.type === type && c.status === 'True');

export function nodeIsReady(node: DeepReadonly<Node>): boolean {
  return isTrue(node.status?.conditions, 'Ready');
}

type NodeDisk = DeepReadonly<NonNullable<NonNullable<Node['spec']>['disks']>[string]>;
type NodeDiskStatus = DeepReadonly<NonNullable<NonNullable<Node['status']>['diskStatus']>[string]>;

function candidate(node: DeepReadonly<Node>, diskName: string, spec: NodeDisk, st: NodeDiskStatus & { diskUUID: string }): DiskCandidate {
  return {
    nodeName: node.metadata.name ?? '',
    diskName,
    diskUUID: st.diskUUID,
    diskPath: st.diskPath ?? spec.path ?? '',
    free: (st.storageAvailable ?? 0) - (spec.storageReserved ?? 0),
    maximum: st.storageMaximum ?? 0,
    reserved: spec.storageReserved ?? 0,
    diskTags: spec.tags ?? [],
    nodeTags: node.spec?.tags ?? [],
  };
}

/** Every disk of a Ready, schedulable node that is itself Ready, schedulable and not being evicted. */
export function schedulableDisks(nodes: readonly DeepReadonly<Node>[]): DiskCandidate[] {
  const out: DiskCandidate[] = [];
  for (const node of nodes) {
    if (!nodeIsReady(node) || node.spec?.allowScheduling === false || node.spec?.evictionRequested) continue;
    for (const [diskName, spec] of Object.entries(node.spec?.disks ?? {})) {
      const st = node.status?.diskStatus?.[diskName];
      if (!st?.diskUUID || spec.allowScheduling === false || spec.evictionRequested) continue;
      if (!isTrue(st.conditions, 'Ready') || !isTrue(st.conditions, 'Schedulable')) continue;
      out.push(candidate(node, diskName, spec, { ...st, diskUUID: st.diskUUID }));
    }
  }
  return out;
}

/** Every disk the nodes report, by UUID, whatever its state: the disks replicas already sit on. */
export function disksByUUID(nodes: readonly DeepReadonly<Node>[]): Map<string, DiskCandidate> {
  const out = new Map<string, DiskCandidate>();
  for (const node of nodes) {
    for (const [diskName, spec] of Object.entries(node.spec?.disks ?? {})) {
      const st = node.status?.diskStatus?.[diskName];
      if (st?.diskUUID) out.set(st.diskUUID, candidate(node, diskName, spec, { ...st, diskUUID: st.diskUUID }));
    }
  }
  return out;
}

/** The settings that bound what is scheduled on a disk (Longhorn's, with its meaning). */
export interface ProvisioningLimits {
  /** `storage-over-provisioning-percentage`: the volume sizes a disk may hold, as a share of its size less reserved. */
  overProvisioningPercent: number;
  /** `storage-minimal-available-percentage`: free space, as a share of the disk's size, nothing scheduled may take. */
  minimalAvailablePercent: number;
}

/** The volume size a replica promises its disk: what `storageScheduled` sums and over-provisioning bounds. */
export function promisedBytes(r: DeepReadonly<Replica>): number {
  return Number(r.spec?.volumeSize ?? 0) || 0;
}

/** The volume sizes promised to each disk (by UUID) by these replicas. */
export function promisedByDisk(replicas: readonly DeepReadonly<Replica>[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of replicas) {
    const d = r.spec?.diskID ?? '';
    if (d) out.set(d, (out.get(d) ?? 0) + promisedBytes(r));
  }
  return out;
}

/** The volume bytes a disk may be promised in all: (size - reserved) x over-provisioning percentage. */
export function schedulableBytes(c: DiskCandidate, limits: ProvisioningLimits): number {
  return Math.floor((Math.max(c.maximum - c.reserved, 0) * limits.overProvisioningPercent) / 100);
}

/** Why a disk cannot be promised `need` more bytes of volume sizes, having `promised` already (placement, expansion). */
export function overProvisioningWords(c: DiskCandidate, limits: ProvisioningLimits, promised: number, need: number): string {
  const left = schedulableBytes(c, limits) - promised;
  return `${c.nodeName}/${c.diskName} can take ${humanBytes(Math.max(left, 0))} more of volume sizes ` +
    `(storage-over-provisioning-percentage ${limits.overProvisioningPercent}% of ${humanBytes(Math.max(c.maximum - c.reserved, 0))}, ${humanBytes(promised)} promised to replicas), needs ${humanBytes(need)}`;
}

/** The free space that must stay on a disk whatever is scheduled on it. */
export function minimalAvailableBytes(c: DiskCandidate, minimalAvailablePercent: number): number {
  return Math.ceil((c.maximum * minimalAvailablePercent) / 100);
}

/** Disks passing the filter, best first: nodes not avoided first, then most free space, then name for stability. */
export function rankDisks<T extends DiskCandidate>(cands: readonly T[], f: DiskFilter): T[] {
  const hasAll = (have: readonly string[], want: readonly string[] | undefined) => (want ?? []).every((t) => have.includes(t));
  return cands
    .filter((c) => !f.excludeDisks?.has(c.diskUUID))
    .filter((c) => hasAll(c.nodeTags, f.nodeSelector) && hasAll(c.diskTags, f.diskSelector))
    .filter((c) => f.needBytes === undefined || c.free >= f.needBytes)
    .sort((a, b) => {
      const av = f.avoidNodes?.has(a.nodeName) ? 1 : 0;
      const bv = f.avoidNodes?.has(b.nodeName) ? 1 : 0;
      if (av !== bv) return av - bv;
      if (a.free !== b.free) return b.free - a.free;
      return `${a.nodeName}/${a.diskName}`.localeCompare(`${b.nodeName}/${b.diskName}`);
    });
}

/** UUIDs of the disks that are to be emptied: the disk's own `evictionRequested`, or its node's. */
export function evictingDisks(nodes: readonly DeepReadonly<Node>[]): Set<string> {
  const out = new Set<string>();
  for (const n of nodes) {
    for (const [disk, st] of Object.entries(n.status?.diskStatus ?? {})) {
      if (st.diskUUID && (n.spec?.evictionRequested || n.spec?.disks?.[disk]?.evictionRequested)) out.add(st.diskUUID);
    }
  }
  return out;
}

/** Finds a disk by UUID across nodes (with its node), or undefined. */
export function findDisk(nodes: readonly DeepReadonly<Node>[], diskUUID: string): { node: DeepReadonly<Node>; diskName: string; path: string } | undefined {
  for (const node of nodes) {
    for (const [diskName, st] of Object.entries(node.status?.diskStatus ?? {})) {
      if (st.diskUUID === diskUUID) return { node, diskName, path: st.diskPath ?? node.spec?.disks?.[diskName]?.path ?? '' };
    }
  }
  return undefined;
}
