// Growing a replica: the data-plane half of an offline volume expansion. The volume gets more blocks at its end;
// they are UNWRITTEN, so they read through the snapshot layers and the backing image, which end before them, as
// zeros. A replica never shrinks.
//
// Done by `LayeredReplica.open` when asked for a larger size, under the directory lock and before any layer is
// opened, in three steps:
//   1. the head layer's data file is extended (sparse) to the new size and fdatasynced;
//   2. `replica.json` gets the new size (atomic replace, directory fsync): the commit point;
//   3. a head layer other than layer 0 keeps its own `replica.json`: it gets the new size too.
// The maps are not rewritten: a checkpoint, journal or pending file written for fewer blocks covers the old ones and
// the rest are UNWRITTEN (map-format.ts); the head's open then writes a checkpoint of the new size, and frozen
// layers' maps are read as padded. A crash after step 1 leaves a head file longer than its `replica.json` says: the
// store's open cuts it back, since nothing past the old end was ever addressable (store.ts). A crash after step 2
// leaves the head layer's `replica.json` behind the directory's: `finishGrowth`, run at every open, completes it.

import type { Chain } from './chain.js';
import { layerStorage } from './chain.js';
import { ReplicaError } from './errors.js';
import { checkGeometry, decodeMeta, encodeMeta, HEAD_FILE, META_FILE, type ReplicaMeta } from './meta.js';
import type { StorageDir } from './storage.js';

/** Grows the replica to `size` bytes (steps 1–3 above); returns its new metadata. `meta` is the directory's. */
export async function growReplica(storage: StorageDir, chain: Chain, meta: ReplicaMeta, size: number): Promise<ReplicaMeta> {
  if (size < meta.size) {
    throw new ReplicaError('InvalidArgument', `Cannot open replica "${meta.name}" as ${size} bytes: it holds ${meta.size} bytes, and a replica never shrinks`);
  }
  if (size === meta.size) return meta;
  checkGeometry(size, meta.blockSize);
  const head = await layerStorage(storage, chain.head).open(HEAD_FILE, { create: false });
  try {
    await head.truncate(size);
    await head.datasync();
  } finally {
    await head.close();
  }
  const grown = { ...meta, size };
  await storage.writeFileAtomic(META_FILE, encodeMeta(grown));
  await finishGrowth(storage, chain, grown);
  return grown;
}

/** Step 3: a head layer's own metadata (layer N > 0) brought up to the directory's size after a growth. */
export async function finishGrowth(storage: StorageDir, chain: Chain, meta: ReplicaMeta): Promise<void> {
  if (chain.head === 0) return; // layer 0's metadata is the directory's
  const s = layerStorage(storage, chain.head);
  const bytes = await s.readFile(META_FILE);
  if (bytes === undefined) return; // the head store's open reports it
  const headMeta = decodeMeta(bytes);
  if (headMeta.size === meta.size) return;
  if (headMeta.size > meta.size) {
    throw new ReplicaError('Corrupt', `replica ${storage.location}: its head layer is ${headMeta.size} bytes, the replica ${meta.size}`, { file: META_FILE, offset: 0 });
  }
  await s.writeFileAtomic(META_FILE, encodeMeta({ ...headMeta, size: meta.size }));
}
