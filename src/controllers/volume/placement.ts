// Where a new replica of a volume goes: a schedulable disk with room for the whole volume, and for a copy of its
// backing image when the disk holds none yet (the replica cannot start without one), on a node that holds no other
// live replica of it (Longhorn's hard node anti-affinity), respecting the volume's node and disk selectors. With
// `replica-soft-anti-affinity` a node may take a second replica on another disk when nothing else fits. When nothing
// fits, the reason names the disks that came closest and what each lacks. Pure: callers pass the nodes, the replicas
// already placed and where the image has copies.

import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { humanBytes } from '../../util/bytes.js';
import { rankDisks, schedulableDisks, type DiskCandidate } from '../scheduling.js';

export interface PlacementInput {
  nodes: readonly DeepReadonly<Node>[];
  /** Every replica in the cluster (for space already promised on each disk). */
  allReplicas: readonly DeepReadonly<Replica>[];
  /** The volume's live (not failed) replicas. */
  siblings: readonly DeepReadonly<Replica>[];
  size: number;
  nodeSelector?: readonly string[] | undefined;
  diskSelector?: readonly string[] | undefined;
  softAntiAffinity: boolean;
  /** The volume's backing image: a disk without a copy of it needs room for one as well. */
  backingImage?: { name: string; bytes: number; disks: ReadonlySet<string> } | undefined;
}

/** Disks named in a reason when none has room: the ones with most free space. */
const NAMED_DISKS = 3;

export type Placement = { disk: DiskCandidate } | { reason: string };

export function placeReplica(p: PlacementInput): Placement {
  const scheduled = new Map<string, number>();
  for (const r of p.allReplicas) {
    const d = r.spec?.diskID ?? '';
    scheduled.set(d, (scheduled.get(d) ?? 0) + Number(r.spec?.volumeSize ?? 0));
  }
  const bi = p.backingImage;
  const imageBytes = (c: DiskCandidate) => (bi && !bi.disks.has(c.diskUUID) ? bi.bytes : 0);
  // `free` is what stays for the replica once the image's copy is counted: the filters below compare it with its size.
  const all = schedulableDisks(p.nodes).map((c) => ({ ...c, free: c.free - (scheduled.get(c.diskUUID) ?? 0) - imageBytes(c) }));
  if (all.length === 0) return { reason: 'no node is Ready with a schedulable disk' };
  const usedNodes = new Set(p.siblings.map((r) => r.spec?.nodeID ?? ''));
  const usedDisks = new Set(p.siblings.map((r) => r.spec?.diskID ?? ''));
  const filter = { nodeSelector: p.nodeSelector, diskSelector: p.diskSelector, excludeDisks: usedDisks, needBytes: p.size };
  const fresh = rankDisks(all.filter((c) => !usedNodes.has(c.nodeName)), filter);
  if (fresh[0]) return { disk: fresh[0] };
  if (p.softAntiAffinity) {
    const shared = rankDisks(all, filter);
    if (shared[0]) return { disk: shared[0] };
  }
  const selected = rankDisks(all, { nodeSelector: p.nodeSelector, diskSelector: p.diskSelector });
  if (selected.length === 0) {
    return { reason: `no schedulable disk matches node selector [${(p.nodeSelector ?? []).join(',')}] and disk selector [${(p.diskSelector ?? []).join(',')}]` };
  }
  // The disks this replica could have had but for space (those of nodes holding a sibling only with soft anti-affinity).
  const open = selected.filter((c) => !usedDisks.has(c.diskUUID) && (p.softAntiAffinity || !usedNodes.has(c.nodeName)));
  if (open.length === 0) {
    return { reason: `every node with a suitable disk already holds a replica of this volume (${[...usedNodes].sort().join(', ')}); enable replica-soft-anti-affinity or add nodes` };
  }
  const lacking = open.slice(0, NAMED_DISKS).map((c) => {
    const image = imageBytes(c);
    const need = image > 0 && bi ? `${humanBytes(p.size)} for the replica + ${humanBytes(image)} for a copy of backing image ${bi.name}` : `${humanBytes(p.size)} for the replica`;
    return `${c.nodeName}/${c.diskName} has ${humanBytes(Math.max(c.free + image, 0))} available, needs ${need}`;
  });
  const more = open.length > NAMED_DISKS ? ` (and ${open.length - NAMED_DISKS} more)` : '';
  const taken = usedNodes.size > 0 && !p.softAntiAffinity ? `; ${[...usedNodes].sort().join(', ')} already hold a replica of this volume` : '';
  return { reason: `no disk has room: ${lacking.join('; ')}${more} (available: free space less the sizes of the replicas already on the disk)${taken}` };
}

