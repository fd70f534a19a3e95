// Where a new replica of a volume goes: a schedulable disk with room for the whole volume, on a node that holds
// no other live replica of it (Longhorn's hard node anti-affinity), respecting the volume's node and disk
// selectors. With `replica-soft-anti-affinity` a node may take a second replica on another disk when nothing else
// fits. Pure: callers pass the nodes and the replicas already placed.

import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
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
}

export type Placement = { disk: DiskCandidate } | { reason: string };

export function placeReplica(p: PlacementInput): Placement {
  const scheduled = new Map<string, number>();
  for (const r of p.allReplicas) {
    const d = r.spec?.diskID ?? '';
    scheduled.set(d, (scheduled.get(d) ?? 0) + Number(r.spec?.volumeSize ?? 0));
  }
  const all = schedulableDisks(p.nodes).map((c) => ({ ...c, free: c.free - (scheduled.get(c.diskUUID) ?? 0) }));
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
  const roomy = selected.filter((c) => c.free >= p.size);
  if (roomy.length === 0) {
    const best = Math.max(...selected.map((c) => c.free));
    return { reason: `no disk has ${p.size} bytes free for the replica (the most free is ${Math.max(best, 0)} bytes)` };
  }
  return { reason: `every node with a suitable disk already holds a replica of this volume (${[...usedNodes].sort().join(', ')}); enable replica-soft-anti-affinity or add nodes` };
}
