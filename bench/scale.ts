// Scale benchmark: the seed's scalability plan on `stratum up` — its 10 backing images, 5 StorageClasses and the
// StatefulSet of N pods × M claims — and what a user feels afterwards: create+attach of one more volume.
//
//   setup      `stratum up` in a temp dir; the seed's parrot.qcow2 stood in by a 32 MiB ext4 qcow2 on a local HTTP
//              server; the seed's 10 BackingImages applied with kubectl as written (v1beta1, URL rewritten).
//   baseline   20 volumes (32 MiB, 3 replicas, on bi-test1) created and attached one at a time through /v1 on the
//              cluster without the workload, then removed: "the same 20 on an empty cluster".
//   workload   the seed's StorageClasses and StatefulSet (replicas → --sets, the first --claims claim templates),
//              timed from apply to every pod Running; /metrics is sampled every second for the deepest work queue
//              and, after the last pod, for how long the queues took to drain.
//   ours       20 more volumes created and attached one at a time with the workload running.
//   printed    time to all Running; p50 and p99 of the 20 and their ratio to the baseline's; manager CPU seconds
//              and RSS; total RSS of every Stratum process; the deepest queue; the drain time; and the writes to
//              the 5 unused images (and their managers) after they were ready (a watch counts them).
//   cleanup    the StatefulSet, claims and volumes deleted, the cluster stopped, survivors killed by pid, the temp
//              dir removed; also after a failure.
//
//   npm run bench -- scale [--sets 25] [--claims 10] [--limit 7200]

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseAllDocuments } from 'yaml';
import { KUBECONFIG_FILE, readKubeconfig } from '../src/auth/index.js';
import { clusterProcesses, freePort, killSurvivors, memoryOf, percentile, VolumeWatch, type OsProcess } from './attach-kit.js';
import { Budget, check, Children, CLI, exec, FileServer, hasTool, interruptOnSignals, MiB, waitUntil } from './transfer-kit.js';

const NS = 'longhorn-system';
const SEED_URL = 'https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2';
const FIXTURES = resolve(CLI, '..', '..', '..', '..', 'test', 'fixtures');
const PROBES = 20;
const GOAL_P99_MS = 2000;
const GOAL_RATIO = 1.5;
const GOAL_RSS = 6 * 1024 * MiB;

interface Options {
  sets: number;
  claims: number;
  limitMs: number;
}

function parseArgs(args: string[]): Options {
  const o: Options = { sets: 25, claims: 10, limitMs: 7_200_000 };
  const int = (flag: string, v: string | undefined, max = Infinity): number => {
    if (!/^\d+$/.test(v ?? '') || Number(v) < 1 || Number(v) > max) throw new Error(`${flag} takes a whole number from 1 to ${max}, not ${JSON.stringify(v)}`);
    return Number(v);
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--sets') o.sets = int(a, args[++i]);
    else if (a === '--claims') o.claims = int(a, args[++i], 10);
    else if (a === '--limit') o.limitMs = int(a, args[++i]) * 1000;
    else throw new Error(`unknown argument ${JSON.stringify(a)}; flags: --sets N, --claims M (≤ 10), --limit SECONDS`);
  }
  return o;
}

