// The rules for removing disks from a backing image's copies by hand (the `backingImageCleanup` action): every
// disk must hold a copy of the image, no replica may use the image on it, the data source's disk cannot go before
// its file was handed over, and the copies left must still satisfy minNumberOfCopies (Longhorn's floor: a ready
// copy may go only while more than `min` are ready, an in-progress one while ready+in-progress exceed it, a failed
// one while all copies together exceed it).

import type { BackingImage } from '../../api/backing-image.js';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';

type Bucket = 'ready' | 'handling' | 'failed';

function bucketOf(state: string | undefined): Bucket {
  if (state === 'ready' || state === 'ready-for-transfer') return 'ready';
  if (state === 'failed' || state === 'failed-and-cleanup') return 'failed';
  return 'handling';
}

export async function cleanupProblems(store: Store, bi: BackingImage, disks: string[]): Promise<StoreError | undefined> {
  const name = bi.metadata.name ?? '';
  const specDisks = Object.keys(bi.spec?.diskFileSpecMap ?? {});
  const unknown = disks.filter((d) => !specDisks.includes(d));
  if (unknown.length > 0) {
    return new StoreError('BadRequest', `Cannot clean up backing image "${name}": it has no copy on disk ${unknown.join(', ')} (copies are on: ${specDisks.join(', ') || 'no disk'})`);
  }
  const replicas = (await store.list('Replica', { namespace: bi.metadata.namespace ?? DEFAULT_NAMESPACE })).items;
  for (const disk of disks) {
    const users = replicas
      .filter((r) => (r.spec as { backingImage?: string; diskID?: string }).backingImage === name && (r.spec as { diskID?: string }).diskID === disk)
      .map((r) => r.metadata.name ?? '');
    if (users.length > 0) {
      return new StoreError('Conflict', `Cannot clean up backing image "${name}" on disk ${disk}: replica${users.length > 1 ? 's' : ''} ${users.join(', ')} use${users.length > 1 ? '' : 's'} it`);
    }
  }
  try {
    const bids = await store.get('BackingImageDataSource', bi.metadata.namespace ?? DEFAULT_NAMESPACE, name);
    const s = bids.spec as { fileTransferred?: boolean; diskUUID?: string };
    if (!s.fileTransferred && s.diskUUID && disks.includes(s.diskUUID)) {
      return new StoreError('Conflict', `Cannot clean up backing image "${name}" on disk ${s.diskUUID}: its first file is still being prepared there`);
    }
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const min = Math.max(1, bi.spec?.minNumberOfCopies ?? 1);
  const states = bi.status?.diskFileStatusMap ?? {};
  const count: Record<Bucket, number> = { ready: 0, handling: 0, failed: 0 };
  for (const d of specDisks) count[bucketOf(states[d]?.state)]++;
  for (const disk of disks) {
    const b = bucketOf(states[disk]?.state);
    const keep = b === 'ready' ? count.ready : b === 'handling' ? count.ready + count.handling : count.ready + count.handling + count.failed;
    if (min >= keep) {
      return new StoreError('Conflict', `Cannot clean up backing image "${name}" on disk ${disk}: that would leave fewer usable copies than minNumberOfCopies (${min}); lower it first with updateMinNumberOfCopies`);
    }
    count[b]--;
  }
  return undefined;
}
