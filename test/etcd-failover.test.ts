// End-to-end on three managers sharing a three-member etcd: kill -9 of the leader while backing images are being
// downloaded (from a deliberately slow server), then kill -9 of one etcd member. A new leader takes over within 5 s
// of the old lease's expiry, every acknowledged write is there, the downloads finish, no data-source pod is created
// twice, and a watch held (through another manager) across both failures sees every event once, in order.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import type { KubeObject } from '../src/api/meta.js';
import { HttpStore } from '../src/client/http-store.js';
import { skipEtcd } from './helpers/etcd-managers.js';
import { allReady, LifecycleCluster } from './helpers/lifecycle.js';
import { waitFor } from './helpers/processes.js';

process.env['STRATUM_TEST_STORE'] = 'etcd';
const NS = 'longhorn-system';
const LEASE_MS = 6000;
const IMAGES = 4;
const SIZE = 12 * 1024 * 1024;
const cluster = skipEtcd ? undefined : new LifecycleCluster(3);
let web: Server | undefined;
let webUrl = '';

/** Serves SIZE bytes per path at about 1.5 MiB/s, with Range support: downloads take several seconds. */
async function slowServer(): Promise<void> {
  const body = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4096) body.writeUInt32LE((i * 2654435761) >>> 0, i);
  web = createServer((req, res) => {
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Number(range[2]) : SIZE - 1;
    res.writeHead(range ? 206 : 200, {
      'content-length': end - start + 1,
      'accept-ranges': 'bytes',
      ...(range ? { 'content-range': `bytes ${start}-${end}/${SIZE}` } : {}),
    });
    let at = start;
    const tick = () => {
      if (res.destroyed) return;
      const next = Math.min(end + 1, at + 160 * 1024);
      res.write(body.subarray(at, next));
      at = next;
      if (at > end) res.end();
      else setTimeout(tick, 100);
    };
    tick();
  });
  await new Promise<void>((r) => web?.listen(0, '127.0.0.1', r));
  const addr = web.address();
  webUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

before(async () => {
  if (!cluster) return;
  await slowServer();
  await cluster.start({ 'allow-private-download-urls': 'true', 'node-down-timeout': '30' });
});

after(async () => {
  await cluster?.stop();
  web?.closeAllConnections();
  await new Promise<void>((r) => (web ? web.close(() => r()) : r()));
});

test('kill -9 of the leader during downloads, then of one etcd member: a new leader within 5 s of the lease expiry, nothing lost, nothing started twice, one ordered watch', { skip: skipEtcd, timeout: 300_000 }, async () => {
  assert.ok(cluster);
  const managers = cluster.manager.etcd;
  assert.ok(managers?.etcd);
  try {
    await scenario(cluster, managers);
  } catch (err) {
    const running = managers.managers.map((_, i) => `manager ${i}: ${managers.running(i) ? 'running' : 'down'}`).join(', ');
    throw new Error(`${(err as Error).message}\n${running}\n--- manager logs (tail):\n${managers.log.slice(-4000)}`, { cause: err });
  }
});

async function scenario(cluster: LifecycleCluster, managers: NonNullable<LifecycleCluster['manager']['etcd']>): Promise<void> {
  assert.ok(managers.etcd);
  const leader = await waitFor('a leader', () => managers.leader(), 30_000);
  const watcherIdx = (leader + 1) % 3;
  const watchVia = new HttpStore({ server: managers.urls[watcherIdx] ?? '' });
  const writeVia = new HttpStore({ server: managers.urls[(leader + 2) % 3] ?? '' });

  // A watch on Pods through a manager that stays up: every event, and the data-source pods it saw created.
  const { resourceVersion } = await watchVia.list('Pod', { namespace: NS });
  const ac = new AbortController();
  const events: { type: string; name: string; rv: number }[] = [];
  const watching = (async () => {
    for await (const ev of watchVia.watch<KubeObject>('Pod', { namespace: NS, resourceVersion, signal: ac.signal })) {
      events.push({ type: ev.type, name: ev.object.metadata.name ?? '', rv: Number(ev.object.metadata.resourceVersion) });
    }
  })();

  const acknowledged: string[] = [];
  for (let i = 0; i < IMAGES; i++) {
    const name = `fo-${i}`;
    await writeVia.create({ apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name, namespace: NS }, spec: { sourceType: 'download', sourceParameters: { url: `${webUrl}/${name}.raw` } } } as KubeObject);
    acknowledged.push(name);
  }
  await waitFor('every download in progress', async () => {
    const pods = events.filter((e) => e.type === 'ADDED' && e.name.startsWith('backing-image-ds-fo-'));
    return new Set(pods.map((p) => p.name)).size === IMAGES;
  }, 60_000);

  const killedAt = Date.now();
  await managers.stopManager(leader, 'SIGKILL');
  const next = await waitFor('a new leader', () => managers.leader(), 30_000);
  const tookOver = Date.now() - killedAt;
  assert.notEqual(next, leader);
  assert.ok(tookOver <= LEASE_MS + 5000, `the new leader took over ${tookOver} ms after the kill (lease ${LEASE_MS} ms)`);

  // One etcd member down (not the one the watch happens to use: that is etcd's choice, so any): everything goes on.
  await managers.etcd.stopMember(0, 'SIGKILL');
  for (const name of acknowledged) assert.equal((await writeVia.get('BackingImage', NS, name)).metadata.name, name);
  for (let i = 0; i < IMAGES; i++) await cluster.waitCopies(`fo-${i}`, `fo-${i} ready after the failover`, allReady(1), 120_000);
  managers.etcd.startMember(0);
  await managers.etcd.waitHealthy();
  await waitFor('the data-source pods to be gone', async () => {
    const pods = (await writeVia.list('Pod', { namespace: NS })).items;
    return !pods.some((p) => (p.metadata.name ?? '').startsWith('backing-image-ds-fo-'));
  }, 60_000);
  ac.abort();
  await watching;

  const created = events.filter((e) => e.type === 'ADDED' && e.name.startsWith('backing-image-ds-fo-')).map((e) => e.name);
  assert.deepEqual([...created].sort(), acknowledged.map((n) => `backing-image-ds-${n}`).sort(), `data-source pods created: ${created.join(', ')}`);
  for (let i = 1; i < events.length; i++) {
    assert.ok((events[i]?.rv ?? 0) > (events[i - 1]?.rv ?? 0), `watch events out of order or repeated at ${i}: ${JSON.stringify(events.slice(i - 1, i + 1))}`);
  }
}
