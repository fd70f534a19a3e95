// Longhorn's `POST /v1/volumes/{name}?action=expand` with `{"size": "<bytes or quantity>"}`: grows `spec.size`
// (rounded up to 2 MiB as on create). Every rule is the store's: a volume is expanded offline (refused unless
// detached), never shrunk, and stays at least its backing image's virtual size; the refusals come back as 422 naming
// `spec.size`. The volume controller then grows the engine and replicas when they next start.

import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import { roundVolumeSize, type Volume } from '../../api/volume.js';
import { StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { invalidField } from './common.js';
import { parseSize } from './quantity.js';

export async function expandVolume(store: Store, name: string, body: Record<string, unknown>): Promise<Volume> {
  const raw = body['size'];
  if (raw === undefined || raw === null || raw === '') {
    throw new StoreError('BadRequest', `expand needs {"size": "<bytes or a quantity such as 4Gi>"} for volume "${name}"`);
  }
  const parsed = parseSize(raw);
  if ('problem' in parsed) throw invalidField(name, 'size', raw, parsed.problem);
  const size = roundVolumeSize(parsed.bytes);
  const v = await store.get<Volume>('Volume', DEFAULT_NAMESPACE, name);
  // Asking again for the size it has is not an error (Longhorn's clients retry).
  if (v.spec?.size === size) return v;
  const { object } = await store.patch<Volume>('Volume', DEFAULT_NAMESPACE, name, 'merge', { spec: { size } });
  return object;
}
