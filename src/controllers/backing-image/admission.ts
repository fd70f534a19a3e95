// Admission checks for BackingImages that need other objects: the download URL policy (which depends on a
// Setting) on create, and the deletion guard — an image that any Volume or Replica references cannot be deleted,
// and the refusal names them (Longhorn only counted replicas, so a volume whose replicas did not exist yet did not
// block deletion).

import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import { downloadUrlProblem, ALLOW_PRIVATE_SETTING } from '../../util/download-url.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { AdmissionPlugin } from '../../store/resource-store.js';
import type { Store } from '../../store/types.js';
import { recordRefusal } from '../../controller-kit/refusal.js';

export async function settingValue(store: Store, name: string): Promise<string | undefined> {
  try {
    const s = await store.get(`Setting`, DEFAULT_NAMESPACE, name);
    return typeof s['value'] === 'string' ? s['value'] : undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Names of the Volumes and Replicas that use backing image `name` in `namespace`. */
export async function backingImageUsers(store: Store, namespace: string, name: string): Promise<{ volumes: string[]; replicas: string[] }> {
  const uses = (o: { spec?: unknown }) => (o.spec as { backingImage?: string } | undefined)?.backingImage === name;
  const volumes = (await store.list('Volume', { namespace })).items.filter(uses).map((v) => v.metadata.name ?? '');
  const replicas = (await store.list('Replica', { namespace })).items.filter(uses).map((r) => r.metadata.name ?? '');
  return { volumes: volumes.sort(), replicas: replicas.sort() };
}

export const backingImageAdmission: AdmissionPlugin = {
  kinds: ['BackingImage'],
  async validateCreate(obj, store) {
    const spec = (obj.spec ?? {}) as { sourceType?: string; sourceParameters?: Record<string, string> };
    if (spec.sourceType !== 'download') return;
    const allow = (await settingValue(store, ALLOW_PRIVATE_SETTING)) === 'true';
    const problem = downloadUrlProblem(spec.sourceParameters?.['url'], allow);
    if (problem) {
      throw new StoreError('Invalid', `BackingImage "${obj.metadata.name}" is invalid: ${problem}`, {
        causes: [{ field: 'spec.sourceParameters.url', reason: 'FieldValueInvalid', message: problem }],
        details: { kind: 'backingimages.longhorn.io', name: obj.metadata.name ?? '' },
      });
    }
  },
  async validateDelete(obj, store) {
    const name = obj.metadata.name ?? '';
    const { volumes, replicas } = await backingImageUsers(store, obj.metadata.namespace ?? DEFAULT_NAMESPACE, name);
    if (volumes.length === 0 && replicas.length === 0) return;
    const parts = [
      ...(volumes.length ? [`volume${volumes.length > 1 ? 's' : ''} ${volumes.join(', ')}`] : []),
      ...(replicas.length ? [`replica${replicas.length > 1 ? 's' : ''} ${replicas.join(', ')}`] : []),
    ];
    const message = `Cannot delete backing image "${name}": ${parts.join(' and ')} use${volumes.length + replicas.length > 1 ? '' : 's'} it`;
    recordRefusal(store, obj, 'DeletionRefused', message);
    throw new StoreError('Conflict', message, {
      details: { kind: 'backingimages.longhorn.io', name },
    });
  },
};
