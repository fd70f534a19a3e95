// The manager's admission check for Pods (see pod-confinement.ts): a Pod that asks for more than its catalog
// image allows, or names a path that is not a disk of its node, is refused with a 422 naming the field. Runs on
// every create and on updates that change the containers (the agent's status and finalizer writes do not).

import { isDeepStrictEqual } from 'node:util';
import type { FieldError } from '../api/kind.js';
import type { KubeObject } from '../api/meta.js';
import type { Node } from '../api/node.js';
import type { Pod } from '../api/pod.js';
import { LEASE_NAMESPACE } from '../api/node-contract.js';
import { isNotFound, StoreError } from '../store/errors.js';
import type { AdmissionPlugin } from '../store/resource-store.js';
import type { Store } from '../store/types.js';
import type { ImageCatalog } from './images.js';
import { podConfinementProblems } from './pod-confinement.js';

async function nodeDisks(store: Store, node: string | undefined): Promise<string[]> {
  if (!node) return [];
  try {
    const n = await store.get<Node>('Node', LEASE_NAMESPACE, node);
    return Object.values(n.spec?.disks ?? {}).map((d) => d.path ?? '').filter((p) => p !== '');
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

async function check(obj: KubeObject, store: Store, catalog: ImageCatalog): Promise<void> {
  const pod = obj as Pod;
  const problems = podConfinementProblems(pod, catalog, { disks: await nodeDisks(store, pod.spec?.nodeName) });
  if (problems.length === 0) return;
  const causes: FieldError[] = problems.map((p) => ({ field: p.field, reason: 'FieldValueForbidden', message: `Forbidden: ${p.message}` }));
  const name = pod.metadata.name ?? '';
  throw new StoreError('Invalid', `Pod "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`, {
    causes,
    details: { kind: 'pods', name },
  });
}

export function podAdmission(catalog: ImageCatalog): AdmissionPlugin {
  return {
    kinds: ['Pod'],
    validateCreate: (obj, store) => check(obj, store, catalog),
    validateUpdate: async (obj, old, store) => {
      const spec = (o: KubeObject) => (o as Pod).spec?.containers;
      if (!isDeepStrictEqual(spec(obj), spec(old))) await check(obj, store, catalog);
    },
  };
}
