// The StatefulSet controller: pods `<set>-<ordinal>` with claims `<template>-<set>-<ordinal>`, as Kubernetes'.
// Per set:
//   ensureClaims (every ordinal below replicas has its claims; claims are never deleted here, so a scale-down
//   keeps them and a scale-up finds them again) → replaceFinished (a Failed or Succeeded pod is deleted, then
//   recreated with the same name and claims) → scale (Parallel: every missing pod at once and every surplus pod
//   at once; OrderedReady: the lowest missing ordinal only once all below it are Ready, the highest surplus
//   first) → rollingUpdate (one pod of an old revision at a time, highest ordinal first, when all are Ready)
//   → updateStatus (what `kubectl rollout status` reads).
// Pods are found through an index by owner uid; a pod or claim event enqueues only its owning set.

import type { DeepReadonly } from '../../api/meta.js';
import type { PersistentVolumeClaim } from '../../api/persistent-volume-claim.js';
import type { Pod } from '../../api/pod.js';
import { STS_REVISION_LABEL, type StatefulSet } from '../../api/stateful-set.js';
import { Controller } from '../../controller-kit/controller.js';
import type { EventRecorder } from '../../controller-kit/events.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists, isNotFound } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { mutateStatus } from '../common/status.js';
import { buildClaim, buildPod, claimName, ordinalOf, podName, podReady, revisionOf } from './pods.js';

export { claimName, ordinalOf, podName, revisionOf } from './pods.js';

type RO<T> = DeepReadonly<T>;
const BY_OWNER = 'statefulSetOwner';

export interface StatefulSetControllerOptions {
  store: Store;
  informers: InformerFactory;
  events: EventRecorder;
  workers?: number;
}

