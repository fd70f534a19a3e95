// Longhorn's `POST /v1/volumes/{name}?action=engineUpgrade` with `{"image": "<engine image>"}`: asks the volume to
// run another engine image (spec.image). The image's EngineImage must exist and be deployed (Longhorn's rule); the
// engine-upgrade controller then moves the volume (offline when detached; docs/upgrade.md).

import { engineImageName, type EngineImage } from '../../api/engine-image.js';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import type { Volume } from '../../api/volume.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';

export async function engineUpgrade(store: Store, name: string, body: Record<string, unknown>): Promise<Volume> {
  const image = body['image'];
  if (typeof image !== 'string' || image === '') throw new StoreError('BadRequest', `engineUpgrade needs {"image": "<engine image>"} for volume "${name}"`);
  const v = await store.get<Volume>('Volume', DEFAULT_NAMESPACE, name);
  let ei: EngineImage;
  try {
    ei = await store.get<EngineImage>('EngineImage', DEFAULT_NAMESPACE, engineImageName(image));
  } catch (err) {
    if (!isNotFound(err)) throw err;
    throw new StoreError('Invalid', `cannot upgrade volume "${name}" to engine image ${image}: no EngineImage ${engineImageName(image)} for it (deploy it first, or upgrade the cluster to a release with it)`);
  }
  if (ei.status?.state !== 'deployed') {
    throw new StoreError('Conflict', `cannot upgrade volume "${name}" to engine image ${image}: its EngineImage ${ei.metadata.name} is ${ei.status?.state || 'not deployed yet'}${ei.status?.conditions?.[0]?.message ? ` (${ei.status.conditions[0].message})` : ''}`);
  }
  if (v.spec?.image === image) return v;
  const { object } = await store.patch<Volume>('Volume', DEFAULT_NAMESPACE, name, 'merge', { spec: { image }, metadata: { resourceVersion: v.metadata.resourceVersion } });
  return object;
}
