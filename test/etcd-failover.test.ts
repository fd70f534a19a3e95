// End-to-end on three managers sharing a three-member etcd, one scenario in steps:
//   1. kill -9 of the leader while backing images are being downloaded (from a deliberately slow server) and
//      volumes are being attached: the new leader's first reconcile comes within 5 s of the moment etcd dropped
//      the old leader's lease (observed in etcd, not guessed from the kill: etcd extends every lease when its own
//      leader changes, which a loaded machine can cause at any time);
//   2. kill -9 of one etcd member: everything goes on; the downloads and the attaches finish;
//   3. kill -9 of two members: writes are refused with 503 naming the lost quorum, reads answer with a warning
//      that they may be stale; with the members back, writes resume and nothing acknowledged is lost;
// and, held through all of it (through a manager that stays up), watches on Pods and Replicas that see every
// event once, in order, up to each object's last version; no data-source pod or replica is created twice, and
// no replica is started twice.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { imPodName } from '../src/api/labels.js';
import type { KubeObject } from '../src/api/meta.js';
import type { Pod } from '../src/api/pod.js';
import { podEndpoint } from '../src/api/pods.js';
import { AUTH_FILE, clusterAuthHeaders, ensureAuthFile } from '../src/auth/index.js';
import { HttpStore } from '../src/client/http-store.js';
import { authFor, tokenFor } from './helpers/credentials.js';
import { skipEtcd } from './helpers/etcd-managers.js';
import { allReady, LifecycleCluster } from './helpers/lifecycle.js';
import { waitFor } from './helpers/processes.js';
import { NS, Volumes } from './helpers/volumes.js';

process.env['STRATUM_TEST_STORE'] = 'etcd';
const IMAGES = 4;
const VOLUMES = ['fo-vol-a', 'fo-vol-b'];
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

test('kill -9 of the leader during downloads and attaches, then of one and of two etcd members: a new leader within 5 s of the lease expiry, 503 and stale reads without quorum, nothing lost, nothing started twice, ordered watches', { skip: skipEtcd, timeout: 420_000 }, async (t) => {
  assert.ok(cluster);
  const managers = cluster.manager.etcd;
  assert.ok(managers?.etcd);
  const etcd = new Etcd3({ hosts: managers.etcd.endpoints });
  try {
    await scenario(cluster, managers, etcd, (line) => t.diagnostic(line));
  } catch (err) {
    const running = managers.managers.map((_, i) => `manager ${i}: ${managers.running(i) ? 'running' : 'down'}`).join(', ');
    const views = await replicaViews(cluster).catch((e: unknown) => `(could not read them: ${(e as Error).message})`);
    throw new Error(`${(err as Error).message}\n${running}\n--- replicas: Replica status / InstanceManager status / the instance manager's own list:\n${views}\n--- manager logs (tail):\n${managers.log.slice(-6000)}`, { cause: err });
  } finally {
    etcd.close();
  }
});

/**
 * Each replica as three parties see it: its Replica status, the InstanceManager status the manager keeps from the
 * instance manager's stream, and what that instance manager itself answers (GET /v1/instances).
 */
