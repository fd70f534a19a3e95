// Claim resize through the provisioner over the real store in memory (with the volume and claim admissions; the
// volume controller's part — the engine's size — is written here as it would write it). A bound claim of a class
// that allows expansion grows its Volume once the volume is detached, with the condition Resizing meanwhile, and
// gets the new capacity once the engine has the new size; a class that does not allow it is refused with
// Kubernetes' message; a bound claim never shrinks.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Engine } from '../../api/engine.js';
import { engineNameFor } from '../../api/labels.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import type { PersistentVolume } from '../../api/persistent-volume.js';
import type { PersistentVolumeClaim } from '../../api/persistent-volume-claim.js';
import type { StorageClass } from '../../api/storage-class.js';
import type { Volume } from '../../api/volume.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { runControllers } from '../../controller-kit/testing.js';
import { isForbidden, isInvalid } from '../../store/errors.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { volumeAdmission } from '../volume/admission.js';
import { claimAdmission } from './admission.js';
import { provisionerController, volumeNameFor } from './index.js';
import { CLAIM_RESIZING } from './resize.js';

const NS = DEFAULT_NAMESPACE;
const GiB = 2 ** 30;
let store: ResourceStore;
let closeStore: () => Promise<void>;
let stop: () => Promise<void>;

async function storageClass(name: string, allowVolumeExpansion: boolean): Promise<void> {
  await store.create<StorageClass>({ apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name }, provisioner: 'driver.longhorn.io', allowVolumeExpansion, parameters: { numberOfReplicas: '1' } } as StorageClass);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A claim of `sc`, once bound: its volume's name. */
async function boundClaim(name: string, sc: string): Promise<string> {
  await store.create<PersistentVolumeClaim>({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace: 'default' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: sc, resources: { requests: { storage: '1Gi' } } } });
  const c = await until(`claim ${name} bound`, async () => {
    const got = await store.get<PersistentVolumeClaim>('PersistentVolumeClaim', 'default', name);
    return got.status?.phase === 'Bound' && got.status.capacity?.storage === '1Gi' ? got : undefined;
  });
  return volumeNameFor(c.metadata.uid ?? '');
}

const claim = (name: string) => store.get<PersistentVolumeClaim>('PersistentVolumeClaim', 'default', name);
const grow = (name: string, storage: string) => store.patch('PersistentVolumeClaim', 'default', name, 'merge', { spec: { resources: { requests: { storage } } } });

async function volumeState(name: string, state: 'attached' | 'detached'): Promise<void> {
  await store.patch('Volume', NS, name, 'merge', { spec: { nodeID: state === 'attached' ? 'node-1' : '' } });
  const v = await store.get<Volume>('Volume', NS, name);
  await store.update({ ...v, status: { ...v.status, state, currentNodeID: state === 'attached' ? 'node-1' : '' } }, { subresource: 'status' });
}

before(async () => {
  ({ store, close: closeStore } = await openStore({ path: ':memory:', admission: [volumeAdmission, claimAdmission] }));
  await storageClass('resizable', true);
  await storageClass('fixed', false);
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'provisioner', logger: silentLogger });
  stop = await runControllers(informers, provisionerController({ store, informers, events, namespace: NS }));
});

after(async () => {
  await stop();
  await closeStore();
});

test('a claim of a class without allowVolumeExpansion cannot grow', async () => {
  await boundClaim('c-fixed', 'fixed');
  await assert.rejects(grow('c-fixed', '2Gi'), (err: unknown) => {
    assert.ok(isForbidden(err));
    assert.equal((err as Error).message, 'persistentvolumeclaims "c-fixed" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize');
    return true;
  });
});

test('a claim grows its volume once the volume is detached, and has the new capacity once the engine has it', async () => {
  const vol = await boundClaim('c1', 'resizable');
  await volumeState(vol, 'attached');
  await grow('c1', '2Gi');
  const waiting = await until('the claim to wait for the detach', async () => getResizing(await claim('c1'))?.message || undefined);
  assert.match(waiting, new RegExp(`^waiting to grow volume ${vol} to 2Gi: .*a volume is expanded offline: detach it first \\(it is attached to node-1\\)$`));
  assert.equal((await store.get<Volume>('Volume', NS, vol)).spec?.size, String(GiB));

  await volumeState(vol, 'detached');
  await until('the volume to grow', async () => ((await store.get<Volume>('Volume', NS, vol)).spec?.size === String(2 * GiB) ? true : undefined));
  await until('the claim to wait for the engine', async () => (/waiting for its engine and replicas to take the new size/.test(getResizing(await claim('c1'))?.message ?? '') ? true : undefined));
  assert.equal((await claim('c1')).status?.capacity?.storage, '1Gi', 'not yet');

  // What the volume controller does for a detached volume: the stopped engine gets the new size.
  await store.create<Engine>({ apiVersion: LONGHORN_API_VERSION, kind: 'Engine', metadata: { name: engineNameFor(vol), namespace: NS }, spec: { volumeName: vol, volumeSize: String(GiB), desireState: 'stopped' } });
  await store.patch('Engine', NS, engineNameFor(vol), 'merge', { spec: { volumeSize: String(2 * GiB) } });
  const done = await until('the new capacity', async () => {
    const c = await claim('c1');
    return c.status?.capacity?.storage === '2Gi' ? c : undefined;
  });
  assert.equal(getResizing(done), undefined, 'the condition is gone');
  assert.equal((await store.get<PersistentVolume>('PersistentVolume', '', vol)).spec?.capacity?.storage, '2Gi');

  await assert.rejects(grow('c1', '1Gi'), (err: unknown) => {
    assert.ok(isInvalid(err));
    assert.match((err as Error).message, /spec\.resources\.requests\.storage: Forbidden: field can not be less than previous value/);
    return true;
  });
});

function getResizing(c: PersistentVolumeClaim) {
  return c.status?.conditions?.find((x) => x.type === CLAIM_RESIZING);
}
