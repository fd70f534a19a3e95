// The garbage collector: ownerReferences with cascading deletion, as Kubernetes does it.
// - Background: an object whose owners are all gone is deleted; references to owners that are gone are dropped
//   while other owners remain.
// - Foreground: an owner holding the `foregroundDeletion` finalizer has its dependents deleted, and the finalizer
//   is removed once none remain.
// - Orphan: an owner holding the `orphan` finalizer has its reference removed from every dependent, then the
//   finalizer is removed.
// Owners are found by uid through an index on every kind's informer; an owner missing from the cache is checked
// against the store before anything is deleted (it may simply not have reached the cache yet).

import { allKinds } from '../../api/index.js';
import type { DeepReadonly, KubeObject, OwnerReference } from '../../api/meta.js';
import { Controller } from '../../controller-kit/controller.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isNotFound } from '../../store/errors.js';
import { FOREGROUND_FINALIZER, ORPHAN_FINALIZER } from '../../store/resource-store.js';
import type { Store } from '../../store/types.js';

const BY_OWNER = 'ownerUid';
const BY_UID = 'uid';

type Obj = DeepReadonly<KubeObject>;

/** Keys are `Kind/namespace/name`. */
const keyOf = (o: Obj) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;

export interface GarbageCollectorOptions {
  store: Store;
  informers: InformerFactory;
  workers?: number;
}

export function garbageCollector(opts: GarbageCollectorOptions): Controller {
  const { store, informers } = opts;
  const kinds = allKinds().map((k) => k.kind);

  const dependentsOf = (uid: string): Obj[] =>
    kinds.flatMap((k) => informers.informerFor(k).byIndex(BY_OWNER, uid) as readonly Obj[]);
  const cachedByUid = (ref: OwnerReference): Obj | undefined =>
    kinds.includes(ref.kind) ? (informers.informerFor(ref.kind).byIndex(BY_UID, ref.uid)[0] as Obj | undefined) : undefined;

  /** True when the owner certainly does not exist (checked against the store, not only the cache). */
  const ownerGone = async (ns: string, ref: OwnerReference): Promise<boolean> => {
    if (!kinds.includes(ref.kind)) return false; // unknown kinds are never presumed gone
    if (cachedByUid(ref)) return false;
    try {
      const live = await store.get(ref.kind, ns, ref.name);
      return live.metadata.uid !== ref.uid;
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
  };

  const controller = new Controller({
    name: 'garbage-collector',
    workers: opts.workers ?? 2,
    reconcile: async (key) => {
      const [kind, ns = '', ...rest] = key.split('/');
      const name = rest.join('/');
      if (!kind) return;
      const obj = informers.informerFor(kind).get(ns, name) as Obj | undefined;
      if (!obj) return;
      const uid = obj.metadata.uid ?? '';
      const finalizers = obj.metadata.finalizers ?? [];

      if (obj.metadata.deletionTimestamp && finalizers.includes(ORPHAN_FINALIZER)) {
        for (const dep of dependentsOf(uid)) {
          const refs = (dep.metadata.ownerReferences ?? []).filter((r) => r.uid !== uid);
          await patchIgnoringGone(store, dep, { metadata: { ownerReferences: refs.length ? refs : null } });
        }
        await removeFinalizer(store, obj, ORPHAN_FINALIZER);
        return;
      }
      if (obj.metadata.deletionTimestamp && finalizers.includes(FOREGROUND_FINALIZER)) {
        const deps = dependentsOf(uid);
        for (const dep of deps) {
          if (dep.metadata.deletionTimestamp) continue;
          await store.delete(dep.kind, dep.metadata.namespace ?? '', dep.metadata.name ?? '', { propagationPolicy: 'Foreground' }).catch(ignoreNotFound);
        }
        if (deps.length === 0) await removeFinalizer(store, obj, FOREGROUND_FINALIZER);
        return deps.length > 0 ? { requeueAfter: 2000 } : undefined;
      }

      const refs = obj.metadata.ownerReferences ?? [];
      if (refs.length === 0 || obj.metadata.deletionTimestamp) return;
      const gone: string[] = [];
      for (const ref of refs) if (await ownerGone(ns, ref as OwnerReference)) gone.push(ref.uid);
      if (gone.length === refs.length) {
        await store.delete(kind, ns, name, { propagationPolicy: 'Background', preconditions: { uid } }).catch(ignoreNotFound);
      } else if (gone.length > 0) {
        await patchIgnoringGone(store, obj, { metadata: { ownerReferences: refs.filter((r) => !gone.includes(r.uid)) } });
      }
      return;
    },
  });

  for (const kind of kinds) {
    const inf = informers.informerFor(kind);
    inf.addIndex(BY_OWNER, (o) => (o.metadata.ownerReferences ?? []).map((r) => r.uid));
    inf.addIndex(BY_UID, (o) => (o.metadata.uid ? [o.metadata.uid] : []));
    const interesting = (o: Obj) =>
      (o.metadata.ownerReferences?.length ?? 0) > 0 ||
      (o.metadata.deletionTimestamp !== undefined &&
        (o.metadata.finalizers ?? []).some((f) => f === FOREGROUND_FINALIZER || f === ORPHAN_FINALIZER));
    inf.addEventHandler({
      onAdd: (o) => interesting(o as Obj) && controller.enqueue(keyOf(o as Obj)),
      onUpdate: (_old, o) => interesting(o as Obj) && controller.enqueue(keyOf(o as Obj)),
      onDelete: (o) => {
        const obj = o as Obj;
        // Dependents may now be orphans; an owner waiting in foreground deletion may now be free.
        for (const dep of dependentsOf(obj.metadata.uid ?? '')) controller.enqueue(keyOf(dep));
        for (const ref of obj.metadata.ownerReferences ?? []) {
          const owner = cachedByUid(ref as OwnerReference);
          if (owner) controller.enqueue(keyOf(owner));
        }
      },
    });
  }
  return controller;
}

async function removeFinalizer(store: Store, obj: Obj, finalizer: string): Promise<void> {
  const rest = (obj.metadata.finalizers ?? []).filter((f) => f !== finalizer);
  // Carry the resourceVersion so a concurrent finalizer change is a Conflict (retried), not a lost update.
  await patchIgnoringGone(store, obj, { metadata: { finalizers: rest.length ? rest : null, resourceVersion: obj.metadata.resourceVersion } });
}

async function patchIgnoringGone(store: Store, obj: Obj, patch: unknown): Promise<void> {
  await store.patch(obj.kind, obj.metadata.namespace ?? '', obj.metadata.name ?? '', 'merge', patch).catch(ignoreNotFound);
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}