async function replicaViews(cluster: LifecycleCluster): Promise<string> {
  const url = managersUp(cluster);
  const store = new HttpStore({ server: url, token: tokenFor(url) });
  type Proc = { status?: { state?: string } };
  type Im = KubeObject & { spec?: { nodeID?: string }; status?: { currentState?: string; instanceReplicas?: Record<string, Proc> } };
  type Rep = KubeObject & { spec?: { nodeID?: string }; status?: { currentState?: string; instanceManagerName?: string; conditions?: { type: string; message?: string }[] } };
  const ims = (await store.list<Im>('InstanceManager', { namespace: NS })).items;
  const pods = (await store.list<Pod>('Pod', { namespace: NS })).items;
  const auth = clusterAuthHeaders(ensureAuthFile(join(cluster.manager.dataDir, AUTH_FILE)).clusterSecret);
  const reported = new Map<string, Map<string, string>>();
  for (const im of ims) {
    const ep = podEndpoint(pods.find((p) => p.metadata.name === imPodName(im.metadata.name ?? '')));
    const seen = new Map<string, string>();
    try {
      const r = (await (await fetch(`${ep}/v1/instances`, { headers: auth, signal: AbortSignal.timeout(3000) })).json()) as { instances?: { name: string; state: string }[] };
      for (const i of r.instances ?? []) seen.set(i.name, i.state);
    } catch (e) {
      seen.set('*', `unreachable at ${ep}: ${(e as Error).message}`);
    }
    reported.set(im.metadata.name ?? '', seen);
  }
  const lines: string[] = [];
  for (const r of (await store.list<Rep>('Replica', { namespace: NS })).items) {
    const name = r.metadata.name ?? '';
    const im = ims.find((m) => m.metadata.name === r.status?.instanceManagerName) ?? ims.find((m) => m.spec?.nodeID === r.spec?.nodeID);
    const own = reported.get(im?.metadata.name ?? '');
    const msg = r.status?.conditions?.find((c) => c.type === 'InstanceReady')?.message ?? '';
    lines.push(`${name} on ${r.spec?.nodeID}: Replica ${r.status?.currentState}${msg ? ` (${msg})` : ''}; ${im?.metadata.name} (${im?.status?.currentState}) status ${im?.status?.instanceReplicas?.[name]?.status?.state ?? 'absent'}; the instance manager reports ${own?.get(name) ?? own?.get('*') ?? 'absent'}`);
  }
  return lines.join('\n');
}

function managersUp(cluster: LifecycleCluster): string {
  const m = cluster.manager.etcd;
  const i = m?.managers.findIndex((_, k) => m.running(k)) ?? -1;
  return m?.urls[i] ?? cluster.url;
}

interface Seen {
  type: string;
  name: string;
  rv: number;
  state: string | undefined;
}

/** Holds a watch on `kind` until `signal` aborts, from the list's resourceVersion; every event in `events`. */
async function hold(store: HttpStore, kind: string, signal: AbortSignal): Promise<{ events: Seen[]; done: Promise<void> }> {
  const { resourceVersion } = await store.list(kind, { namespace: NS });
  const events: Seen[] = [];
  const done = (async () => {
    for await (const ev of store.watch<KubeObject & { status?: { currentState?: string } }>(kind, { namespace: NS, resourceVersion, signal })) {
      events.push({ type: ev.type, name: ev.object.metadata.name ?? '', rv: Number(ev.object.metadata.resourceVersion), state: ev.object.status?.currentState });
    }
  })();
  return { events, done };
}

async function reconciles(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: authFor(url), signal: AbortSignal.timeout(2000) })).text();
  let sum = 0;
  for (const m of text.matchAll(/^stratum_controller_reconcile_total(?:\{[^}]*\})? (\d+)/gm)) sum += Number(m[1]);
  return sum;
}

async function scenario(cluster: LifecycleCluster, managers: NonNullable<LifecycleCluster['manager']['etcd']>, etcd: Etcd3, note: (line: string) => void): Promise<void> {
  const leader = await waitFor('a leader', () => managers.leader(), 30_000);
  const [watchIdx = 0, writeIdx = 0] = [0, 1, 2].filter((i) => i !== leader);
  const watchVia = new HttpStore({ server: managers.urls[watchIdx] ?? '', token: tokenFor(managers.urls[watchIdx] ?? '') });

  const ac = new AbortController();
  const pods = await hold(watchVia, 'Pod', ac.signal);
  const replicas = await hold(watchVia, 'Replica', ac.signal);
  try {
    await steps(cluster, managers, etcd, note, { leader, watchIdx, writeIdx, pods, replicas });
    ac.abort();
    await Promise.all([pods.done, replicas.done]);
  } finally {
    // On a failure, the watches must not outlive the test (they would break when the cluster stops).
    ac.abort();
    await Promise.allSettled([pods.done, replicas.done]);
  }
  for (const [kind, w] of [['Pod', pods], ['Replica', replicas]] as const) {
    for (let i = 1; i < w.events.length; i++) {
      assert.ok((w.events[i]?.rv ?? 0) > (w.events[i - 1]?.rv ?? 0), `${kind} watch events out of order or repeated at ${i}: ${JSON.stringify(w.events.slice(i - 1, i + 1))}`);
    }
  }
  const dsCreated = pods.events.filter((e) => e.type === 'ADDED' && /^backing-image-ds-fo-\d+$/.test(e.name)).map((e) => e.name);
  assert.deepEqual([...dsCreated].sort(), Array.from({ length: IMAGES }, (_, i) => `backing-image-ds-fo-${i}`), `data-source pods created: ${dsCreated.join(', ')}`);
  const replicaNames = replicas.events.filter((e) => e.type === 'ADDED').map((e) => e.name);
  assert.equal(replicaNames.length, 3 * VOLUMES.length, `replicas created: ${replicaNames.join(', ')}`);
  assert.equal(new Set(replicaNames).size, replicaNames.length);
  for (const name of replicaNames) {
    const states = replicas.events.filter((e) => e.name === name).map((e) => e.state ?? '');
    const starts = states.filter((s, i) => s === 'running' && states[i - 1] !== 'running').length;
    assert.equal(starts, 1, `replica ${name} went to running ${starts} times: ${states.join(' → ')}`);
  }
  note(`watches: ${pods.events.length} Pod and ${replicas.events.length} Replica events, in order, each once`);
}

