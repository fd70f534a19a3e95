// Longhorn's /v1 backing-image actions through the real store and API server (in-memory SQLite, no controllers):
// the Stratum action `scrub` marks the image for a scrub of every ready copy now, and is refused (409, naming the
// image) when there is no ready copy to read.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BackingImage } from '../../api/backing-image.js';
import { ANNOTATION_SCRUB_REQUESTED } from '../../api/labels.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { startApiServer, type ApiServer } from '../server.js';
import { registerLonghornV1 } from './index.js';

let store: ResourceStore;
let closeStore: () => Promise<void>;
let api: ApiServer;

async function image(name: string, state: string): Promise<void> {
  const { object } = await store.create<BackingImage>({
    apiVersion: LONGHORN_API_VERSION,
    kind: 'BackingImage',
    metadata: { name, namespace: DEFAULT_NAMESPACE },
    spec: { sourceType: 'download', sourceParameters: { url: 'https://example.com/image.qcow2' } },
  });
  await store.update({ ...object, status: { ...object.status, diskFileStatusMap: { 'disk-1': { state: state as 'ready', progress: 100, message: '' } } } }, { subresource: 'status' });
}

before(async () => {
  ({ store, close: closeStore } = await openStore({ path: ':memory:' }));
  api = await startApiServer({ store, port: 0, extend: (app) => registerLonghornV1(app, store) });
  await image('ready-one', 'ready');
  await image('coming', 'in-progress');
});

after(async () => {
  await api.close();
  await closeStore();
});

const scrub = async (name: string) => {
  const res = await fetch(`${api.url}/v1/backingimages/${name}?action=scrub`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};

test('scrub marks the image with the time it was asked for, and says so', async () => {
  const before = new Date().toISOString();
  const r = await scrub('ready-one');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const at = String(r.json['scrubRequestedAt']);
  assert.ok(at >= before, `asked at ${at}`);
  const bi = await store.get<BackingImage>('BackingImage', DEFAULT_NAMESPACE, 'ready-one');
  assert.equal(bi.metadata.annotations?.[ANNOTATION_SCRUB_REQUESTED], at);
  assert.match(String((r.json['actions'] as Record<string, string>)['scrub']), /\/v1\/backingimages\/ready-one\?action=scrub$/);
});

test('scrub of an image with no ready copy is refused and changes nothing', async () => {
  const r = await scrub('coming');
  assert.equal(r.status, 409);
  assert.match(String(r.json['message']), /backing image "coming" has no ready copy to scrub/);
  const bi = await store.get<BackingImage>('BackingImage', DEFAULT_NAMESPACE, 'coming');
  assert.equal(bi.metadata.annotations?.[ANNOTATION_SCRUB_REQUESTED], undefined);
});
