// Read-modify-write of an object's status against the store (not the cache), retried on conflicts, written only
// when something changed. Used where several actors write parts of one status (reconciles and monitors).

import type { KubeObject } from '../../api/meta.js';
import { isConflict, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';

export async function mutateStatus<T extends KubeObject>(
  store: Store,
  kind: string,
  namespace: string,
  name: string,
  mutate: (status: NonNullable<T['status']>, obj: T) => void,
): Promise<T | undefined> {
  for (let attempt = 0; ; attempt++) {
    let obj: T;
    try {
      obj = await store.get<T>(kind, namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const before = JSON.stringify(obj.status ?? {});
    const status = structuredClone(obj.status ?? {}) as NonNullable<T['status']>;
    mutate(status, obj);
    if (JSON.stringify(status) === before) return obj;
    try {
      return (await store.update<T>({ ...obj, status }, { subresource: 'status' })).object;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      if (!isConflict(err) || attempt >= 10) throw err;
    }
  }
}
