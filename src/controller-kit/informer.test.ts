// Informer over the in-memory Store: initial list, later changes and deletes, index maintenance, re-list after
// Gone and after watch errors (with backoff on a fake clock), late handlers, frozen cache, resync scope, factory.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeepReadonly, KubeObject } from '../api/meta.js';
import { StoreError } from '../store/errors.js';
import { FakeClock, settle } from './clock.js';
import { InformerFactory } from './informer-factory.js';
import { Informer } from './informer.js';
import { keyOf } from './keys.js';
import { silentLogger } from './log.js';
import { MemoryStore } from './testing.js';

const NS = 'longhorn-system';

type Replica = KubeObject<{ backingImage: string; diskID: string }>;

function replica(name: string, backingImage: string, diskID: string): Replica {
  return { apiVersion: 'longhorn.io/v1beta2', kind: 'Replica', metadata: { name, namespace: NS }, spec: { backingImage, diskID } };
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await settle(1);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Records handler calls as `add ns/x`, `update ns/x rv→rv`, `delete ns/x`. */
function recorder(informer: Informer<Replica>): string[] {
  const log: string[] = [];
  informer.addEventHandler({
    onAdd: (o) => log.push(`add ${keyOf(o)}`),
    onUpdate: (a, b) => log.push(`update ${keyOf(b)} ${a.metadata.resourceVersion}→${b.metadata.resourceVersion}`),
    onDelete: (o) => log.push(`delete ${keyOf(o)}`),
  });
  return log;
}

function setup() {
  const store = new MemoryStore();
  const clock = new FakeClock();
  const informer = new Informer<Replica>({ store, kind: 'Replica', clock, logger: silentLogger });
  const ac = new AbortController();
  return { store, clock, informer, ac, start: () => informer.run(ac.signal) };
}

const names = (objs: readonly DeepReadonly<KubeObject>[]) => objs.map((o) => o.metadata.name).sort();

describe('Informer', () => {
  it('delivers the initial list, later changes and deletes', async () => {
    const { store, informer, ac, start } = setup();
    await store.create(replica('r1', 'bi-a', 'd1'));
    await store.create(replica('r2', 'bi-a', 'd2'));
    const log = recorder(informer);
    const running = start();
    await informer.waitForSync();
    assert.equal(informer.hasSynced(), true);
    assert.deepEqual(log.sort(), [`add ${NS}/r1`, `add ${NS}/r2`]);
    log.length = 0;

    await store.create(replica('r3', 'bi-b', 'd1'));
    const r1 = await store.get<Replica>('Replica', NS, 'r1');
    r1.spec = { backingImage: 'bi-a', diskID: 'd9' };
    await store.update(r1);
    await store.delete('Replica', NS, 'r2');
    await waitFor(() => log.length === 3, 'three events');
    assert.deepEqual(log, [`add ${NS}/r3`, `update ${NS}/r1 1→4`, `delete ${NS}/r2`]);
    assert.equal(informer.get(NS, 'r1')?.spec?.diskID, 'd9');
    assert.equal(informer.get(NS, 'r2'), undefined);
    assert.deepEqual(names(informer.list()), ['r1', 'r3']);

    ac.abort();
    await running;
    assert.equal(store.watcherCount(), 0, 'run resolves only after the watch stopped');
  });

  it('keeps index lookups current as objects change', async () => {
    const { store, informer, ac, start } = setup();
    informer.addIndex('byBackingImageDisk', (r) => [`${r.spec?.backingImage}/${r.spec?.diskID}`]);
    await store.create(replica('r1', 'bi-a', 'd1'));
    await store.create(replica('r2', 'bi-a', 'd1'));
    const running = start();
    await informer.waitForSync();
    // An index added after start is built over the cached objects.
    informer.addIndex('byDisk', (r) => (r.spec ? [r.spec.diskID] : []));
    assert.deepEqual(names(informer.byIndex('byBackingImageDisk', 'bi-a/d1')), ['r1', 'r2']);
    assert.deepEqual(names(informer.byIndex('byDisk', 'd1')), ['r1', 'r2']);

    const r2 = await store.get<Replica>('Replica', NS, 'r2');
    r2.spec = { backingImage: 'bi-b', diskID: 'd2' };
    await store.update(r2);
    await store.delete('Replica', NS, 'r1');
    await waitFor(() => informer.get(NS, 'r1') === undefined, 'r1 deleted');
    assert.deepEqual(informer.byIndex('byBackingImageDisk', 'bi-a/d1'), []);
    assert.deepEqual(names(informer.byIndex('byBackingImageDisk', 'bi-b/d2')), ['r2']);
    assert.deepEqual(informer.indexKeys('byDisk', 'd2'), [`${NS}/r2`]);
    assert.deepEqual(informer.byIndex('byDisk', 'd1'), []);
    assert.throws(() => informer.byIndex('nope', 'x'), /no such index/);
    ac.abort();
    await running;
  });

  it('re-lists after Gone without losing or duplicating objects', async () => {
    const { store, informer, ac, start } = setup();
    for (const n of ['r1', 'r2', 'r3']) await store.create(replica(n, 'bi-a', 'd1'));
    const log = recorder(informer);
    const running = start();
    await informer.waitForSync();
    await waitFor(() => store.watcherCount() === 1, 'watch started');
    log.length = 0;
    assert.equal(store.calls.list, 1);

    // The watch expires and, while nobody watches, things change and history is compacted: resuming from the
    // last seen version is impossible, only a re-list can recover.
    store.breakWatches(new StoreError('Gone', 'watch expired'));
    await store.delete('Replica', NS, 'r1');
    const r2 = await store.get<Replica>('Replica', NS, 'r2');
    r2.spec = { backingImage: 'bi-a', diskID: 'd7' };
    await store.update(r2);
    await store.create(replica('r4', 'bi-a', 'd1'));
    store.compact();

    await waitFor(() => store.calls.list === 2 && log.length === 3, 're-list');
    assert.deepEqual(log.sort(), [`add ${NS}/r4`, `delete ${NS}/r1`, `update ${NS}/r2 2→5`]);
    assert.deepEqual(names(informer.list()), ['r2', 'r3', 'r4']);
    assert.equal(informer.get(NS, 'r2')?.spec?.diskID, 'd7');

    // And the new watch works, from the re-list's version.
    await waitFor(() => store.watcherCount() === 1, 'new watch');
    await store.create(replica('r5', 'bi-a', 'd1'));
    await waitFor(() => log.length === 4, 'event after re-list');
    assert.equal(log[3], `add ${NS}/r5`);
    assert.equal(informer.list().length, 4);
    ac.abort();
    await running;
  });

  it('re-lists after a watch error only after the backoff', async () => {
    const { store, clock, informer, ac, start } = setup();
    await store.create(replica('r1', 'bi-a', 'd1'));
    const running = start();
    await informer.waitForSync();
    await waitFor(() => store.watcherCount() === 1, 'watch started');

    store.breakWatches(new StoreError('Internal', 'connection reset'));
    await store.create(replica('r2', 'bi-a', 'd1'));
    await settle();
    assert.equal(store.calls.list, 1, 'no re-list before the backoff elapsed');
    assert.equal(informer.get(NS, 'r2'), undefined);
    await clock.advanceAndSettle(199);
    assert.equal(store.calls.list, 1);
    await clock.advanceAndSettle(1);
    await waitFor(() => informer.get(NS, 'r2') !== undefined, 'r2 after re-list');
    assert.equal(store.calls.list, 2);
    ac.abort();
    await running;
  });

  it('gives late handlers synthetic adds and serves frozen objects', async () => {
    const { store, informer, ac, start } = setup();
    const created = await store.create(replica('r1', 'bi-a', 'd1'));
    const running = start();
    await informer.waitForSync();
    const log = recorder(informer);
    assert.deepEqual(log, [`add ${NS}/r1`]);

    const cached = informer.get(NS, 'r1');
    assert.ok(cached);
    assert.ok(Object.isFrozen(cached) && Object.isFrozen(cached.spec) && Object.isFrozen(cached.metadata));
    assert.throws(() => {
      (cached.spec as { diskID: string }).diskID = 'mutated';
    }, TypeError);
    // Freezing the cache copy must not freeze what the store handed to the writer.
    created.object.spec = { backingImage: 'x', diskID: 'y' };
    ac.abort();
    await running;
  });

  it('resyncs only the handler that asked for it', async () => {
    const { store, clock, informer, ac, start } = setup();
    await store.create(replica('r1', 'bi-a', 'd1'));
    let own = 0;
    let other = 0;
    informer.addEventHandler({ onUpdate: () => own++ }, { resyncPeriodMs: 30_000 });
    informer.addEventHandler({ onUpdate: () => other++ });
    const running = start();
    await informer.waitForSync();
    await clock.advanceAndSettle(29_999);
    assert.equal(own, 0);
    await clock.advanceAndSettle(1);
    assert.equal(own, 1);
    await clock.advanceAndSettle(30_000);
    assert.equal(own, 2);
    assert.equal(other, 0);
    ac.abort();
    await running;
    assert.equal(clock.pendingTimers(), 0, 'resync timer stopped with run');
  });

  it('waitForSync rejects when aborted first', async () => {
    const { informer } = setup();
    const ac = new AbortController();
    const waiting = informer.waitForSync(ac.signal);
    ac.abort(new Error('shutting down'));
    await assert.rejects(waiting, /shutting down/);
  });
});

describe('InformerFactory', () => {
  it('shares one informer per kind and runs late ones too', async () => {
    const store = new MemoryStore();
    await store.create(replica('r1', 'bi-a', 'd1'));
    await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p1', namespace: NS } });
    const factory = new InformerFactory({ store, clock: new FakeClock(), logger: silentLogger });
    const a = factory.informerFor<Replica>('Replica');
    assert.equal(factory.informerFor<Replica>('Replica'), a);
    const ac = new AbortController();
    const running = factory.run(ac.signal);
    const pods = factory.informerFor('Pod');
    await factory.waitForSync();
    assert.deepEqual(names(a.list()), ['r1']);
    assert.deepEqual(names(pods.list()), ['p1']);
    assert.deepEqual(factory.kinds().sort(), ['Pod', 'Replica']);
    ac.abort();
    await running;
    assert.equal(store.watcherCount(), 0);
  });
});
