// What is scheduled on each disk of a node, as its status shows it: the replicas placed there (name → volume size,
// summed in `storageScheduled`, the figure `storage-over-provisioning-percentage` bounds) and the backing-image
// copies asked of it (name → bytes of a copy). Pure: the controller passes the replicas of the node and the images
// that name each disk.

import type { BackingImage } from '../../api/backing-image.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { promisedBytes } from '../scheduling.js';

export interface DiskScheduled {
  storageScheduled: number;
  scheduledReplica: Record<string, number>;
  scheduledBackingImage: Record<string, number>;
}

export function scheduledOnDisks(
  node: DeepReadonly<Node>,
  replicas: readonly DeepReadonly<Replica>[],
  imagesOnDisk: (diskUUID: string) => readonly DeepReadonly<BackingImage>[],
): Record<string, DiskScheduled> {
  const out: Record<string, DiskScheduled> = {};
  for (const [diskName, st] of Object.entries(node.status?.diskStatus ?? {})) {
    const uuid = st.diskUUID ?? '';
    const scheduledReplica: Record<string, number> = {};
    if (uuid) for (const r of replicas) if (r.spec?.diskID === uuid) scheduledReplica[r.metadata.name ?? ''] = promisedBytes(r);
    const scheduledBackingImage: Record<string, number> = {};
    if (uuid) for (const bi of imagesOnDisk(uuid)) scheduledBackingImage[bi.metadata.name ?? ''] = bi.status?.realSize || bi.status?.size || 0;
    const storageScheduled = Object.values(scheduledReplica).reduce((a, b) => a + b, 0);
    out[diskName] = { storageScheduled, scheduledReplica, scheduledBackingImage };
  }
  return out;
}

/** Whether the node's status already says `want` for every disk. */
export function scheduledMatches(node: DeepReadonly<Node>, want: Record<string, DiskScheduled>): boolean {
  const same = (a: Readonly<Record<string, number>> | null | undefined, b: Record<string, number>) => {
    const ka = Object.keys(a ?? {});
    return ka.length === Object.keys(b).length && ka.every((k) => a?.[k] === b[k]);
  };
  return Object.entries(want).every(([disk, w]) => {
    const st = node.status?.diskStatus?.[disk];
    return (st?.storageScheduled ?? 0) === w.storageScheduled && same(st?.scheduledReplica, w.scheduledReplica) && same(st?.scheduledBackingImage, w.scheduledBackingImage);
  });
}
