// The Engine and Replica objects a volume owns, built from the volume: names, labels, owner references and the
// spec fields the engine and replica controllers act on.

import { randomBytes } from 'node:crypto';
import type { Engine } from '../../api/engine.js';
import { LONGHORN_API_VERSION, type DeepReadonly } from '../../api/meta.js';
import { ReplicaLabel, type Replica } from '../../api/replica.js';
import type { Volume } from '../../api/volume.js';
import { engineNameFor, LABEL_VOLUME, replicaNameFor } from '../../api/labels.js';
import { ownerRef } from '../../api/pods.js';
import type { DiskCandidate } from '../scheduling.js';

type RO<T> = DeepReadonly<T>;

export function buildEngine(v: RO<Volume>): Engine {
  const name = v.metadata.name ?? '';
  return {
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Engine',
    metadata: {
      name: engineNameFor(name),
      namespace: v.metadata.namespace ?? '',
      labels: { [LABEL_VOLUME]: name },
      ownerReferences: [ownerRef('Volume', name, v.metadata.uid ?? '')],
    },
    spec: {
      volumeName: name,
      volumeSize: v.spec?.size ?? '0',
      nodeID: '',
      desireState: 'stopped',
      dataEngine: 'v1',
      frontend: v.spec?.frontend ?? 'blockdev',
      disableFrontend: v.spec?.disableFrontend ?? false,
      replicaAddressMap: {},
      active: true,
      // The engine image the volume should run (docs/upgrade.md); this controller keeps it equal to the volume's.
      ...(v.spec?.image ? { image: v.spec.image } : {}),
    },
  } as Engine;
}

/** `size`: the running engine's while one runs (a rebuild joins it at its size), else the volume's (expansion.ts). */
export function buildReplica(v: RO<Volume>, disk: DiskCandidate, desireState: 'running' | 'stopped', size: string): Replica {
  const volume = v.metadata.name ?? '';
  const suffix = randomBytes(4).toString('hex');
  const name = replicaNameFor(volume, suffix);
  const backingImage = v.spec?.backingImage ?? '';
  return {
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Replica',
    metadata: {
      name,
      namespace: v.metadata.namespace ?? '',
      labels: {
        [LABEL_VOLUME]: volume,
        [ReplicaLabel.node]: disk.nodeName,
        [ReplicaLabel.diskUUID]: disk.diskUUID,
        ...(backingImage ? { [ReplicaLabel.backingImage]: backingImage } : {}),
      },
      ownerReferences: [ownerRef('Volume', volume, v.metadata.uid ?? '')],
    },
    spec: {
      volumeName: volume,
      volumeSize: size,
      nodeID: disk.nodeName,
      diskID: disk.diskUUID,
      diskPath: disk.diskPath,
      dataDirectoryName: `${volume}-${suffix}`,
      ...(backingImage ? { backingImage } : {}),
      engineName: engineNameFor(volume),
      desireState,
      dataEngine: 'v1',
      active: true,
      hardNodeAffinity: '',
      rebuildRetryCount: 0,
    },
  } as Replica;
}
