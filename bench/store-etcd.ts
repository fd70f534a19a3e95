// `npm run bench -- store --backend etcd [N]`: the resource store on a three-member etcd against the SQLite backend,
// side by side in one run — create, update, list and watch throughput and p99 latency (a watch event's latency is
// write start → event at an in-process watcher; its throughput is events over the time from the first create to the
// last event) — and the failover time: kill -9 of the leader manager (three managers on that
// etcd) → the new leader's first reconcile, read from its /metrics.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { KubeObject } from '../src/api/meta.js';
import { AUTH_FILE, ensureTls, issueToken, serverNames } from '../src/auth/index.js';
import { openStore, type ResourceStore } from '../src/store/index.js';
import { hasEtcd, LocalEtcd } from '../src/store/etcd/local-cluster.js';

const NS = 'longhorn-system';
const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

function bi(i: number): KubeObject {
  return {
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImage',
    metadata: { name: `bench-${i}`, namespace: NS, labels: { bench: 'store' } },
    spec: { sourceType: 'download', sourceParameters: { url: `https://example.com/image-${i}.qcow2` }, minNumberOfCopies: 1 },
  };
}

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(0.99 * xs.length))] ?? NaN;

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

interface Figures {
  create: number;
  createP99: number;
  update: number;
  updateP99: number;
  list: number;
  listP99: number;
  watch: number;
  watchP99: number;
}

async function measure(store: ResourceStore, n: number): Promise<Figures> {
  const ac = new AbortController();
  const startedAt = new Map<string, number>();
  const watchLat: number[] = [];
  const { resourceVersion } = await store.list('BackingImage', { namespace: NS });
  let seen = 0;
  let lastEventAt = 0;
  let allSeen!: () => void;
  const done = new Promise<void>((r) => (allSeen = r));
  const watcher = (async () => {
    for await (const ev of store.watch('BackingImage', { namespace: NS, resourceVersion, signal: ac.signal })) {
      const t0 = startedAt.get(ev.object.metadata.name ?? '');
      if (ev.type === 'ADDED' && t0 !== undefined) watchLat.push(performance.now() - t0);
      if (++seen >= n) {
        lastEventAt = performance.now();
        allSeen();
      }
    }
  })();
  const createLat: number[] = [];
  let start = performance.now();
  const firstCreateAt = start;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    startedAt.set(`bench-${i}`, t0);
    await store.create(bi(i));
    createLat.push(performance.now() - t0);
  }
  const create = n / ((performance.now() - start) / 1000);
  await done;
  ac.abort();
  await watcher;
  const watch = n / ((lastEventAt - firstCreateAt) / 1000);
  const updateLat: number[] = [];
  start = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await store.patch('BackingImage', NS, `bench-${i}`, 'merge', { spec: { minNumberOfCopies: 2 } });
    updateLat.push(performance.now() - t0);
  }
  const update = n / ((performance.now() - start) / 1000);
  const lists = 20;
  const listLat: number[] = [];
  start = performance.now();
  for (let i = 0; i < lists; i++) {
    const t0 = performance.now();
    await store.list('BackingImage', { namespace: NS });
    listLat.push(performance.now() - t0);
  }
  const list = (lists * n) / ((performance.now() - start) / 1000);
  return { create, createP99: p99(createLat), update, updateP99: p99(updateLat), list, listP99: p99(listLat), watch, watchP99: p99(watchLat) };
}

async function metric(url: string, name: string, auth: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: auth, signal: AbortSignal.timeout(1000) })).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}

/** kill -9 of the leader of three managers → the new leader's first reconcile (ms), and the lease it waited out. */
async function failover(etcd: LocalEtcd, dir: string): Promise<number> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  // One credentials directory for the three managers, made before they start (as `stratum up --store etcd` does).
  const creds = join(dir, 'managers');
  ensureTls(creds, serverNames());
  const auth = { authorization: `Bearer ${issueToken(join(creds, AUTH_FILE), { name: 'admin', role: 'admin' })}` };
  const procs: ChildProcess[] = ports.map((p) => spawn(process.execPath, [CLI, 'manager', '--port', String(p), '--data-dir', creds, '--etcd', etcd.endpoints.join(','), '--etcd-prefix', '/failover/'], { stdio: 'ignore' }));
  try {
    // Every manager must answer (the write below goes to another one than the leader), and one must lead.
    const leader = await poll(async () => {
      const views = await Promise.all(urls.map(async (u) => (await (await fetch(`${u}/stratum/leader`, { headers: auth })).json()) as { isLeader: boolean }));
      const i = views.findIndex((v) => v.isLeader);
      return i >= 0 ? i : undefined;
    }, 60_000);
    // Something for the next leader to reconcile.
    await fetch(`${urls[(leader + 1) % 3]}/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(bi(0)) });
    const killedAt = performance.now();
    procs[leader]?.kill('SIGKILL');
    const others = urls.filter((_, i) => i !== leader);
    await poll(async () => {
      for (const u of others) if ((await metric(u, 'stratum_controller_reconcile_total', auth).catch(() => 0)) > 0) return true;
      return undefined;
    }, 60_000, 20);
    return performance.now() - killedAt;
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
}

async function poll<T>(fn: () => Promise<T | undefined>, ms: number, every = 100): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`timed out after ${ms} ms`);
}

export async function runEtcd(args: string[]): Promise<void> {
  if (!hasEtcd()) throw new Error('the etcd benchmark needs `etcd` (Debian package etcd-server)');
  const n = Number(args[0] ?? 1000);
  const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-etcd-'));
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const etcd = new LocalEtcd({ dir, ports, token: `bench-${process.pid}` });
  try {
    await etcd.start();
    const sqlite = await openStore({ path: join(dir, 'state.db') });
    const base = await measure(sqlite.store, n);
    await sqlite.close();
    const ours = await openStore({ path: '', etcd: { endpoints: etcd.endpoints, prefix: '/bench/', compactIntervalMs: 0 } });
    const e = await measure(ours.store, n);
    await ours.close();
    const line = (what: string, a: number, b: number, unit: string) =>
      console.log(`store N=${n} ${what}: ours (etcd, 3 members) ${a.toFixed(unit === 'ms' ? 2 : 0)} ${unit}, baseline (SQLite) ${b.toFixed(unit === 'ms' ? 2 : 0)} ${unit}, ratio ${(a / b).toFixed(2)}`);
    line('create', e.create, base.create, 'writes/s');
    line('create p99', e.createP99, base.createP99, 'ms');
    line('update', e.update, base.update, 'writes/s');
    line('update p99', e.updateP99, base.updateP99, 'ms');
    line(`list (of ${n})`, e.list, base.list, 'objects/s');
    line(`list (of ${n}) p99`, e.listP99, base.listP99, 'ms');
    line('watch', e.watch, base.watch, 'events/s');
    line('watch p99', e.watchP99, base.watchP99, 'ms');
    const ms = await failover(etcd, dir);
    console.log(`failover: kill -9 of the leader → new leader's first reconcile ${ms.toFixed(0)} ms (lease 6000 ms, renew deadline 4000 ms, poll 250 ms)`);
  } finally {
    await etcd.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
