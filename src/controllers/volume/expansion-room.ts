// Whether the disks holding a volume's replicas can hold it at a larger size (Longhorn's
// CheckReplicasSizeExpansion). A replica promises its disk the volume's size (scheduling.ts, `promisedBytes`), and
// placement keeps every disk's promises within `storage-over-provisioning-percentage` of its size less reserved;
// growing the volume grows the promise of each of its replicas, on disks chosen for the old size. A growth that
// would break that bound on some disk is refused before anything changes, naming the disk: expanding is not a way
// around the limit placement enforces.

import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { disksByUUID, overProvisioningWords, promisedByDisk, schedulableBytes, type ProvisioningLimits } from '../scheduling.js';

export interface ExpansionRoomInput {
  /** The volume's replicas. */
  replicas: readonly DeepReadonly<Replica>[];
  /** Every replica in the cluster (the promises each disk holds). */
  allReplicas: readonly DeepReadonly<Replica>[];
  nodes: readonly DeepReadonly<Node>[];
  limits: ProvisioningLimits;
  /** Bytes the volume grows by. */
  growBy: number;
}

/** Why the volume cannot grow by `growBy`: one line per disk that lacks room; empty when every disk has it. */
export function expansionShortfalls(p: ExpansionRoomInput): string[] {
  if (p.growBy <= 0) return [];
  const promised = promisedByDisk(p.allReplicas);
  const disks = disksByUUID(p.nodes);
  const onDisk = new Map<string, number>();
  for (const r of p.replicas) {
    const d = r.spec?.diskID ?? '';
    if (d) onDisk.set(d, (onDisk.get(d) ?? 0) + 1);
  }
  const out: string[] = [];
  for (const [uuid, count] of onDisk) {
    const c = disks.get(uuid);
    if (!c) continue; // a disk no node reports any more: its replica is rebuilt elsewhere, placed at the new size
    const now = promised.get(uuid) ?? 0;
    const need = count * p.growBy;
    if (now + need > schedulableBytes(c, p.limits)) out.push(overProvisioningWords(c, p.limits, now, need));
  }
  return out.sort();
}
