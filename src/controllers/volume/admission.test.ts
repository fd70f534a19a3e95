// The volume admission checks through the real store and API server (in-memory SQLite, no controllers): a volume
// on a backing image must name an existing image and be at least its virtual size, on create and when grown, via
// both the Kubernetes API and Longhorn's /v1 API.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BackingImage } from '../../api/backing-image.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import { settingDefault } from '../../api/settings.js';
import type { Volume } from '../../api/volume.js';
import { registerLonghornV1 } from '../../apiserver/longhorn-v1/index.js';
import { startApiServer, type ApiServer } from '../../apiserver/server.js';
import { isInvalid } from '../../store/errors.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { backingImageAdmission } from '../backing-image/admission.js';
import { volumeAdmission } from './admission.js';
import { readyNode } from './testing.js';

const GiB = 1024 ** 3;
const VOLUMES = `/apis/longhorn.io/v1beta2/namespaces/${DEFAULT_NAMESPACE}/volumes`;
let store: ResourceStore;
let closeStore: () => Promise<void>;
let api: ApiServer;

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

function volume(name: string, size: number, backingImage?: string): Volume {
  return {
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Volume',
    metadata: { name, namespace: DEFAULT_NAMESPACE },
    spec: { size: String(size), numberOfReplicas: 1, ...(backingImage ? { backingImage } : {}) },
  };
}

async function image(name: string, virtualSize?: number): Promise<void> {
  const { object } = await store.create<BackingImage>({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'BackingImage',
    metadata: { name, namespace: DEFAULT_NAMESPACE },
    spec: { sourceType: 'download', sourceParameters: { url: 'https://example.com/image.qcow2' } },
  });
  if (virtualSize !== undefined) await setVirtualSize(object, virtualSize);
}

async function setVirtualSize(bi: BackingImage, virtualSize: number): Promise<void> {
  const fresh = structuredClone(await store.get<BackingImage>('BackingImage', DEFAULT_NAMESPACE, bi.metadata.name ?? ''));
  fresh.status = { ...(fresh.status ?? {}), virtualSize };
  await store.update(fresh, { subresource: 'status' });
}

before(async () => {
  ({ store, close: closeStore } = await openStore({ path: ':memory:', admission: [backingImageAdmission, volumeAdmission] }));
  api = await startApiServer({ store, port: 0, extend: (app) => registerLonghornV1(app, store) });
  await image('bi-1', 2 * GiB);
  await image('bi-unknown-size');
});

after(async () => {
  await api.close();
  await closeStore();
});

test('a volume smaller than its backing image is refused with 422 naming both sizes (Kubernetes API)', async () => {
  const res = await call('POST', VOLUMES, volume('v1', GiB, 'bi-1'));
  assert.equal(res.status, 422);
  assert.equal(res.json['reason'], 'Invalid');
  assert.equal(
    res.json['message'],
    'Volume "v1" is invalid: spec.size: Invalid value: "1073741824": must be at least the virtual size of backing image "bi-1" (2147483648 bytes)',
  );
  const causes = (res.json['details'] as { causes: { field: string }[] }).causes;
  assert.deepEqual(causes.map((c) => c.field), ['spec.size']);
  assert.equal((await store.list('Volume')).items.length, 0);
});

test('the same refusal through /v1/volumes has the /v1 error shape', async () => {
  const res = await call('POST', '/v1/volumes', { name: 'v1', size: '1Gi', backingImage: 'bi-1' });
  assert.equal(res.status, 422);
  assert.equal(res.json['type'], 'error');
  assert.equal(res.json['code'], 'Invalid');
  assert.match(String(res.json['message']), /must be at least the virtual size of backing image "bi-1" \(2147483648 bytes\)/);
});

test('a backing image that does not exist is refused, naming it', async () => {
  await assert.rejects(store.create(volume('v-missing', 2 * GiB, 'no-such-image')), (err: unknown) => {
    assert.ok(isInvalid(err));
    assert.match((err as Error).message, /spec\.backingImage: Invalid value: "no-such-image": backing image "no-such-image" does not exist/);
    return true;
  });
});

test('a volume at least the virtual size is created; one on an image of unknown size is not checked', async () => {
  const { object } = await store.create(volume('v-ok', 2 * GiB, 'bi-1'));
  assert.equal(object.spec?.size, String(2 * GiB));
  await store.create(volume('v-unknown', 2 * 1024 * 1024, 'bi-unknown-size'));
  await store.create(volume('v-plain', 2 * 1024 * 1024));
});

