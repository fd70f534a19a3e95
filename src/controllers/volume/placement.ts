// Where a new replica of a volume goes: a schedulable disk on a node that holds no other live replica of it
// (Longhorn's hard node anti-affinity), respecting the volume's node and disk selectors. With
// `replica-soft-anti-affinity` a node may take a second replica on another disk when nothing else fits.
//
// Room is Longhorn's: the sizes of the volumes whose replicas a disk holds, this one included, stay within
// (size - reserved) x `storage-over-provisioning-percentage` (volumes are thin: what they wrote already left the
// free space, so free space is not charged for them again), and a copy of the backing image the disk lacks (the
// replica cannot start without one) must leave more than `storage-minimal-available-percentage` of the disk free.
// When nothing fits, the reason names the disks that came closest and what each lacks. Pure: callers pass the
// nodes, the replicas already placed, the limits and where the image has copies.

import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { humanBytes } from '../../util/bytes.js';
import { minimalAvailableBytes, overProvisioningWords, promisedByDisk, rankDisks, schedulableBytes, schedulableDisks, type DiskCandidate, type ProvisioningLimits } from '../scheduling.js';

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
  limits: ProvisioningLimits;
  /** The volume's backing image: a disk without a copy of it needs room for one as well. */
  backingImage?: { name: string; bytes: number; disks: ReadonlySet<string> } | undefined;
}

/** Disks named in a reason when none has room: the ones with most free space. */
const NAMED_DISKS = 3;

export type Placement = { disk: DiskCandidate } | { reason: string };

/** A disk as placement sees it: `free` ranks it (the tighter of its two limits), `lacks` says why it cannot take this replica. */
interface Room extends DiskCandidate {
  lacks: string | undefined;
}

export function placeReplica(p: PlacementInput): Placement {
  const scheduled = promisedByDisk(p.allReplicas);
  const bi = p.backingImage;
  const room = (c: DiskCandidate): Room => {
    const promised = scheduled.get(c.diskUUID) ?? 0;
    const limit = schedulableBytes(c, p.limits);
    const left = limit - promised;
    const image = bi && !bi.disks.has(c.diskUUID) ? bi.bytes : 0;
    const minimum = minimalAvailableBytes(c, p.limits.minimalAvailablePercent);
    const spare = c.free - image - minimum;
    let lacks: string | undefined;
    if (left < p.size) {
      lacks = overProvisioningWords(c, p.limits, promised, p.size);
    } else if (image > 0 && bi && spare <= 0) {
      lacks = `${c.nodeName}/${c.diskName} has ${humanBytes(Math.max(c.free, 0))} free, and a ${humanBytes(image)} copy of backing image ${bi.name} ` +
        `would leave less than the ${humanBytes(minimum)} that must stay free (storage-minimal-available-percentage ${p.limits.minimalAvailablePercent}%)`;
    }
    return { ...c, free: Math.min(left - p.size, spare), lacks };
  };
  const all = schedulableDisks(p.nodes).map(room);
  if (all.length === 0) return { reason: 'no node is Ready with a schedulable disk' };
  const usedNodes = new Set(p.siblings.map((r) => r.spec?.nodeID ?? ''));
  const usedDisks = new Set(p.siblings.map((r) => r.spec?.diskID ?? ''));
  const filter = { nodeSelector: p.nodeSelector, diskSelector: p.diskSelector, excludeDisks: usedDisks };
  const fits = all.filter((c) => !c.lacks);
  const fresh = rankDisks(fits.filter((c) => !usedNodes.has(c.nodeName)), filter);
  if (fresh[0]) return { disk: fresh[0] };
  if (p.softAntiAffinity) {
    const shared = rankDisks(fits, filter);
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
  const lacking = open.slice(0, NAMED_DISKS).map((c) => c.lacks);
  const more = open.length > NAMED_DISKS ? ` (and ${open.length - NAMED_DISKS} more)` : '';
  const taken = usedNodes.size > 0 && !p.softAntiAffinity ? `; ${[...usedNodes].sort().join(', ')} already hold a replica of this volume` : '';
  return { reason: `no disk has room: ${lacking.join('; ')}${more}${taken}` };
}