export function statefulSetController(opts: StatefulSetControllerOptions): Controller {
  const { store, informers, events } = opts;
  const sets = informers.informerFor<StatefulSet>('StatefulSet');
  const pods = informers.informerFor<Pod>('Pod');
  const claims = informers.informerFor<PersistentVolumeClaim>('PersistentVolumeClaim');

  const ignoreExists = (err: unknown) => {
    if (!isAlreadyExists(err)) throw err;
  };
  const ignoreGone = (err: unknown) => {
    if (!isNotFound(err)) throw err;
  };

  async function ensureClaims(sts: RO<StatefulSet>, replicas: number): Promise<void> {
    const set = sts.metadata.name ?? '';
    const ns = sts.metadata.namespace ?? '';
    const templates = sts.spec?.volumeClaimTemplates ?? [];
    for (let ordinal = 0; ordinal < replicas; ordinal++) {
      for (let i = 0; i < templates.length; i++) {
        const name = claimName(templates[i]?.metadata.name ?? '', set, ordinal);
        if (claims.get(ns, name)) continue;
        await store.create(buildClaim(sts, i, ordinal)).catch(ignoreExists);
      }
    }
  }

  async function deletePod(p: RO<Pod>, why: string, sts: RO<StatefulSet>): Promise<void> {
    if (p.metadata.deletionTimestamp) return;
    await store.delete('Pod', p.metadata.namespace ?? '', p.metadata.name ?? '', { preconditions: { uid: p.metadata.uid } }).catch(ignoreGone);
    events.event(sts, 'Normal', 'SuccessfulDelete', `delete Pod ${p.metadata.name ?? ''} in StatefulSet ${sts.metadata.name ?? ''} ${why}`);
  }

  async function createPod(sts: RO<StatefulSet>, ordinal: number, revision: string): Promise<void> {
    await store.create(buildPod(sts, ordinal, revision)).catch(ignoreExists);
    events.event(sts, 'Normal', 'SuccessfulCreate', `create Pod ${podName(sts.metadata.name ?? '', ordinal)} in StatefulSet ${sts.metadata.name ?? ''} successful`);
  }

  const controller = new Controller({
    name: 'stateful-set',
    workers: opts.workers ?? 2,
    reconcile: async (key) => {
      const [ns = '', name = ''] = key.split('/');
      const sts = sets.get(ns, name);
      if (!sts || sts.metadata.deletionTimestamp) return; // its pods go with it (ownerReferences); claims stay
      const replicas = sts.spec?.replicas ?? 1;
      const revision = revisionOf(sts);
      const owned = pods.byIndex(BY_OWNER, sts.metadata.uid ?? '');
      const byOrdinal = new Map<number, RO<Pod>>();
      for (const p of owned) {
        const o = ordinalOf(name, p.metadata.name ?? '');
        if (o !== undefined) byOrdinal.set(o, p);
      }

      await ensureClaims(sts, replicas);

      // replaceFinished
      for (const p of byOrdinal.values()) {
        if (p.status?.phase === 'Failed' || p.status?.phase === 'Succeeded') await deletePod(p, `because it is ${p.status.phase}`, sts);
      }

      // scale
      const ordered = sts.spec?.podManagementPolicy !== 'Parallel';
      const live = (o: number) => byOrdinal.get(o);
      let progressing = false;
      for (let o = 0; o < replicas; o++) {
        const p = live(o);
        if (p) {
          if (ordered && (!podReady(p) || p.metadata.deletionTimestamp)) {
            progressing = true;
            break;
          }
          continue;
        }
        await createPod(sts, o, revision);
        if (ordered) {
          progressing = true;
          break;
        }
      }
      const surplus = [...byOrdinal.keys()].filter((o) => o >= replicas).sort((a, b) => b - a);
      for (const o of ordered ? surplus.slice(0, 1) : surplus) {
        const p = live(o);
        if (!p) continue;
        if (ordered && p.metadata.deletionTimestamp) break;
        await deletePod(p, 'for scale-down', sts);
      }

      // rollingUpdate
      const inRange = [...byOrdinal.entries()].filter(([o]) => o < replicas);
      const allReady = inRange.length === replicas && inRange.every(([, p]) => podReady(p) && !p.metadata.deletionTimestamp);
      if (!progressing && allReady && sts.spec?.updateStrategy?.type !== 'OnDelete') {
        const partition = sts.spec?.updateStrategy?.rollingUpdate?.partition ?? 0;
        const stale = inRange
          .filter(([o, p]) => o >= partition && p.metadata.labels?.[STS_REVISION_LABEL] !== revision)
          .sort(([a], [b]) => b - a)[0];
        if (stale) await deletePod(stale[1], 'for a rolling update', sts);
      }

      // updateStatus
      const current = inRange.filter(([, p]) => !p.metadata.deletionTimestamp);
      const ready = current.filter(([, p]) => podReady(p)).length;
      const updated = current.filter(([, p]) => p.metadata.labels?.[STS_REVISION_LABEL] === revision).length;
      await mutateStatus<StatefulSet>(store, 'StatefulSet', ns, name, (st, obj) => {
        st.observedGeneration = obj.metadata.generation ?? 1;
        st.replicas = current.length;
        st.readyReplicas = ready;
        st.availableReplicas = ready;
        st.updatedReplicas = updated;
        st.currentReplicas = updated;
        st.updateRevision = revision;
        // Once every pod runs the new template, it is the current revision (Kubernetes' rule).
        if (updated === current.length || !st.currentRevision) st.currentRevision = revision;
      });
      return undefined;
    },
  });

  pods.addIndex(BY_OWNER, (p) =>
    (p.metadata.ownerReferences ?? []).filter((r) => r.kind === 'StatefulSet' && r.controller === true).map((r) => r.uid),
  );
  const enqueueOwner = (p: RO<Pod>) => {
    const ref = (p.metadata.ownerReferences ?? []).find((r) => r.kind === 'StatefulSet' && r.controller === true);
    if (ref) controller.enqueue(`${p.metadata.namespace ?? ''}/${ref.name}`);
  };
  sets.addEventHandler({
    onAdd: (s) => controller.enqueueObject(s),
    onUpdate: (_o, s) => controller.enqueueObject(s),
  });
  pods.addEventHandler({
    onAdd: enqueueOwner,
    onUpdate: (_o, p) => enqueueOwner(p),
    onDelete: enqueueOwner,
  });
  // A claim deleted by hand is re-created for a running ordinal, as Kubernetes does.
  claims.addEventHandler({
    onDelete: (c) => {
      for (const s of sets.list()) {
        if (s.metadata.namespace !== c.metadata.namespace) continue;
        if ((s.spec?.volumeClaimTemplates ?? []).some((t) => (c.metadata.name ?? '').startsWith(`${t.metadata.name}-${s.metadata.name ?? ''}-`))) controller.enqueueObject(s);
      }
    },
  });
  return controller;
}
