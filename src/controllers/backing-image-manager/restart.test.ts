// The backing-image-manager controller after the manager process restarts, over the in-memory store and a fake
// manager pod (an HTTP server answering version, files and the change stream). The copies a restarted manager finds
// in a status are hearsay until the pod reports them: the controller marks them unknown, then the pod's first report
// makes the manager running again. That report must stick even when the store delivers the status change to the
// controller's watch before it answers the write (as etcd can): the reconcile it triggers must not take it for
// hearsay again, or the manager stays unknown until the pod happens to report a change.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BackingImageManager } from '../../api/backing-image-manager.js';
import { bimPodName, LONGHORN_FINALIZER } from '../../api/labels.js';
import type { KubeObject } from '../../api/meta.js';
import { MemoryStore } from '../../controller-kit/testing.js';
import type { WriteOptions, WriteResult } from '../../store/types.js';
import { fakeBimPod, readyNode, runBimController, runningPod, type FakeBimPod } from './testing.js';

const NS = 'longhorn-system';

/** A store that answers a write only after its watchers could see it. */
class SlowAnswers extends MemoryStore {
  override async update<T extends KubeObject>(obj: T, opts?: WriteOptions): Promise<WriteResult<T>> {
    const r = await super.update(obj, opts);
    await new Promise((resolve) => setTimeout(resolve, 50));
    return r;
  }
}

const store = new SlowAnswers();
let pod: FakeBimPod;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  pod = await fakeBimPod([]); // no files; a change stream that only sends heartbeats
  await readyNode(store, NS, 'n1');
  await runningPod(store, NS, bimPodName('bim-1'), 'n1', pod.url);
  // As the manager's predecessor left it: running, with a copy the pod no longer holds.
  const { object: m } = await store.create<BackingImageManager>({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImageManager',
    metadata: { name: 'bim-1', namespace: NS, finalizers: [LONGHORN_FINALIZER] },
    spec: { image: 'stratum-bim:v1', nodeID: 'n1', diskUUID: 'disk-1', diskPath: '/d1', backingImages: {} },
  } as BackingImageManager);
  const old = { gone: { name: 'gone', uuid: 'u1', state: 'ready', message: '' } };
  await store.update({ ...m, status: { currentState: 'running', apiVersion: 1, apiMinVersion: 1, backingImageFileMap: old } } as BackingImageManager, { subresource: 'status' });

  stop = await runBimController(store, NS);
});

after(async () => {
  await stop?.();
  await pod.close();
});

test("a restarted manager's copies are unknown until the pod reports, then running, and it stays so", async () => {
  const seen = new Set<string>();
  const deadline = Date.now() + 5000;
  let m = await store.get<BackingImageManager>('BackingImageManager', NS, 'bim-1');
  while (!(seen.has('unknown') && m.status?.currentState === 'running')) {
    if (Date.now() > deadline) assert.fail(`the manager never became running again after unknown: ${JSON.stringify(m.status)}`);
    seen.add(m.status?.currentState ?? '');
    await new Promise((r) => setTimeout(r, 10));
    m = await store.get<BackingImageManager>('BackingImageManager', NS, 'bim-1');
  }
  assert.deepEqual(m.status?.backingImageFileMap, {}, "the pod's report replaced the predecessor's map");
  // Long enough for every reconcile the report triggered to have run.
  await new Promise((r) => setTimeout(r, 1000));
  m = await store.get<BackingImageManager>('BackingImageManager', NS, 'bim-1');
  assert.equal(m.status?.currentState, 'running', `after the pod reported: ${JSON.stringify(m.status)}`);
});