interface Held {
  events: Seen[];
  done: Promise<void>;
}

async function steps(
  cluster: LifecycleCluster,
  managers: NonNullable<LifecycleCluster['manager']['etcd']>,
  etcd: Etcd3,
  note: (line: string) => void,
  w: { leader: number; watchIdx: number; writeIdx: number; pods: Held; replicas: Held },
): Promise<void> {
  const members = managers.etcd;
  assert.ok(members);
  const { leader, watchIdx, writeIdx, pods, replicas } = w;
  const writeVia = new HttpStore({ server: managers.urls[writeIdx] ?? '', token: tokenFor(managers.urls[writeIdx] ?? '') });
  const writeUrl = managers.urls[writeIdx] ?? '';
  const vols = new Volumes(writeUrl);

  const acknowledged: string[] = [];
  for (let i = 0; i < IMAGES; i++) {
    const name = `fo-${i}`;
    await writeVia.create({ apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name, namespace: NS }, spec: { sourceType: 'download', sourceParameters: { url: `${webUrl}/${name}.raw` } } } as KubeObject);
    acknowledged.push(name);
  }
  for (const v of VOLUMES) assert.equal((await vols.create(v, { size: String(16 * 1024 * 1024), numberOfReplicas: 3, frontend: 'nbd' })).status, 201);
  await waitFor('every download in progress', async () => {
    const started = pods.events.filter((e) => e.type === 'ADDED' && e.name.startsWith('backing-image-ds-fo-'));
    return new Set(started.map((p) => p.name)).size === IMAGES;
  }, 60_000);
  const nodeOf = (i: number) => cluster.nodes[i % cluster.nodes.length] ?? '';
  for (const [i, v] of VOLUMES.entries()) await vols.setNode(v, nodeOf(i));
  // Killed while the attaches are under way: their replicas exist, the volumes are not attached yet.
  await waitFor('the replicas of every volume', async () => replicas.events.filter((e) => e.type === 'ADDED').length >= 3 * VOLUMES.length, 60_000);

  // 1. kill -9 of the leader.
  const leaderKey = (await etcd.get('/stratum/leader').exec()).kvs[0];
  assert.ok(leaderKey, 'the leader key is in etcd');
  const survivors = [watchIdx, writeIdx].map((i) => managers.urls[i] ?? '');
  const before = await Promise.all(survivors.map(reconciles));
  const killedAt = Date.now();
  await managers.stopManager(leader, 'SIGKILL');
  const [leaseGoneAt, firstReconcileAt] = await Promise.all([
    waitFor('the old leader\'s lease to expire in etcd', async () => {
      const r = await etcd.leaseClient.leaseTimeToLive({ ID: leaderKey.lease });
      return Number(r.TTL) <= 0 ? Date.now() : undefined;
    }, 60_000),
    waitFor('a reconcile by a new leader', async () => {
      const now = await Promise.all(survivors.map((u) => reconciles(u).catch(() => 0)));
      return now.some((n, i) => n > (before[i] ?? 0)) ? Date.now() : undefined;
    }, 60_000),
  ]);
  note(`kill -9 of the leader: its lease expired in etcd ${leaseGoneAt - killedAt} ms after the kill; the new leader reconciled ${firstReconcileAt - leaseGoneAt} ms after that`);
  assert.ok(firstReconcileAt - leaseGoneAt <= 5000, `the new leader reconciled ${firstReconcileAt - leaseGoneAt} ms after the old lease expired`);
  const next = await waitFor('a new leader', () => managers.leader(), 30_000);
  assert.notEqual(next, leader);

  // 2. One etcd member down: everything goes on.
  await members.stopMember(0, 'SIGKILL');
  for (const name of acknowledged) assert.equal((await writeVia.get('BackingImage', NS, name)).metadata.name, name);
  for (let i = 0; i < IMAGES; i++) await cluster.waitCopies(`fo-${i}`, `fo-${i} ready with one etcd member down`, allReady(1), 120_000);
  for (const [i, v] of VOLUMES.entries()) {
    await vols.waitVolume(v, `${v} attached with one etcd member down`, (x) => x.status?.state === 'attached' && x.status.currentNodeID === nodeOf(i), 120_000);
  }
  members.startMember(0);
  await members.waitHealthy({ member: 0, timeoutMs: 60_000 });

  // 3. Two members down: no quorum.
  await Promise.all([members.stopMember(1, 'SIGKILL'), members.stopMember(2, 'SIGKILL')]);
  const base = `${writeUrl}/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages`;
  const late = { apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name: 'fo-late', namespace: NS }, spec: { sourceType: 'download', sourceParameters: { url: `${webUrl}/fo-late.raw` } } };
  const refused = await fetch(base, { method: 'POST', headers: { ...authFor(writeUrl), 'content-type': 'application/json' }, body: JSON.stringify(late) });
  const refusal = (await refused.json()) as { reason?: string; message?: string };
  note(`without quorum, a write: ${refused.status} ${refusal.reason}: ${refusal.message}`);
  assert.equal(refused.status, 503);
  assert.equal(refusal.reason, 'ServiceUnavailable');
  assert.match(refusal.message ?? '', /no quorum/);
  const read = await fetch(`${base}/fo-0`, { headers: authFor(writeUrl) });
  note(`without quorum, a read: ${read.status}, Warning: ${read.headers.get('warning')}${read.ok ? '' : ` ${await read.text()}`}`);
  assert.equal(read.status, 200);
  assert.match(read.headers.get('warning') ?? '', /may be stale/);
  members.startMember(1);
  members.startMember(2);
  await members.waitHealthy({ timeoutMs: 60_000 });
  // 409: the refused write was taken after all (a write that timed out without quorum has an unknown outcome).
  const again = await waitFor('a write accepted again', async () => {
    const st = (await fetch(base, { method: 'POST', headers: { ...authFor(writeUrl), 'content-type': 'application/json' }, body: JSON.stringify(late) })).status;
    return st === 201 || st === 409 ? st : undefined;
  }, 60_000);
  note(`with two members back, the same write: ${again}`);
  acknowledged.push('fo-late');
  const fresh = await fetch(`${base}/fo-0`, { headers: authFor(writeUrl) });
  assert.equal(fresh.headers.get('warning'), null, 'reads are fresh again with quorum');
  for (const name of acknowledged) assert.equal((await writeVia.get('BackingImage', NS, name)).metadata.name, name);
  await waitFor('a leader again', () => managers.leader(), 60_000);
  for (const [i, v] of VOLUMES.entries()) {
    await vols.waitVolume(v, `${v} attached after quorum came back`, (x) => x.status?.state === 'attached' && x.status.currentNodeID === nodeOf(i), 120_000);
  }
  await waitFor('the data-source pods of the first images to be gone', async () => {
    const items = (await writeVia.list('Pod', { namespace: NS })).items;
    return !items.some((p) => /^backing-image-ds-fo-\d+$/.test(p.metadata.name ?? ''));
  }, 120_000);

  // The watches saw every object up to its last version, each event once, in order.
  await waitFor('the watches to reach every replica\'s last version', async () => {
    const last = new Map(replicas.events.map((e) => [e.name, e.rv]));
    const items = (await writeVia.list('Replica', { namespace: NS })).items;
    return items.length > 0 && items.every((r) => last.get(r.metadata.name ?? '') === Number(r.metadata.resourceVersion));
  }, 60_000);
}
