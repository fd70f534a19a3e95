// The backing-image copy gauges, scraped from a real registry over the in-memory store: one series per copy with its
// size, its state as 1 among 0s, and when a ready copy was last verified; a copy that goes away leaves no series.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { BackingImageManager } from '../../api/backing-image-manager.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { MemoryStore } from '../../controller-kit/testing.js';
import { registerBackingImageMetrics } from './metrics.js';

const NS = 'longhorn-system';

test('one series per copy: size, state and verification time; none left for a copy that went away', async () => {
  const store = new MemoryStore();
  const { object: m } = await store.create<BackingImageManager>({ apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImageManager', metadata: { name: 'bim-1', namespace: NS }, spec: { image: 'stratum-bim:v1', nodeID: 'node-1', diskUUID: 'disk-1', diskPath: '/d' } } as BackingImageManager);
  const map = {
    good: { name: 'good', uuid: 'u1', state: 'ready', realSize: 4096, verifiedAt: '2026-12-01T00:00:00.000Z' },
    coming: { name: 'coming', uuid: 'u2', state: 'in-progress', realSize: 100, progress: 40 },
  };
  await store.update({ ...m, status: { currentState: 'running', backingImageFileMap: map } } as BackingImageManager, { subresource: 'status' });
  const informers = new InformerFactory({ store, logger: silentLogger });
  const registry = new Registry();
  const unregister = registerBackingImageMetrics(registry, informers);
  const ac = new AbortController();
  const done = informers.run(ac.signal);
  try {
    await informers.waitForSync(ac.signal);
    const text = await registry.metrics();
    const labels = (image: string) => `backing_image="${image}",node="node-1",disk="disk-1"`;
    assert.match(text, new RegExp(`^longhorn_backing_image_actual_size_bytes\\{${labels('good')}\\} 4096$`, 'm'));
    assert.match(text, new RegExp(`^longhorn_backing_image_state\\{${labels('good')},state="ready"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^longhorn_backing_image_state\\{${labels('good')},state="failed"\\} 0$`, 'm'));
    assert.match(text, new RegExp(`^longhorn_backing_image_state\\{${labels('coming')},state="in-progress"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^stratum_backing_image_copy_verified_timestamp_seconds\\{${labels('good')}\\} ${Date.parse('2026-12-01T00:00:00Z') / 1000}$`, 'm'));
    assert.doesNotMatch(text, /verified_timestamp_seconds\{backing_image="coming"/, 'only ready copies have a verification time');

    const now = await store.get<BackingImageManager>('BackingImageManager', NS, 'bim-1');
    await store.update({ ...now, status: { ...now.status, backingImageFileMap: { good: map.good } } } as BackingImageManager, { subresource: 'status' });
    for (let i = 0; i < 100 && /"coming"/.test(await registry.metrics()); i++) await new Promise((r) => setTimeout(r, 10));
    assert.doesNotMatch(await registry.metrics(), /"coming"/);
    unregister();
    assert.equal(await registry.metrics(), '\n', 'unregistered: nothing left');
  } finally {
    ac.abort();
    await done;
  }
});
