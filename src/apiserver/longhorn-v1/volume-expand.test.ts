// Longhorn's /v1 `expand` action through the real store and API server (in-memory SQLite with the volume admission,
// no controllers): a detached volume grows (rounded up to 2 MiB, quantities accepted); an attached one, a smaller
// size and a malformed one are refused with the /v1 error shape.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BackingImage } from '../../api/backing-image.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Volume } from '../../api/volume.js';
import { volumeAdmission } from '../../controllers/volume/admission.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { startApiServer, type ApiServer } from '../server.js';
import { registerLonghornV1 } from './index.js';

const GiB = 2 ** 30;
let store: ResourceStore;
let closeStore: () => Promise<void>;
let api: ApiServer;

async function volume(name: string, state: 'detached' | 'attached', backingImage?: string): Promise<void> {
  const { object } = await store.create<Volume>({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'Volume',
    metadata: { name, namespace: DEFAULT_NAMESPACE },
    spec: { size: String(2 * GiB), numberOfReplicas: 1, ...(state === 'attached' ? { nodeID: 'node-1' } : {}), ...(backingImage ? { backingImage } : {}) },
  });
  await store.update({ ...object, status: { state, currentNodeID: state === 'attached' ? 'node-1' : '' } }, { subresource: 'status' });
}

before(async () => {
  ({ store, close: closeStore } = await openStore({ path: ':memory:', admission: [volumeAdmission] }));
  api = await startApiServer({ store, port: 0, extend: (app) => registerLonghornV1(app, store) });
  const { object: bi } = await store.create<BackingImage>({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'BackingImage',
    metadata: { name: 'bi-8g', namespace: DEFAULT_NAMESPACE },
    spec: { sourceType: 'download', sourceParameters: { url: 'https://example.com/image.qcow2' } },
  });
  await store.update({ ...bi, status: { ...bi.status, virtualSize: 8 * GiB } }, { subresource: 'status' });
  await volume('v-detached', 'detached');
  await volume('v-attached', 'attached');
});

after(async () => {
  await api.close();
  await closeStore();
});

const expand = async (name: string, body: unknown) => {
  const res = await api.app.inject({ method: 'POST', url: `/v1/volumes/${name}?action=expand`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  return { status: res.statusCode, json: res.json<Record<string, unknown>>() };
};

test('a detached volume grows, rounded up to 2 MiB; asking again for the same size is fine', async () => {
  const r = await expand('v-detached', { size: '4Gi' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json['size'], String(4 * GiB));
  assert.equal((await store.get<Volume>('Volume', DEFAULT_NAMESPACE, 'v-detached')).spec?.size, String(4 * GiB));
  assert.equal((await expand('v-detached', { size: String(4 * GiB) })).status, 200);
  const odd = await expand('v-detached', { size: 4 * GiB + 1 });
  assert.equal(odd.json['size'], String(4 * GiB + 2 * 2 ** 20));
  assert.match(String((r.json['actions'] as Record<string, string>)['expand']), /\/v1\/volumes\/v-detached\?action=expand$/);
});

test('an attached volume, a smaller size or a bad one are refused with the /v1 error shape', async () => {
  const attached = await expand('v-attached', { size: '4Gi' });
  assert.equal(attached.status, 422);
  assert.equal(attached.json['type'], 'error');
  assert.equal(attached.json['code'], 'Invalid');
  assert.equal(attached.json['message'], 'Volume "v-attached" is invalid: spec.size: Invalid value: "4294967296": a volume is expanded offline: detach it first (it is attached to node-1)');
  const smaller = await expand('v-detached', { size: '1Gi' });
  assert.equal(smaller.status, 422);
  assert.match(String(smaller.json['message']), /shrinking a volume is not supported \(current size \d+\)/);
  const bad = await expand('v-detached', { size: 'big' });
  assert.equal(bad.status, 422);
  assert.match(String(bad.json['message']), /^Volume "v-detached" is invalid: size: Invalid value: "big": must be a number of bytes or a quantity/);
  assert.equal((await expand('v-detached', {})).status, 400);
  assert.equal((await expand('no-such-volume', { size: '4Gi' })).status, 404);
});

test('a volume on a backing image grows past the image size', async () => {
  await store.create<Volume>({ apiVersion: LONGHORN_API_VERSION, kind: 'Volume', metadata: { name: 'v-bi', namespace: DEFAULT_NAMESPACE }, spec: { size: String(8 * GiB), numberOfReplicas: 1, backingImage: 'bi-8g' } });
  const r = await expand('v-bi', { size: '9Gi' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
});
