// Disk UUID → where it is (node, disk name, path), from the live Node list: copies and replicas name disks by
// UUID, people know them by node and path.

import { useMemo } from 'react';
import { useResources, type Node } from '../api/index.js';

export interface DiskRef {
  uuid: string;
  node: string;
  name: string;
  path: string;
}

export function useDisks(): Map<string, DiskRef> {
  const nodes = useResources<Node>('nodes');
  return useMemo(() => {
    const out = new Map<string, DiskRef>();
    for (const n of nodes ?? []) {
      for (const [name, d] of Object.entries(n.status?.diskStatus ?? {})) {
        if (d.diskUUID) out.set(d.diskUUID, { uuid: d.diskUUID, node: n.metadata.name ?? '', name, path: n.spec?.disks?.[name]?.path ?? d.diskPath ?? '' });
      }
    }
    return out;
  }, [nodes]);
}

export function diskLabel(disks: Map<string, DiskRef>, uuid: string): string {
  const d = disks.get(uuid);
  return d ? `${d.node}:${d.name}` : uuid.slice(0, 8);
}
