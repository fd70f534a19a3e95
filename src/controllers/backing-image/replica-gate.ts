// The replica gate: a replica of a volume on a backing image may start only when the copy on its own disk is
// `ready`. This controller keeps the condition `WaitForBackingImage` on every such Replica (True while it waits,
// naming the disk and the copy's state and message; False once the copy is ready) and aggregates it on the Volume,
// and `backingImageFileFor` gives the volume issue's replica controller the path of the file to open.
// Enqueued by replicas (own kind) and by backing images through the index of replicas by image.

import { join } from 'node:path';
import type { BackingImage } from '../../api/backing-image.js';
import type { Condition, DeepReadonly, KubeObject } from '../../api/meta.js';
import { Controller } from '../../controller-kit/controller.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import type { Store } from '../../store/types.js';
import { mutateStatus } from '../common/status.js';
import { setCondition } from '../../api/node-contract.js';
import { REPLICA_BY_IMAGE } from './index.js';

type RO<T> = DeepReadonly<T>;

interface ReplicaSpecView {
  backingImage?: string;
  diskID?: string;
  diskPath?: string;
  volumeName?: string;
}

export const WAIT_FOR_BACKING_IMAGE = 'WaitForBackingImage';

export interface GateDecision {
  /** True when the replica must wait. */
  waiting: boolean;
  reason: string;
  message: string;
  /** The backing file to open once ready. */
  path?: string;
}

/** Whether a replica on `diskID` may start on backing image `bi`, and why not. Pure. */
export function gateFor(bi: RO<BackingImage> | undefined, biName: string, diskID: string | undefined, diskPath: string | undefined): GateDecision {
  if (!bi) return { waiting: true, reason: 'GetBackingImageFailed', message: `backing image ${biName} does not exist` };
  if (!diskID) return { waiting: true, reason: 'Waiting', message: 'the replica has no disk yet' };
  const inSpec = bi.spec?.diskFileSpecMap?.[diskID] !== undefined;
  const st = bi.status?.diskFileStatusMap?.[diskID];
  if (!inSpec || !st) {
    return { waiting: true, reason: 'Waiting', message: `waiting for backing image ${biName} to be copied to disk ${diskID}: not started yet` };
  }
  if (st.state !== 'ready') {
    const progress = st.state === 'in-progress' && st.progress !== undefined ? ` (${st.progress}%)` : '';
    return {
      waiting: true,
      reason: 'Waiting',
      message: `waiting for the copy of backing image ${biName} on disk ${diskID}: it is ${st.state || 'not started'}${progress}${st.message ? `: ${st.message}` : ''}`,
    };
  }
  const path = diskPath && bi.status?.uuid ? backingImageFileFor(diskPath, biName, bi.status.uuid) : undefined;
  return { waiting: false, reason: '', message: `the copy of backing image ${biName} on disk ${diskID} is ready`, ...(path ? { path } : {}) };
}

/** The file a replica on `diskPath` opens as its read-only backing layer. */
export function backingImageFileFor(diskPath: string, biName: string, uuid: string): string {
  return join(diskPath, 'backing-images', `${biName}-${uuid}`, 'backing');
}

export function replicaGateController(opts: { store: Store; informers: InformerFactory; now?: () => Date }): Controller {
  const { store, informers } = opts;
  const now = () => (opts.now ?? (() => new Date()))().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const replicas = informers.informerFor('Replica');
  const volumes = informers.informerFor('Volume');
  const bis = informers.informerFor<BackingImage>('BackingImage');

  const reconcile = async (key: string) => {
    const [kind, ns = '', name = ''] = key.split('/');
    if (kind === 'Replica') {
      const r = replicas.get(ns, name);
      const spec = r?.spec as ReplicaSpecView | undefined;
      if (!r || !spec?.backingImage) return;
      const g = gateFor(bis.get(ns, spec.backingImage), spec.backingImage, spec.diskID, spec.diskPath);
      await mutateStatus<KubeObject<unknown, { conditions?: Condition[] | null }>>(store, 'Replica', ns, name, (st) => {
        st.conditions = setCondition(st.conditions, { type: WAIT_FOR_BACKING_IMAGE, status: g.waiting ? 'True' : 'False', reason: g.reason, message: g.message }, now());
      });
      if (spec.volumeName) controller.enqueue(`Volume/${ns}/${spec.volumeName}`);
      return;
    }
    const v = volumes.get(ns, name);
    const biName = (v?.spec as { backingImage?: string } | undefined)?.backingImage;
    if (!v || !biName) return;
    const mine = replicas.byIndex(REPLICA_BY_IMAGE, biName).filter((r) => r.metadata.namespace === ns && (r.spec as ReplicaSpecView).volumeName === name);
    const waiting = mine
      .map((r) => gateFor(bis.get(ns, biName), biName, (r.spec as ReplicaSpecView).diskID, (r.spec as ReplicaSpecView).diskPath))
      .filter((g) => g.waiting);
    const bi = bis.get(ns, biName);
    const cond = !bi
      ? { type: WAIT_FOR_BACKING_IMAGE, status: 'True' as const, reason: 'GetBackingImageFailed', message: `backing image ${biName} does not exist` }
      : waiting.length > 0
        ? { type: WAIT_FOR_BACKING_IMAGE, status: 'True' as const, reason: 'Waiting', message: waiting.map((g) => g.message).join('; ') }
        : { type: WAIT_FOR_BACKING_IMAGE, status: 'False' as const, reason: '', message: '' };
    await mutateStatus<KubeObject<unknown, { conditions?: Condition[] | null }>>(store, 'Volume', ns, name, (st) => {
      st.conditions = setCondition(st.conditions, cond, now());
    });
  };

  const controller = new Controller({ name: 'replica-gate', workers: 2, reconcile });
  const enqueue = (kind: string, o: RO<KubeObject>) => controller.enqueue(`${kind}/${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`);
  const specChanged = (a: RO<KubeObject>, b: RO<KubeObject>) => JSON.stringify(a.spec) !== JSON.stringify(b.spec);
  replicas.addEventHandler({ onAdd: (o) => enqueue('Replica', o), onUpdate: (a, b) => specChanged(a, b) && enqueue('Replica', b) });
  volumes.addEventHandler({ onAdd: (o) => enqueue('Volume', o), onUpdate: (a, b) => specChanged(a, b) && enqueue('Volume', b) });
  bis.addEventHandler({
    onUpdate: (a, b) => {
      if (JSON.stringify(a.status?.diskFileStatusMap) === JSON.stringify(b.status?.diskFileStatusMap)) return;
      for (const r of replicas.byIndex(REPLICA_BY_IMAGE, b.metadata.name ?? '')) if (r.metadata.namespace === b.metadata.namespace) enqueue('Replica', r);
    },
    onAdd: (b) => {
      for (const r of replicas.byIndex(REPLICA_BY_IMAGE, b.metadata.name ?? '')) enqueue('Replica', r);
    },
  });
  return controller;
}
