// The etcd backend against a real three-member etcd cluster (the machine's `etcd`): compare-and-swap, watch
// from a revision exactly once and in order (also through a member restart), 410 past compaction, the leader
// fence, and what happens without quorum (writes 503, reads served stale and flagged).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { KubeObject } from '../../api/meta.js';
import { isAlreadyExists, isConflict, isGone, isNotFound, isUnavailable, StoreError } from '../errors.js';
import { ResourceStore } from '../resource-store.js';
import type { BackendEvent } from '../types.js';
import { EtcdBackend } from './backend.js';
import { hasEtcd, LocalEtcd } from './local-cluster.js';

const skip = hasEtcd() ? false : 'etcd is not installed (Debian package etcd-server)';
const dir = mkdtempSync(join(tmpdir(), 'stratum-etcd-backend-'));
let etcd: LocalEtcd;
let backend: EtcdBackend;

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => res(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

const obj = (name: string, n = 1): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'ns' }, spec: { n } });

before(async () => {
  if (skip) return;
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push({ client: await freePort(), peer: await freePort() });
  etcd = new LocalEtcd({ dir, ports, token: `test-${process.pid}` });
  await etcd.start();
  backend = new EtcdBackend({ endpoints: etcd.endpoints, prefix: `/t${process.pid}/`, compactIntervalMs: 0, callTimeoutMs: 2000 });
});

after(async () => {
  await backend?.close();
  await etcd?.stop('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('create, get, list, update and delete with compare-and-swap on the revision', { skip }, async () => {
  const a = await backend.create('Pod/ns/a', () => obj('a'));
  await assert.rejects(backend.create('Pod/ns/a', () => obj('a')), isAlreadyExists);
  assert.equal((await backend.get('Pod/ns/a'))?.rev, a.rev);
  const a2 = await backend.update('Pod/ns/a', a.rev, () => obj('a', 2));
  assert.ok(a2.rev > a.rev);
  await assert.rejects(backend.update('Pod/ns/a', a.rev, () => obj('a', 3)), isConflict);
  await assert.rejects(backend.update('Pod/ns/zz', 1, () => obj('zz')), isNotFound);
  await backend.create('Pod/ns/b', () => obj('b'));
  const list = await backend.list('Pod/ns/');
  assert.deepEqual(list.entries.map((e) => e.key), ['Pod/ns/a', 'Pod/ns/b']);
  assert.ok(list.rev >= a2.rev);
  await assert.rejects(backend.delete('Pod/ns/a', a.rev, () => obj('a')), isConflict);
  const gone = await backend.delete('Pod/ns/a', a2.rev, () => obj('a', 2));
  assert.ok(gone.rev > a2.rev);
  assert.equal(await backend.get('Pod/ns/a'), undefined);
});

test('two resource stores on one etcd: resourceVersion is etcd\'s revision; a setting one changes, the other defaults with', { skip }, async () => {
  const other = new EtcdBackend({ endpoints: etcd.endpoints, prefix: `/t${process.pid}/`, compactIntervalMs: 0 });
  try {
    const a = new ResourceStore({ backend });
    const b = new ResourceStore({ backend: other });
    await a.init();
    await b.init();
    const setting = { apiVersion: 'longhorn.io/v1beta2', kind: 'Setting', metadata: { name: 'default-min-number-of-backing-image-copies', namespace: 'longhorn-system' }, value: '1' } as KubeObject;
    const { object } = await a.create(setting);
    assert.equal(object.metadata.resourceVersion, String((await backend.get('Setting/longhorn-system/default-min-number-of-backing-image-copies'))?.rev));
    await a.patch('Setting', 'longhorn-system', 'default-min-number-of-backing-image-copies', 'merge', { value: '3' });
    const bi = { apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name: 'bi-1', namespace: 'longhorn-system' }, spec: { sourceType: 'download', sourceParameters: { url: 'http://127.0.0.1:1/x.qcow2' } } } as KubeObject;
    const created = await b.create(bi);
    assert.equal((created.object['spec'] as { minNumberOfCopies?: number }).minNumberOfCopies, 3);
  } finally {
    await other.close();
  }
});

