// Store benchmark: creates, updates and watches N objects through the resource store (SQLite backend, WAL,
// synchronous=FULL) and compares write throughput with raw SQLite inserts of the same rows at the same durability
// (one transaction per row) — the floor our semantics sit on. Watch latency is the time from the start of a write
// to the delivery of its event to a live watcher. `--backend etcd` compares the etcd backend with SQLite instead
// (store-etcd.ts).

import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { KubeObject } from '../src/api/meta.js';
import { startApiServer } from '../src/apiserver/server.js';
import { HttpStore } from '../src/client/http-store.js';
import { openStore } from '../src/store/index.js';

const NS = 'longhorn-system';

function bi(i: number): KubeObject {
  return {
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImage',
    metadata: { name: `bench-${i}`, namespace: NS, labels: { bench: 'store' } },
    spec: { sourceType: 'download', sourceParameters: { url: `https://example.com/image-${i}.qcow2` }, minNumberOfCopies: 1 },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function baseline(dir: string, n: number): Promise<number> {
  const db = new Database(join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE objects (key TEXT PRIMARY KEY, rev INTEGER NOT NULL, value TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO objects (key, rev, value) VALUES (?, ?, ?)');
  const start = performance.now();
  for (let i = 0; i < n; i++) insert.run(`BackingImage/${NS}/bench-${i}`, i + 1, JSON.stringify(bi(i)));
  const secs = (performance.now() - start) / 1000;
  db.close();
  return n / secs;
}

/** Create and update rates through the in-process store (what controllers in the manager see). */
async function inProcess(dir: string, n: number) {
  const { store, close } = await openStore({ path: join(dir, 'state.db') });
  let start = performance.now();
  for (let i = 0; i < n; i++) await store.create(bi(i));
  const createRate = n / ((performance.now() - start) / 1000);
  start = performance.now();
  for (let i = 0; i < n; i++) await store.patch('BackingImage', NS, `bench-${i}`, 'merge', { spec: { minNumberOfCopies: 2 } });
  const updateRate = n / ((performance.now() - start) / 1000);
  await close();
  return { createRate, updateRate };
}

/**
 * Watch latency as clients see it: writes through the HTTP API, one watch stream over HTTP (what `kubectl get -w`
 * and node agents use); latency is from the start of the write request to the event arriving at the watcher.
 */
async function overHttp(dir: string, n: number) {
  const { store, close } = await openStore({ path: join(dir, 'api.db') });
  const api = await startApiServer({ store, port: 0 });
  const client = new HttpStore({ server: api.url });
  const ac = new AbortController();
  const startedAt = new Map<string, number>();
  const latencies: number[] = [];
  let allSeen!: () => void;
  const done = new Promise<void>((r) => (allSeen = r));
  const { resourceVersion } = await client.list('BackingImage', { namespace: NS });
  const watcher = (async () => {
    for await (const ev of client.watch('BackingImage', { namespace: NS, resourceVersion, signal: ac.signal })) {
      const t0 = startedAt.get(ev.object.metadata.name ?? '');
      if (t0 !== undefined) latencies.push(performance.now() - t0);
      if (latencies.length === n) allSeen();
    }
  })();
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    startedAt.set(`bench-${i}`, performance.now());
    await client.create(bi(i));
  }
  const rate = n / ((performance.now() - start) / 1000);
  await done;
  ac.abort();
  await watcher;
  await api.close();
  await close();
  latencies.sort((a, b) => a - b);
  return { rate, p50: percentile(latencies, 50), p99: percentile(latencies, 99), events: latencies.length };
}

export async function run(argv: string[]): Promise<void> {
  const at = argv.indexOf('--backend');
  const backend = at >= 0 ? argv[at + 1] : 'sqlite';
  const args = at >= 0 ? argv.filter((_, i) => i !== at && i !== at + 1) : argv;
  if (backend === 'etcd') return (await import('./store-etcd.js')).runEtcd(args);
  if (backend !== 'sqlite') throw new Error(`--backend must be sqlite or etcd, not "${backend}"`);
  const sizes = args.length > 0 ? args.map(Number) : [1_000, 10_000];
  for (const n of sizes) {
    const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-store-'));
    try {
      const base = await baseline(dir, n);
      const r = await inProcess(dir, n);
      const h = await overHttp(dir, n);
      const fmt = (x: number) => x.toFixed(0);
      const baseText = `baseline ${fmt(base)} writes/s (raw SQLite insert, WAL, synchronous=FULL)`;
      console.log(`store N=${n} create: ours ${fmt(r.createRate)} writes/s, ${baseText}, ratio ${(r.createRate / base).toFixed(2)}`);
      console.log(`store N=${n} update: ours ${fmt(r.updateRate)} writes/s, ${baseText}, ratio ${(r.updateRate / base).toFixed(2)}`);
      console.log(`store N=${n} create via HTTP API: ours ${fmt(h.rate)} writes/s, ${baseText}, ratio ${(h.rate / base).toFixed(2)}`);
      console.log(`store N=${n} watch latency via HTTP: p50 ${h.p50.toFixed(2)} ms, p99 ${h.p99.toFixed(2)} ms over ${h.events} events (write request start → event at the watcher)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
