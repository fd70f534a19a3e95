// End-to-end durability of the control plane: writes acknowledged before a `kill -9` survive it, resourceVersions
// never go backwards, and a watch resumed after a restart misses and repeats nothing.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { KubeObject } from '../src/api/meta.js';
import { HttpStore } from '../src/client/http-store.js';
import { ManagerProcess, tempDir } from './helpers/processes.js';
import { mulberry32 as prng } from '../src/util/prng.js';

const NS = 'longhorn-system';
const dirs: { remove(): void }[] = [];
after(() => dirs.forEach((d) => d.remove()));

/** Leases: no controller acts on them, so every change a watcher sees is one the test made. */
function bi(name: string): KubeObject {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace: NS },
    spec: { holderIdentity: 'durability-test' },
  };
}


test('1,000 writes with a kill -9 at a random moment: every acknowledged write survives', async () => {
  const seed = Number(process.env['STRATUM_TEST_SEED'] ?? Date.now() % 1_000_000);
  const rand = prng(seed);
  const dir = tempDir('durability');
  dirs.push(dir);
  const manager = new ManagerProcess(join(dir.path, 'manager'));
  await manager.start();
  const client = new HttpStore({ server: manager.url, timeoutMs: 5000, token: manager.token });
  const acked = new Map<string, number>();
  let maxRv = 0;
  let next = 0;
  const killAfter = 50 + Math.floor(rand() * 700);
  const writer = async () => {
    while (next < 1000) {
      const i = next++;
      try {
        const { object } = await client.create(bi(`w-${i}`));
        const rv = Number(object.metadata.resourceVersion);
        acked.set(`w-${i}`, rv);
        maxRv = Math.max(maxRv, rv);
      } catch {
        // The manager is gone: this write was not acknowledged, so nothing is promised about it.
      }
    }
  };
  const writers = Promise.all([writer(), writer(), writer(), writer()]);
  while (acked.size < killAfter && next < 1000) await new Promise((r) => setTimeout(r, 1));
  await manager.kill9();
  await writers;
  assert.ok(acked.size >= killAfter, `seed ${seed}: ${acked.size} writes acknowledged before the kill`);
  await manager.start();
  const list = await client.list('Lease', { namespace: NS });
  const stored = new Map(list.items.map((o) => [o.metadata.name ?? '', Number(o.metadata.resourceVersion)]));
  for (const [name, rv] of acked) {
    assert.equal(stored.get(name), rv, `seed ${seed}: acknowledged write ${name}@${rv} lost after kill -9`);
  }
  const { object } = await client.create(bi('after-restart'));
  assert.ok(Number(object.metadata.resourceVersion) > maxRv, `seed ${seed}: resourceVersion went backwards`);
  await manager.stop();
});

test('a watch resumed from its last resourceVersion across a manager restart sees every change once, in order', async () => {
  const dir = tempDir('watch');
  dirs.push(dir);
  const manager = new ManagerProcess(join(dir.path, 'manager'));
  await manager.start();
  const client = new HttpStore({ server: manager.url, token: manager.token });
  const { object } = await client.create(bi('start'));
  const from = object.metadata.resourceVersion ?? '';
  const written: number[] = [];
  const write = async (name: string) => written.push(Number((await client.create(bi(name))).object.metadata.resourceVersion));

  const seen: number[] = [];
  let last = from;
  const consume = async (count: number) => {
    const ac = new AbortController();
    for await (const ev of client.watch('Lease', { namespace: NS, resourceVersion: last, signal: ac.signal })) {
      seen.push(Number(ev.object.metadata.resourceVersion));
      last = ev.object.metadata.resourceVersion ?? last;
      if (seen.length === count) break;
    }
    ac.abort();
  };
  const firstHalf = consume(20);
  for (let i = 0; i < 20; i++) await write(`a-${i}`);
  await firstHalf;
  // Changes made while the client is away, then a crash and restart.
  for (let i = 0; i < 10; i++) await write(`b-${i}`);
  await manager.kill9();
  await manager.start();
  const secondHalf = consume(40);
  for (let i = 0; i < 10; i++) await write(`c-${i}`);
  await secondHalf;
  await manager.stop();
  assert.deepEqual(seen, written);
});
