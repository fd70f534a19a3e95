// Unit tests of the store's Kubernetes semantics, on the real SQLite backend (in memory or in a temp file).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { KubeObject } from '../api/meta.js';
import { isConflict, isGone, isInvalid, isNotFound, openStore, type WatchEvent } from './index.js';

const NS = 'longhorn-system';

function bi(name: string, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImage',
    metadata: { name, namespace: NS },
    spec: { sourceType: 'download', sourceParameters: { url: 'https://example.com/a.qcow2' }, ...extra },
  };
}

async function collect(it: AsyncIterable<WatchEvent>, n: number): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  for await (const ev of it) {
    out.push(ev);
    if (out.length === n) break;
  }
  return out;
}

test('create fills identity and defaults; get and list return it', async () => {
  const { store, close } = await openStore({ path: ':memory:' });
  const { object } = await store.create(bi('bi-1'));
  assert.match(object.metadata.uid ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(object.metadata.generation, 1);
  assert.ok(object.metadata.creationTimestamp);
  assert.equal((object.spec as { minNumberOfCopies: number }).minNumberOfCopies, 1);
  assert.ok((object.status as { uuid: string }).uuid);
  const got = await store.get('BackingImage', NS, 'bi-1');
  assert.equal(got.metadata.resourceVersion, object.metadata.resourceVersion);
  const list = await store.list('BackingImage', { namespace: NS });
  assert.equal(list.items.length, 1);
  assert.equal(list.resourceVersion, object.metadata.resourceVersion);
  await close();
});

test('two updates from the same resourceVersion: exactly one wins, the other is a Conflict', async () => {
  const { store, close } = await openStore({ path: ':memory:' });
  const { object } = await store.create(bi('bi-1'));
  const a = structuredClone(object);
  const b = structuredClone(object);
  (a.spec as Record<string, unknown>)['minNumberOfCopies'] = 2;
  (b.spec as Record<string, unknown>)['minNumberOfCopies'] = 3;
  const results = await Promise.allSettled([store.update(a), store.update(b)]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  assert.ok(isConflict(rejected.reason));
  await close();
});

test('generation moves on spec changes only; status writes go through the status subresource', async () => {
  const { store, close } = await openStore({ path: ':memory:' });
  const { object } = await store.create(bi('bi-1'));
  const labelled = (await store.patch('BackingImage', NS, 'bi-1', 'merge', { metadata: { labels: { a: 'b' } } })).object;
  assert.equal(labelled.metadata.generation, 1);
  const status = (await store.patch('BackingImage', NS, 'bi-1', 'merge', { status: { size: 5 } }, { subresource: 'status' })).object;
  assert.equal(status.metadata.generation, 1);
  assert.equal((status.status as { size: number }).size, 5);
  // A main-resource write cannot change status.
  const sneaky = (await store.patch('BackingImage', NS, 'bi-1', 'merge', { status: { size: 9 } })).object;
  assert.equal((sneaky.status as { size: number }).size, 5);
  const spec = (await store.patch('BackingImage', NS, 'bi-1', 'json', [{ op: 'replace', path: '/spec/minNumberOfCopies', value: 2 }])).object;
  assert.equal(spec.metadata.generation, 2);
  assert.notEqual(spec.metadata.uid, undefined);
  assert.equal(spec.metadata.uid, object.metadata.uid);
  await close();
});

test('a finalizer holds an object in deletion until it is removed', async () => {
  const { store, close } = await openStore({ path: ':memory:' });
  const obj = bi('bi-1');
  obj.metadata.finalizers = ['longhorn.io'];
  await store.create(obj);
  const res = await store.delete('BackingImage', NS, 'bi-1');
  assert.equal(res.deleted, false);
  assert.ok(res.object.metadata.deletionTimestamp);
  assert.ok((await store.get('BackingImage', NS, 'bi-1')).metadata.deletionTimestamp);
  await assert.rejects(
    store.patch('BackingImage', NS, 'bi-1', 'merge', { metadata: { finalizers: ['longhorn.io', 'other'] } }),
    isInvalid,
  );
  await store.patch('BackingImage', NS, 'bi-1', 'merge', { metadata: { finalizers: null } });
  await assert.rejects(store.get('BackingImage', NS, 'bi-1'), isNotFound);
  await close();
});

test('invalid objects are refused naming the field', async () => {
  const { store, close } = await openStore({ path: ':memory:' });
  for (const [obj, field] of [
    [bi('../x'), 'metadata.name'],
    [bi('Upper'), 'metadata.name'],
    [bi('ok', { minNumberOfCopies: 'three' }), 'spec.minNumberOfCopies'],
  ] as const) {
    await assert.rejects(store.create(obj), (err: unknown) => isInvalid(err) && err.causes.some((c) => c.field === field));
  }
  await close();
});

test('label and field selectors filter lists', async () => {
  const { store, close } = await openStore({ path: ':memory:' });
  const a = bi('a');
  a.metadata.labels = { tier: 'gold' };
  await store.create(a);
  await store.create(bi('b'));
  assert.deepEqual((await store.list('BackingImage', { labelSelector: 'tier=gold' })).items.map((o) => o.metadata.name), ['a']);
  assert.deepEqual((await store.list('BackingImage', { labelSelector: '!tier' })).items.map((o) => o.metadata.name), ['b']);
  assert.deepEqual((await store.list('BackingImage', { fieldSelector: 'metadata.name=b' })).items.map((o) => o.metadata.name), ['b']);
  await close();
});

test('watch from a resourceVersion delivers every later change once, in order; compacted versions are Gone', async () => {
  const { store, close } = await openStore({ path: ':memory:', historyRevisions: 10 });
  const { object } = await store.create(bi('w'));
  const from = object.metadata.resourceVersion ?? '';
  for (let i = 2; i <= 6; i++) await store.patch('BackingImage', NS, 'w', 'merge', { spec: { minNumberOfCopies: i } });
  const ac = new AbortController();
  const events = collect(store.watch('BackingImage', { resourceVersion: from, signal: ac.signal }), 7);
  await store.patch('BackingImage', NS, 'w', 'merge', { spec: { minNumberOfCopies: 7 } });
  await store.delete('BackingImage', NS, 'w');
  const got = await events;
  ac.abort();
  assert.deepEqual(got.map((e) => e.type), ['MODIFIED', 'MODIFIED', 'MODIFIED', 'MODIFIED', 'MODIFIED', 'MODIFIED', 'DELETED']);
  const rvs = got.map((e) => Number(e.object.metadata.resourceVersion));
  assert.deepEqual(rvs, [...rvs].sort((x, y) => x - y));
  assert.equal(new Set(rvs).size, rvs.length);
  // Push history past the retention window, then ask for a version before it.
  for (let i = 0; i < 1100; i++) await store.create(bi(`c-${i}`));
  await assert.rejects(collect(store.watch('BackingImage', { resourceVersion: from, signal: new AbortController().signal }), 1), isGone);
  await close();
});

test('acknowledged writes survive reopening the database', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-store-'));
  try {
    const path = join(dir, 'state.db');
    const first = await openStore({ path });
    const { object } = await first.store.create(bi('kept'));
    await first.close();
    const second = await openStore({ path });
    const got = await second.store.get('BackingImage', NS, 'kept');
    assert.equal(got.metadata.uid, object.metadata.uid);
    const next = await second.store.create(bi('later'));
    assert.ok(Number(next.object.metadata.resourceVersion) > Number(object.metadata.resourceVersion));
    await second.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