async function collect(it: AsyncIterable<BackendEvent>, n: number, out: BackendEvent[]): Promise<void> {
  for await (const ev of it) {
    out.push(ev);
    if (out.length >= n) return;
  }
}

test('a watch from a revision sees every later change once, in order, through a member restart', { skip }, async () => {
  const start = await backend.currentRev();
  const ac = new AbortController();
  const seen: BackendEvent[] = [];
  const done = collect(backend.watch('Pod/w/', start, ac.signal), 40, seen);
  let expected = 0;
  const write = async (i: number) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await backend.create(`Pod/w/p${i}`, () => obj(`p${i}`, i));
        expected++;
        return;
      } catch (err) {
        if (isAlreadyExists(err)) {
          expected++;
          return;
        }
        if (!(err instanceof StoreError) || attempt > 20) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  };
  for (let i = 0; i < 20; i++) await write(i);
  await etcd.stopMember(0, 'SIGKILL');
  for (let i = 20; i < 30; i++) await write(i);
  etcd.startMember(0);
  await etcd.waitHealthy();
  for (let i = 30; i < 40; i++) await write(i);
  await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error(`only ${seen.length} events`)), 20_000))]);
  ac.abort();
  assert.equal(expected, 40);
  assert.deepEqual(seen.map((e) => e.key), Array.from({ length: 40 }, (_, i) => `Pod/w/p${i}`));
  for (let i = 1; i < seen.length; i++) assert.ok((seen[i]?.rev ?? 0) > (seen[i - 1]?.rev ?? 0));
  assert.ok(seen.every((e) => e.created && e.type === 'put'));
});

test('a watch from a compacted revision fails with Gone', { skip }, async () => {
  const before = await backend.currentRev();
  await backend.create('Pod/c/x', () => obj('x'));
  await backend.compactTick();
  await backend.create('Pod/c/y', () => obj('y'));
  await backend.compactTick();
  const ac = new AbortController();
  await assert.rejects(async () => {
    for await (const _ of backend.watch('Pod/c/', before - 1, ac.signal)) break;
  }, isGone);
});

test('a write under a fence that no longer holds is refused as Unavailable', { skip }, async () => {
  const lease = await backend.client.put('/fence-test').value('me').exec();
  const fenced = new EtcdBackend({ endpoints: etcd.endpoints, prefix: `/t${process.pid}/`, compactIntervalMs: 0 });
  try {
    fenced.setFence(() => ({ key: '/fence-test', createRevision: String(lease.header.revision) }));
    await fenced.create('Pod/f/ok', () => obj('ok'));
    await backend.client.delete().key('/fence-test').exec();
    await backend.client.put('/fence-test').value('other').exec();
    await assert.rejects(fenced.create('Pod/f/no', () => obj('no')), isUnavailable);
    assert.equal(await backend.get('Pod/f/no'), undefined);
  } finally {
    await fenced.close();
  }
});

test('without quorum writes are Unavailable and reads are served stale; with a member back all resumes', { skip }, async () => {
  await backend.create('Pod/q/kept', () => obj('kept'));
  await etcd.stopMember(1, 'SIGKILL');
  await etcd.stopMember(2, 'SIGKILL');
  await assert.rejects(backend.create('Pod/q/lost', () => obj('lost')), (err: unknown) => isUnavailable(err) && /no quorum/.test((err as Error).message));
  const entry = await backend.get('Pod/q/kept');
  assert.ok(entry, 'a read is served from the remaining member');
  assert.equal(backend.stale(), true);
  etcd.startMember(1);
  await etcd.waitHealthy();
  await backend.create('Pod/q/after', () => obj('after'));
  assert.ok(await backend.get('Pod/q/kept'));
  assert.equal(backend.stale(), false);
  etcd.startMember(2);
});
