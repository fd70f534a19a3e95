// Work-queue keys: `namespace/name`, or just `name` for cluster-scoped objects (client-go's
// MetaNamespaceKeyFunc), so keys read the same in logs, metrics and `kubectl get -n ns name`.

import type { DeepReadonly, KubeObject } from '../api/meta.js';

/** The key of an object: `namespace/name`, or `name` when it has no namespace. */
export function keyOf(obj: KubeObject | DeepReadonly<KubeObject>): string {
  return keyFor(obj.metadata.namespace ?? '', obj.metadata.name ?? '');
}

/** The key for a namespace and name (`''` namespace for cluster scope). */
export function keyFor(namespace: string, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** Split a key into `[namespace, name]`; namespace is `''` for a cluster-scoped key. Throws on a malformed key. */
export function splitKey(key: string): [namespace: string, name: string] {
  const parts = key.split('/');
  if (parts.length === 1 && parts[0]) return ['', parts[0]];
  if (parts.length === 2 && parts[0] && parts[1]) return [parts[0], parts[1]];
  throw new Error(`Cannot split key "${key}": expected "namespace/name" or "name"`);
}
