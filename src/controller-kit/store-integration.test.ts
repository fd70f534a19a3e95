// The kit against the real SQLite-backed store (in memory): the informer follows Events the recorder writes
// (create, then a dedupe patch), its frozen cache never freezes objects the store handed to a writer, and the
// controller classifies the store's real Conflict as a quiet retry. Fault injection (Gone, broken watches) is in
// informer.test.ts, over MemoryStore, because the real store offers no hooks for it.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { CoreEvent, KubeObject } from '../api/index.js';
import { openStore } from '../store/index.js';
import type { Store } from '../store/types.js';
import { settle } from './clock.js';
import { Controller } from './controller.js';
import { EventRecorder } from './events.js';
import { InformerFactory } from './informer-factory.js';
import { keyOf, splitKey } from './keys.js';
import { silentLogger, type Logger } from './log.js';

const NS = 'longhorn-system';
const bi: KubeObject = {
  apiVersion: 'longhorn.io/v1beta2',
  kind: 'BackingImage',
  metadata: { name: 'bi-1', namespace: NS, uid: 'uid-1' },
};

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await settle(1);
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('controller kit over the SQLite store', () => {
  let store: Store;
  let close: () => Promise<void>;
  before(async () => {
    ({ store, close } = await openStore({ path: ':memory:' }));
  });
  after(async () => {
    await close();
  });

  it('informer follows recorded events, including the dedupe patch', async () => {
    const factory = new InformerFactory({ store, logger: silentLogger });
    const events = factory.informerFor<CoreEvent>('Event');
    events.addIndex('involvedObject', (e) => [`${e.involvedObject.kind}/${e.involvedObject.name}`]);
    const seen: string[] = [];
    events.addEventHandler({
      onAdd: (e) => seen.push(`add ${e.reason} ${e.count}`),
      onUpdate: (_, e) => seen.push(`update ${e.reason} ${e.count}`),
    });
    const ac = new AbortController();
    const running = factory.run(ac.signal);
    // Abort even when an assertion fails: a running informer retries forever and keeps the process alive.
    try {
      await factory.waitForSync(ac.signal);

      const registry = new Registry();
      const recorder = new EventRecorder({ store, component: 'test', logger: silentLogger, registry });
      recorder.event(bi, 'Warning', 'DownloadFailed', 'HTTP 503');
      await recorder.flush();
      recorder.event(bi, 'Warning', 'DownloadFailed', 'HTTP 503');
      await recorder.flush();
      await waitFor(() => seen.length === 2, 'add and update');
      assert.deepEqual(seen, ['add DownloadFailed 1', 'update DownloadFailed 2']);
      const [cached, ...more] = events.byIndex('involvedObject', 'BackingImage/bi-1');
      assert.equal(more.length, 0);
      assert.equal(cached?.count, 2);
      assert.ok(Object.isFrozen(cached?.involvedObject));
      assert.match(await registry.metrics(), /result="patched"\} 1\n/);

      // The store shares nested objects between a writer's result and its watch events; the informer must have
      // frozen its own copy, or this assignment would throw.
      const { object } = await store.create<CoreEvent>({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: 'manual.1', namespace: NS },
        involvedObject: { kind: 'Pod', name: 'p' },
        reason: 'Manual',
      });
      await waitFor(() => events.get(NS, 'manual.1') !== undefined, 'manual event cached');
      object.involvedObject.name = 'changed-by-caller';
      assert.equal(events.get(NS, 'manual.1')?.involvedObject.name, 'p');
    } finally {
      ac.abort();
      await running;
    }
  });

  it('controller retries a real Conflict quietly and converges', async () => {
    const factory = new InformerFactory({ store, logger: silentLogger });
    const events = factory.informerFor<CoreEvent>('Event');
    const errors: string[] = [];
    const logger: Logger = { ...silentLogger, error: (m) => void errors.push(m) };
    const registry = new Registry();
    let touched = false;
    const controller = new Controller({
      name: 'ack',
      workers: 2,
      registry,
      logger,
      reconcile: async (key) => {
        const [ns, name] = splitKey(key);
        const cached = events.get(ns, name);
        if (!cached || cached.action === 'Acknowledged') return;
        if (name === 'ack.1' && !touched) {
          touched = true;
          // Someone else writes between our read and our write: our update carries a stale resourceVersion.
          await store.patch('Event', ns, name, 'merge', { message: 'touched' });
        }
        const next = structuredClone(cached) as CoreEvent;
        next.action = 'Acknowledged';
        await store.update(next);
      },
    });
    events.addEventHandler({ onAdd: (e) => controller.enqueue(keyOf(e)), onUpdate: (_, e) => controller.enqueue(keyOf(e)) });
    const ac = new AbortController();
    const informers = factory.run(ac.signal);
    const workers = controller.run(ac.signal);
    try {
      await factory.waitForSync(ac.signal);

      await store.create<CoreEvent>({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: 'ack.1', namespace: NS },
        involvedObject: { kind: 'Pod', name: 'p' },
        reason: 'Test',
      });
      await waitFor(() => events.get(NS, 'ack.1')?.action === 'Acknowledged', 'acknowledged');
      const stored = await store.get<CoreEvent>('Event', NS, 'ack.1');
      assert.equal(stored.action, 'Acknowledged');
      assert.equal(stored.message, 'touched', 'the concurrent write was not lost');
      assert.deepEqual(errors, []);
      assert.match(await registry.metrics(), /stratum_controller_reconcile_total\{controller="ack",result="conflict"\} [1-9]/);
    } finally {
      ac.abort();
      await Promise.all([informers, workers]);
    }
  });
});