const progress = (line: string) => process.stderr.write(`scale: ${line}\n`);
const ratio = (r: number) => (Number.isFinite(r) ? r.toFixed(2) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');

class Cluster {
  api = '';
  upPid = 0;
  readonly seen = new Map<string, OsProcess>();
  constructor(readonly dataDir: string, readonly kids: Children, readonly budget: Budget) {}

  /** The admin credential `stratum up` wrote to the cluster's kubeconfig. */
  get auth(): Record<string, string> {
    return { authorization: `Bearer ${readKubeconfig(join(this.dataDir, KUBECONFIG_FILE)).token}` };
  }

  async call<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const res = await fetch(`${this.api}${path}`, {
      method,
      signal: AbortSignal.timeout(30_000),
      headers: { ...this.auth, ...(body === undefined ? {} : { 'content-type': contentType }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Creates the objects of a YAML stream through the resource API (what `kubectl create -f` does). */
  async apply(yaml: string): Promise<void> {
    for (const doc of parseAllDocuments(yaml)) {
      const o = doc.toJS() as { apiVersion: string; kind: string; metadata: { namespace?: string } };
      const plural = `${o.kind.toLowerCase()}${o.kind.endsWith('s') ? 'es' : 's'}`.replace(/ys$/, 'ies');
      const ns = o.kind === 'StorageClass' ? '' : `/namespaces/${o.metadata.namespace ?? 'default'}`;
      const base = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
      await this.call('POST', `${base}${ns}/${plural}`, o);
    }
  }

  processes(): OsProcess[] {
    const procs = clusterProcesses(this.upPid, this.dataDir);
    for (const p of procs) this.seen.set(`${p.pid}/${p.startTime}`, p);
    return procs;
  }
}

/** Deepest work-queue depth in one /metrics reading. */
async function queueDepth(c: Cluster): Promise<number> {
  const text = await (await fetch(`${c.api}/metrics`, { headers: c.auth, signal: AbortSignal.timeout(10_000) })).text();
  let max = 0;
  for (const m of text.matchAll(/^stratum_workqueue_depth\{[^}]*\} (\d+)/gm)) max = Math.max(max, Number(m[1]));
  return max;
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  // utime + stime, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function probe(c: Cluster, watch: VolumeWatch, nodes: string[], tag: string, created: string[]): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < PROBES; i++) {
    const name = `scale-${tag}-${String(i + 1).padStart(2, '0')}`;
    const node = nodes[i % nodes.length] ?? '';
    const t0 = performance.now();
    created.push(name);
    await c.call('POST', '/v1/volumes', { name, size: String(32 * MiB), numberOfReplicas: 3, backingImage: 'bi-test1', frontend: 'blockdev' });
    await c.call('POST', `/v1/volumes/${name}?action=attach`, { hostId: node, attachedBy: 'bench-scale' });
    const signal = AbortSignal.timeout(Math.min(300_000, c.budget.left('attaching')));
    const at = await watch.until(name, (v) => v.status?.state === 'attached' && v.status.currentNodeID === node && !!v.status.endpoint, `attached on ${node}`, signal);
    ms.push(at - t0);
    progress(`${tag} ${i + 1}/${PROBES}: ${name} attached on ${node} in ${(at - t0).toFixed(0)} ms`);
  }
  return ms;
}

async function removeVolumes(c: Cluster, names: string[]): Promise<void> {
  for (const n of names) await c.call('POST', `/v1/volumes/${n}?action=detach`, {}).catch(() => undefined);
  for (const n of names) await c.call('DELETE', `/v1/volumes/${n}`).catch(() => undefined);
  await waitUntil('probe volumes deleted', c.budget, async () => {
    const vs = (await c.call<{ data: { name: string }[] }>('GET', '/v1/volumes')).data;
    return vs.some((v) => names.includes(v.name)) ? undefined : true;
  }, 500);
  names.length = 0;
}

/** The seed's StatefulSet with `sets` replicas and its first `claims` claim templates (and their mounts). */
function workload(o: Options): string {
  const docs = parseAllDocuments(readFileSync(join(FIXTURES, 'seed-scale-statefulset.yaml'), 'utf8')).map((d) => d.toJS() as Record<string, never>);
  const sts = docs.find((d) => d['kind'] === 'StatefulSet') as unknown as { spec: { replicas: number; volumeClaimTemplates: unknown[]; template: { spec: { containers: { volumeMounts: unknown[] }[] } } } };
  sts.spec.replicas = o.sets;
  sts.spec.volumeClaimTemplates = sts.spec.volumeClaimTemplates.slice(0, o.claims);
  for (const c of sts.spec.template.spec.containers) c.volumeMounts = c.volumeMounts.slice(0, o.claims);
  return docs.map((d) => JSON.stringify(d)).join('\n---\n');
}

export async function run(args: string[]): Promise<void> {
  const o = parseArgs(args);
  const missing = ['qemu-img', 'mkfs.ext4', 'truncate', 'nbdfuse', 'losetup'].filter((t) => !hasTool(t));
  if (missing.length > 0 || process.getuid?.() !== 0) {
    process.stderr.write(`scale: needs root and ${['qemu-img', 'mkfs.ext4', 'nbdfuse', 'losetup'].join(', ')}${missing.length ? ` (missing: ${missing.join(', ')})` : ''}\n`);
    process.exit(2);
  }
  const root = mkdtempSync(join(tmpdir(), 'stratum-bench-scale-'));
  const budget = new Budget(o.limitMs);
  const kids = new Children();
  const clusterKids = new Children();
  const c = new Cluster(join(root, 'cluster'), clusterKids, budget);
  const undoSignals = interruptOnSignals(budget, kids);
  const probes: string[] = [];
  let web: FileServer | undefined;
  let watch: VolumeWatch | undefined;
  let up: ReturnType<Children['spawn']> | undefined;
  let failure: unknown;
  try {
    // The image: 32 MiB of ext4 with one page, like the seed's small parrot image.
    const files = join(root, 'files');
    mkdirSync(join(files, 'content'), { recursive: true });
    writeFileSync(join(files, 'content', 'index.html'), 'parrot\n');
    check(await exec(kids, budget, 'truncate', ['-s', '32M', join(files, 'fs.raw')]), 'truncate');
    check(await exec(kids, budget, 'mkfs.ext4', ['-q', '-F', '-d', join(files, 'content'), join(files, 'fs.raw')]), 'mkfs.ext4');
    check(await exec(kids, budget, 'qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', join(files, 'fs.raw'), join(files, 'parrot.qcow2')]), 'qemu-img');
    web = await new FileServer(files).start();

    const port = await freePort();
    up = clusterKids.spawn(process.execPath, [CLI, 'up', '--data-dir', c.dataDir, '--port', String(port)], { group: true });
    let out = '';
    up.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    up.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    c.upPid = up.pid ?? 0;
    c.api = `http://127.0.0.1:${port}`;
    await waitUntil('every node Ready', budget, async () => {
      if (up?.exitCode !== null) throw new Error(`stratum up exited: ${out.slice(-2000)}`);
      return /all \d+ nodes are Ready/.test(out) ? true : undefined;
    }, 200);
    await c.call('PUT', '/v1/settings/allow-private-download-urls', { value: 'true' });
    const nodes = (await c.call<{ items: { metadata: { name: string } }[] }>('GET', `/apis/longhorn.io/v1beta2/namespaces/${NS}/nodes`)).items.map((n) => n.metadata.name).sort();

    await c.apply(readFileSync(join(FIXTURES, 'seed-backing-images.yaml'), 'utf8').replaceAll(SEED_URL, `${web.url}/parrot.qcow2`));
    const readyAt = new Map<string, number>();
    await waitUntil('the 10 backing images ready', budget, async () => {
      const bis = (await c.call<{ items: { metadata: { name: string }; status?: { diskFileStatusMap?: Record<string, { state: string }> } }[] }>('GET', `/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages`)).items;
      for (const b of bis) if (!readyAt.has(b.metadata.name) && Object.values(b.status?.diskFileStatusMap ?? {}).some((f) => f.state === 'ready')) readyAt.set(b.metadata.name, Date.now());
      return readyAt.size === 10 ? true : undefined;
    }, 500);
    // Writes to the unused images and their managers from now on (a watch, not a poll).
    const unused = ['bi-test6', 'bi-test7', 'bi-test8', 'bi-test9', 'bi-test10'];
    let unusedWrites = 0;
    const unusedWatch = new AbortController();
    const rvs = new Map<string, string>();
    const countWrites = async (path: string, match: (o: { metadata: { name: string; labels?: Record<string, string> } }) => boolean) => {
      const res = await fetch(`${c.api}${path}?watch=true`, { headers: c.auth, signal: unusedWatch.signal });
      let buf = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(chunk).toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const ev = JSON.parse(buf.slice(0, i)) as { type: string; object: { metadata: { name: string; resourceVersion: string; labels?: Record<string, string> } } };
          buf = buf.slice(i + 1);
          const key = `${path}/${ev.object.metadata.name}`;
          if (ev.type === 'ADDED') rvs.set(key, ev.object.metadata.resourceVersion);
          else if (ev.type === 'MODIFIED' && match(ev.object) && rvs.get(key) !== ev.object.metadata.resourceVersion) unusedWrites++;
        }
      }
    };
    const watches = [
      countWrites(`/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages`, (b) => unused.includes(b.metadata.name)),
      countWrites(`/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimagemanagers`, (m) => unused.some((u) => m.metadata.labels?.['longhorn.io/backing-image'] === u)),
    ].map((p) => p.catch(() => undefined));
    await new Promise((r) => setTimeout(r, 5000));
    unusedWrites = 0;

    watch = await new VolumeWatch(c.api, NS, c.auth).start();
    progress('baseline: 20 create+attach on the cluster without the workload');
    const empty = await probe(c, watch, nodes, 'empty', probes);
    await removeVolumes(c, probes);

    progress(`workload: ${o.sets} pods × ${o.claims} claims`);
    const manager = c.processes().find((p) => p.argv.includes('manager'));
    const cpu0 = manager ? cpuSeconds(manager.pid) : NaN;
    const t0 = performance.now();
    await c.apply(readFileSync(join(FIXTURES, 'seed-scale-storageclasses.yaml'), 'utf8'));
    await c.apply(workload(o));
    let deepest = 0;
    const running = await waitUntil(`all ${o.sets} pods Running`, budget, async () => {
      deepest = Math.max(deepest, await queueDepth(c));
      const pods = (await c.call<{ items: { metadata: { name: string }; status?: { phase?: string } }[] }>('GET', '/api/v1/namespaces/default/pods')).items;
      const n = pods.filter((p) => p.metadata.name.startsWith('bi-scalability-test-') && p.status?.phase === 'Running').length;
      return n === o.sets ? performance.now() : undefined;
    }, 1000);
    const allRunningS = (running - t0) / 1000;
    progress(`all ${o.sets} pods Running after ${allRunningS.toFixed(1)} s`);
    const drained = await waitUntil('work queues drained', budget, async () => {
      const d = await queueDepth(c);
      deepest = Math.max(deepest, d);
      return d === 0 ? performance.now() : undefined;
    }, 250);
    const ours = await probe(c, watch, nodes, 'loaded', probes);
    const cpu = manager ? cpuSeconds(manager.pid) - cpu0 : NaN;
    const procs = c.processes();
    const managerRss = manager ? memoryOf(procs.filter((p) => p.pid === manager.pid)).rss : NaN;
    const total = memoryOf(procs);
    unusedWatch.abort();
    await Promise.all(watches);

    console.log(`setup: ${nodes.length} nodes; ${o.sets} pods × ${o.claims} claims of 32 MiB = ${o.sets * o.claims} volumes × 3 replicas; 10 backing images (5 unused)`);
    console.log(`time to all ${o.sets} pods Running: ${allRunningS.toFixed(1)} s`);
    for (const p of [50, 99]) {
      const a = percentile(ours, p);
      const b = percentile(empty, p);
      console.log(`create+attach p${p} [ms; lower is better]: ours (with the workload) ${a.toFixed(0)} ms, baseline (empty cluster) ${b.toFixed(0)} ms, ratio ${ratio(a / b)}`);
    }
    console.log(`manager: ${cpu.toFixed(1)} CPU seconds from apply to the end, RSS ${(managerRss / MiB).toFixed(0)} MiB`);
    console.log(`all Stratum processes: ${total.processes} processes, RSS ${(total.rss / MiB).toFixed(0)} MiB`);
    console.log(`deepest work queue: ${deepest}; queues drained ${((drained - running) / 1000).toFixed(1)} s after the last pod was Running`);
    console.log(`writes to the 5 unused images and their managers after they were ready: ${unusedWrites}`);
    const p99 = percentile(ours, 99);
    console.log(`goal: p99 ≤ ${GOAL_P99_MS / 1000} s: ${verdict(p99 <= GOAL_P99_MS)} (${(p99 / 1000).toFixed(2)} s)`);
    console.log(`goal: p99 ≤ ${GOAL_RATIO}× the empty cluster: ${verdict(p99 <= GOAL_RATIO * percentile(empty, 99))} (${ratio(p99 / percentile(empty, 99))}×)`);
    console.log(`goal: total RSS ≤ 6 GiB: ${verdict(total.rss <= GOAL_RSS)} (${(total.rss / 1024 / MiB).toFixed(2)} GiB)`);
    console.log(`goal: no writes to unused images after ready: ${verdict(unusedWrites === 0)} (${unusedWrites})`);
  } catch (err) {
    failure = err;
  } finally {
    await watch?.close();
    if (c.api) {
      progress('cleanup: deleting the workload, its claims and the probe volumes');
      await c.call('DELETE', '/apis/apps/v1/namespaces/default/statefulsets/bi-scalability-test').catch(() => undefined);
      await removeVolumes(c, probes).catch(() => undefined);
      await waitUntil('the workload pods gone', new Budget(300_000), async () => ((await c.call<{ items: unknown[] }>('GET', '/api/v1/namespaces/default/pods')).items.length === 0 ? true : undefined), 1000).catch(() => undefined);
      await c.call('DELETE', '/api/v1/namespaces/default/persistentvolumeclaims').catch(() => undefined);
      await waitUntil('the volumes gone', new Budget(300_000), async () => ((await c.call<{ items: unknown[] }>('GET', `/apis/longhorn.io/v1beta2/namespaces/${NS}/volumes`)).items.length === 0 ? true : undefined), 1000).catch(() => undefined);
    }
    if (up) await clusterKids.stop(up, 180_000);
    const killed = killSurvivors([...c.seen.values(), ...(c.upPid ? clusterProcesses(c.upPid, c.dataDir) : [])]);
    if (killed > 0) progress(`cleanup: killed ${killed} process(es) left running`);
    // Mounts a killed agent left behind, lazily, so that removing the directory never reaches into a volume.
    const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(root));
    for (const m of mounts.reverse()) await exec(kids, new Budget(10_000), 'umount', ['-l', m]).catch(() => undefined);
    await kids.stopAll();
    await clusterKids.stopAll();
    await web?.close();
    undoSignals();
    rmSync(root, { recursive: true, force: true });
  }
  if (failure === undefined) return;
  process.stderr.write(`scale: failed: ${failure instanceof Error ? failure.message : String(failure)}\n`);
  process.exitCode = 1;
}