test('updates that keep the size are not checked; a detached volume grows (rounded as on create), within its image', async () => {
  await store.create(volume('v-grow', 2 * GiB, 'bi-unknown-size'));
  await setVirtualSize(await store.get('BackingImage', DEFAULT_NAMESPACE, 'bi-unknown-size'), 4 * GiB);
  // The size does not change: the volume was admitted before the size was known, and must stay writable.
  await store.patch('Volume', DEFAULT_NAMESPACE, 'v-grow', 'merge', { spec: { numberOfReplicas: 2 } });
  await assert.rejects(store.patch('Volume', DEFAULT_NAMESPACE, 'v-grow', 'merge', { spec: { size: String(3 * GiB) } }), (err: unknown) => {
    assert.ok(isInvalid(err));
    assert.match((err as Error).message, /"3221225472": must be at least the virtual size of backing image "bi-unknown-size" \(4294967296 bytes\)/);
    return true;
  });
  await setState('v-grow', 'detached');
  const { object } = await store.patch<Volume>('Volume', DEFAULT_NAMESPACE, 'v-grow', 'merge', { spec: { size: String(4 * GiB + 1) } });
  assert.equal(object.spec?.size, String(4 * GiB + 2 * 1024 * 1024), 'rounded up to 2 MiB as on create');
});

test('growing is refused while the volume is attached, or its engine still runs; shrinking always', async () => {
  await store.create(volume('v-busy', 2 * GiB));
  await store.patch('Volume', DEFAULT_NAMESPACE, 'v-busy', 'merge', { spec: { nodeID: 'node-1' } });
  await setState('v-busy', 'attached', 'node-1');
  await assert.rejects(store.patch('Volume', DEFAULT_NAMESPACE, 'v-busy', 'merge', { spec: { size: String(4 * GiB) } }), (err: unknown) => {
    assert.ok(isInvalid(err));
    assert.equal((err as Error).message, 'Volume "v-busy" is invalid: spec.size: Invalid value: "4294967296": a volume is expanded offline: detach it first (it is attached to node-1)');
    return true;
  });
  // Detached as far as the volume's status says, but the engine has not stopped yet.
  await store.patch('Volume', DEFAULT_NAMESPACE, 'v-busy', 'merge', { spec: { nodeID: '' } });
  await setState('v-busy', 'detached');
  const { object: e } = await store.create({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Engine',
    metadata: { name: 'v-busy-e-0', namespace: DEFAULT_NAMESPACE },
    spec: { volumeName: 'v-busy', volumeSize: String(2 * GiB), nodeID: 'node-1', desireState: 'stopped' },
  });
  await store.update({ ...e, status: { currentState: 'stopping', currentTargetNodeID: 'node-1' } }, { subresource: 'status' });
  await assert.rejects(store.patch('Volume', DEFAULT_NAMESPACE, 'v-busy', 'merge', { spec: { size: String(4 * GiB) } }), /a volume is expanded offline: detach it first \(its engine is stopping on node-1\)/);
  await assert.rejects(store.patch('Volume', DEFAULT_NAMESPACE, 'v-busy', 'merge', { spec: { size: String(GiB) } }), /shrinking a volume is not supported \(current size 2147483648\)/);
});

test('growing is refused when a disk holding a replica could not be promised the larger size, naming the disk', async () => {
  await readyNode(store, DEFAULT_NAMESPACE, 'node-9', 5 * GiB);
  await store.create(volume('v-room', 2 * GiB));
  for (const [name, vol, size] of [['v-room-r-1', 'v-room', 2 * GiB], ['other-r-1', 'other', GiB]] as const) {
    await store.create({ apiVersion: LONGHORN_API_VERSION, kind: 'Replica', metadata: { name, namespace: DEFAULT_NAMESPACE }, spec: { volumeName: vol, volumeSize: String(size), nodeID: 'node-9', diskID: 'uuid-node-9' } });
  }
  // 3 GiB promised to a 5 GiB disk, which may be promised storage-over-provisioning-percentage of its size.
  const over = Number(settingDefault('storage-over-provisioning-percentage'));
  const room = Math.floor((5 * GiB * over) / 100) - 3 * GiB;
  await assert.rejects(store.patch('Volume', DEFAULT_NAMESPACE, 'v-room', 'merge', { spec: { size: String(2 * GiB + room + 2 * 1024 * 1024) } }), (err: unknown) => {
    assert.ok(isInvalid(err));
    assert.match((err as Error).message, /spec\.size: .*the disks of its replicas have no room for \d+ more bytes: node-9\/disk-1 can take .* more of volume sizes \(storage-over-provisioning-percentage \d+% of 5\.0 GiB, 3\.0 GiB promised to replicas\)/);
    return true;
  });
  await store.patch('Volume', DEFAULT_NAMESPACE, 'v-room', 'merge', { spec: { size: String(2 * GiB + room) } });
  assert.equal((await store.get<Volume>('Volume', DEFAULT_NAMESPACE, 'v-room')).spec?.size, String(2 * GiB + room));
});

async function setState(name: string, state: 'attached' | 'detached', node = ''): Promise<void> {
  const v = structuredClone(await store.get<Volume>('Volume', DEFAULT_NAMESPACE, name));
  v.status = { ...(v.status ?? {}), state, currentNodeID: node };
  await store.update(v, { subresource: 'status' });
}
