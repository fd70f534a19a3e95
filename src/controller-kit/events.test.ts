// Event recorder: the written Event's shape, dedupe into `count`, the 10-minute window, store failures that never
// reach the caller, the bounded queue, and re-creation when the Event was deleted.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { CoreEvent, KubeObject } from '../api/index.js';
import { StoreError } from '../store/errors.js';
import { FakeClock } from './clock.js';
import { EventRecorder } from './events.js';
import type { Logger } from './log.js';
import { MemoryStore } from './testing.js';

const NS = 'longhorn-system';
const bi: KubeObject = {
  apiVersion: 'longhorn.io/v1beta2',
  kind: 'BackingImage',
  metadata: { name: 'bi-1', namespace: NS, uid: 'uid-1', resourceVersion: '7' },
};

function setup(opts: { maxPending?: number } = {}) {
  const store = new MemoryStore();
  const clock = new FakeClock();
  const registry = new Registry();
  const warnings: string[] = [];
  const logger: Logger = { debug: () => {}, info: () => {}, warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m) };
  const recorder = new EventRecorder({ store, component: 'backing-image-controller', instance: 'node-1', clock, registry, logger, ...opts });
  const events = async () => (await store.list<CoreEvent>('Event')).items;
  return { store, clock, registry, warnings, recorder, events };
}

describe('EventRecorder', () => {
  it('writes a core v1 Event about the object', async () => {
    const t = setup();
    t.recorder.event(bi, 'Warning', 'DownloadFailed', 'GET https://x: 404');
    await t.recorder.flush();
    const [e, ...rest] = await t.events();
    assert.equal(rest.length, 0);
    assert.ok(e);
    assert.equal(e.apiVersion, 'v1');
    assert.equal(e.kind, 'Event');
    assert.equal(e.metadata.namespace, NS);
    assert.match(e.metadata.name ?? '', /^bi-1\.[0-9a-f]+$/);
    assert.deepEqual(e.involvedObject, {
      apiVersion: 'longhorn.io/v1beta2',
      kind: 'BackingImage',
      name: 'bi-1',
      namespace: NS,
      uid: 'uid-1',
      resourceVersion: '7',
    });
    assert.equal(e.type, 'Warning');
    assert.equal(e.reason, 'DownloadFailed');
    assert.equal(e.message, 'GET https://x: 404');
    assert.deepEqual(e.source, { component: 'backing-image-controller', host: 'node-1' });
    assert.equal(e.reportingComponent, 'backing-image-controller');
    assert.equal(e.count, 1);
    assert.equal(e.firstTimestamp, '2025-01-01T00:00:00Z');
    assert.equal(e.lastTimestamp, e.firstTimestamp);
  });

  it('counts identical events on one Event and keeps different ones apart', async () => {
    const t = setup();
    t.recorder.event(bi, 'Warning', 'DownloadFailed', 'timeout');
    await t.recorder.flush();
    t.clock.advance(60_000);
    t.recorder.event(bi, 'Warning', 'DownloadFailed', 'timeout');
    await t.recorder.flush();
    t.clock.advance(60_000);
    // Two more before the writer runs: merged in the queue, one patch.
    t.recorder.event(bi, 'Warning', 'DownloadFailed', 'timeout');
    t.recorder.event(bi, 'Warning', 'DownloadFailed', 'timeout');
    t.recorder.event(bi, 'Normal', 'Ready', 'file is ready');
    await t.recorder.flush();
    const events = await t.events();
    assert.equal(events.length, 2);
    const failed = events.find((e) => e.reason === 'DownloadFailed');
    assert.equal(failed?.count, 4);
    assert.equal(failed?.firstTimestamp, '2025-01-01T00:00:00Z');
    assert.equal(failed?.lastTimestamp, '2025-01-01T00:02:00Z');
    assert.equal(events.find((e) => e.reason === 'Ready')?.count, 1);
    assert.equal(t.store.calls.create, 2);
    assert.equal(t.store.calls.patch, 2);
  });

  it('starts a new Event after 10 quiet minutes', async () => {
    const t = setup();
    t.recorder.event(bi, 'Normal', 'Synced', 'copy synced');
    await t.recorder.flush();
    t.clock.advance(10 * 60_000 + 1000);
    t.recorder.event(bi, 'Normal', 'Synced', 'copy synced');
    await t.recorder.flush();
    const events = await t.events();
    assert.equal(events.length, 2);
    assert.deepEqual(events.map((e) => e.count), [1, 1]);
  });

  it('re-creates the Event when it was deleted meanwhile', async () => {
    const t = setup();
    t.recorder.event(bi, 'Normal', 'Synced', 'copy synced');
    await t.recorder.flush();
    const [first] = await t.events();
    await t.store.delete('Event', NS, first?.metadata.name ?? '');
    t.recorder.event(bi, 'Normal', 'Synced', 'copy synced');
    await t.recorder.flush();
    const events = await t.events();
    assert.equal(events.length, 1);
    assert.notEqual(events[0]?.metadata.name, first?.metadata.name);
  });

  it('never throws into the caller when the store fails, and logs the failure once', async () => {
    const t = setup();
    t.store.failNext('create', new StoreError('Internal', 'disk I/O error'));
    t.store.failNext('create', new StoreError('Internal', 'disk I/O error'));
    t.recorder.event(bi, 'Warning', 'A', 'a');
    t.recorder.event(bi, 'Warning', 'B', 'b');
    // A malformed object is logged, not thrown.
    t.recorder.event({} as KubeObject, 'Warning', 'C', 'c');
    await t.recorder.flush();
    assert.equal(t.warnings.length, 2, 'one log for the write failures, one for the malformed object');
    t.recorder.event(bi, 'Warning', 'D', 'd');
    await t.recorder.flush();
    assert.equal((await t.events()).length, 1);
    const text = await t.registry.metrics();
    assert.match(text, /stratum_events_written_total\{component="backing-image-controller",result="failed"\} 2\n/);
    assert.match(text, /stratum_events_written_total\{component="backing-image-controller",result="created"\} 1\n/);
  });

  it('drops events beyond the bounded queue and counts them', async () => {
    const t = setup({ maxPending: 2 });
    for (let i = 0; i < 5; i++) t.recorder.event(bi, 'Normal', 'Step', `step ${i}`);
    // Repeats of a queued event merge instead of taking a slot.
    t.recorder.event(bi, 'Normal', 'Step', 'step 0');
    await t.recorder.flush();
    const events = await t.events();
    assert.deepEqual(events.map((e) => `${e.message}×${e.count}`).sort(), ['step 0×2', 'step 1×1']);
    assert.match(await t.registry.metrics(), /stratum_events_dropped_total\{component="backing-image-controller"\} 3\n/);
  });

  it('puts events about cluster-scoped objects in the default namespace', async () => {
    const t = setup();
    t.recorder.event({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1', uid: 'u' } }, 'Normal', 'Up', 'ready');
    await t.recorder.flush();
    const [e] = await t.events();
    assert.equal(e?.metadata.namespace, 'default');
    assert.equal(e?.involvedObject.namespace, undefined);
  });
});
