// Attach benchmark: how create+attach latency and the cluster's memory grow with the number of attached volumes.
//
//   setup      `stratum up` (manager, three node agents, their pods) in a temp dir on a free port; a 32 MiB qcow2
//              (4 MiB of random data, made by `qemu-img convert`) served by a local HTTP server and created as a
//              backing image with `allow-private-download-urls` on and a copy on every node, so that no volume
//              waits for an image copy and the first volumes are not charged for it.
//   run        N volumes of 32 MiB on that image, R replicas each, created and attached one after another through
//              Longhorn's /v1 API (POST /v1/volumes, then ?action=attach to the nodes in turn). A volume's time runs
//              from the create request until a watch on Volumes delivers it `attached` on that node with its
//              endpoint set (what `stratum volume attach --wait` waits for); nothing polls.
//   baselines  the first 10 volumes for the last 10 (does attaching slow down as volumes pile up?), and the cluster
//              before the first volume for the cluster with N attached (memory and processes per attached volume).
//              Memory is summed over the cluster's processes, found as the process tree of `stratum up` plus
//              anything running over its data directory (so it does not matter how instances are hosted): RSS from
//              /proc/PID/status and PSS from /proc/PID/smaps_rollup (shared pages counted once).
//   cleanup    every volume detached and deleted, the cluster stopped, survivors SIGKILLed by pid and start time, the
//              temp dir removed; also after a failure or Ctrl-C (a second Ctrl-C skips to the kills).
//
//   npm run bench -- attach [--volumes 100] [--replicas 3] [--frontend nbd|blockdev] [--min-free-mib 2048] [--limit 3600]

import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { clusterProcesses, freePort, killSurvivors, memAvailable, memoryOf, percentile, processKinds, VolumeWatch, type Memory, type OsProcess, type VolumeObject } from './attach-kit.js';
import { Budget, check, Children, CLI, exec, FileServer, hasTool, interruptOnSignals, MiB, waitUntil } from './transfer-kit.js';
import { KUBECONFIG_FILE, readKubeconfig } from '../src/auth/index.js';

const NS = 'longhorn-system';
const VOLUME_SIZE = 32 * MiB;
const IMAGE = 'attach-bench';
const GOAL_P99_MS = 2000;
const GOAL_GROWTH = 1.5;
const GOAL_RSS_PER_VOLUME = 3 * MiB;
const WINDOW = 10;

interface Options {
  volumes: number;
  replicas: number;
  frontend: 'nbd' | 'blockdev';
  minFree: number;
  limitMs: number;
}

function parseArgs(args: string[]): Options {
  const o: Options = { volumes: 100, replicas: 3, frontend: 'nbd', minFree: 2048 * MiB, limitMs: 3_600_000 };
  const int = (flag: string, v: string | undefined, min = 1): number => {
    if (!/^\d+$/.test(v ?? '') || Number(v) < min) throw new Error(`${flag} takes a whole number ≥ ${min}, not ${JSON.stringify(v)}`);
    return Number(v);
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--volumes') o.volumes = int(a, args[++i]);
    else if (a === '--replicas') o.replicas = int(a, args[++i]);
    else if (a === '--min-free-mib') o.minFree = int(a, args[++i], 0) * MiB;
    else if (a === '--limit') o.limitMs = int(a, args[++i]) * 1000;
    else if (a === '--frontend') {
      const f = args[++i];
      if (f !== 'nbd' && f !== 'blockdev') throw new Error(`--frontend takes nbd or blockdev, not ${JSON.stringify(f)}`);
      o.frontend = f;
    } else throw new Error(`unknown argument ${JSON.stringify(a)}; flags: --volumes N, --replicas R, --frontend nbd|blockdev, --min-free-mib M, --limit SECONDS`);
  }
  return o;
}

const progress = (line: string) => process.stderr.write(`attach: ${line}\n`);
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const ratio = (r: number) => (Number.isFinite(r) ? r.toFixed(2) : 'n/a');

interface Sample {
  name: string;
  node: string;
  ms: number;
}

interface Run {
  o: Options;
  budget: Budget;
  /** Aborted by Ctrl-C: ends the wait for the volume in flight at once. */
  stop: AbortController;
  /** Short-lived tools (qemu-img), stopped at once on Ctrl-C. */
  tools: Children;
  /** `stratum up`, stopped by the cleanup once the volumes are gone. */
  cluster: Children;
  root: string;
  dataDir: string;
  api: string;
  upPid: number;
  /** Every cluster process seen so far (pid + start time), for the last-resort kill. */
  seen: Map<string, OsProcess>;
  created: string[];
}

/** The admin credential `stratum up` wrote for the bench's cluster. */
function auth(run: Run): Record<string, string> {
  return { authorization: `Bearer ${readKubeconfig(join(run.dataDir, KUBECONFIG_FILE)).token}` };
}

async function call<T>(run: Run, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${run.api}${path}`, {
    method,
    signal: AbortSignal.timeout(30_000),
    headers: { ...auth(run), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

function snapshot(run: Run): { procs: OsProcess[]; mem: Memory } {
  const procs = clusterProcesses(run.upPid, run.dataDir);
  for (const p of procs) run.seen.set(`${p.pid}/${p.startTime}`, p);
  return { procs, mem: memoryOf(procs) };
}

async function makeImage(run: Run): Promise<string> {
  const files = join(run.root, 'files');
  mkdirSync(files);
  const raw = join(files, 'image.raw');
  // 4 MiB of data at the start, the rest a hole: a small image that still has clusters to read.
  writeFileSync(raw, randomBytes(4 * MiB));
  check(await exec(run.tools, run.budget, 'truncate', ['-s', String(VOLUME_SIZE), raw]), 'truncate');
  check(await exec(run.tools, run.budget, 'qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, join(files, 'image.qcow2')]), 'qemu-img convert');
  rmSync(raw);
  return files;
}

async function startCluster(run: Run): Promise<{ stopCluster: () => Promise<void> }> {
  // Its own process group: a terminal's Ctrl-C reaches only this benchmark, which then cleans up in order.
  const port = await freePort();
  const up = run.cluster.spawn(process.execPath, [CLI, 'up', '--data-dir', run.dataDir, '--port', String(port)], { group: true });
  let out = '';
  up.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  up.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  run.upPid = up.pid ?? 0;
  run.api = `http://127.0.0.1:${port}`;
  const stopCluster = async () => {
    // SIGTERM: `up` stops the agents with their pods (grace periods included), then the manager.
    await run.cluster.stop(up, 120_000);
  };
  try {
    await waitUntil('stratum up to report every node Ready', run.budget, async () => {
      if (up.exitCode !== null || up.signalCode !== null) throw new Error(`stratum up exited: ${out.slice(-2000)}`);
      if (/not every node is Ready/.test(out)) throw new Error(`stratum up: ${out.slice(-2000)}`);
      return /all \d+ nodes are Ready/.test(out) ? true : undefined;
    }, 100);
  } catch (err) {
    await stopCluster();
    throw err;
  }
  return { stopCluster };
}

async function prepareImage(run: Run, url: string, nodes: number): Promise<void> {
  await call(run, 'PUT', '/v1/settings/allow-private-download-urls', { value: 'true' });
  await call(run, 'POST', '/v1/backingimages', { name: IMAGE, sourceType: 'download', parameters: { url }, minNumberOfCopies: nodes });
  await waitUntil(`a ready copy of the backing image on each of the ${nodes} nodes`, run.budget, async () => {
    const bi = await call<{ diskFileStatusMap?: Record<string, { state: string }> }>(run, 'GET', `/v1/backingimages/${IMAGE}`);
    return Object.values(bi.diskFileStatusMap ?? {}).filter((f) => f.state === 'ready').length >= nodes ? true : undefined;
  }, 250);
}

const isAttached = (node: string) => (v: VolumeObject) => v.status?.state === 'attached' && v.status.currentNodeID === node && !!v.status.endpoint;

async function attachAll(run: Run, nodes: string[], watch: VolumeWatch): Promise<Sample[]> {
  const samples: Sample[] = [];
  const tag = randomBytes(2).toString('hex');
  for (let i = 0; i < run.o.volumes; i++) {
    run.budget.left('attaching volumes');
    const free = memAvailable();
    if (free < run.o.minFree) {
      console.log(`note: stopped after ${i} volumes: MemAvailable ${mib(free)} is below --min-free-mib ${run.o.minFree / MiB}`);
      break;
    }
    // The tag keeps device names (/dev/longhorn/<volume>) apart from any other cluster on this machine.
    const name = `bench-${tag}-${String(i + 1).padStart(3, '0')}`;
    const node = nodes[i % nodes.length] ?? '';
    const t0 = performance.now();
    run.created.push(name);
    await call(run, 'POST', '/v1/volumes', { name, size: String(VOLUME_SIZE), numberOfReplicas: run.o.replicas, backingImage: IMAGE, frontend: run.o.frontend });
    await call(run, 'POST', `/v1/volumes/${name}?action=attach`, { hostId: node, attachedBy: 'bench-attach' });
    const signal = AbortSignal.any([run.stop.signal, AbortSignal.timeout(Math.min(120_000, run.budget.left('attaching')))]);
    const at = await watch.until(name, isAttached(node), `attached on ${node}`, signal);
    samples.push({ name, node, ms: at - t0 });
    progress(`${i + 1}/${run.o.volumes} ${name} attached on ${node} in ${(at - t0).toFixed(0)} ms`);
  }
  return samples;
}

/** Detach, then delete, every volume this run created; bounded, since it also runs after failures. */
async function removeVolumes(run: Run): Promise<void> {
  if (run.created.length === 0 || !run.api) return;
  const deadline = Date.now() + 180_000;
  const names = new Set(run.created);
  const list = async () => (await call<{ data: { name: string; state: string; nodeID?: string; currentNodeID?: string }[] }>(run, 'GET', '/v1/volumes')).data.filter((v) => names.has(v.name));
  const waitAll = async (what: string, done: (vs: Awaited<ReturnType<typeof list>>) => boolean) => {
    for (;;) {
      const vs = await list();
      if (done(vs)) return;
      if (Date.now() > deadline) throw new Error(`cleanup: ${vs.length} volume(s) not ${what} within 180 s`);
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  progress(`cleanup: detaching ${names.size} volume(s)`);
  for (const n of names) await call(run, 'POST', `/v1/volumes/${n}?action=detach`, {}).catch(() => undefined);
  await waitAll('detached', (vs) => vs.every((v) => !v.nodeID && !v.currentNodeID && v.state === 'detached'));
  progress(`cleanup: deleting ${names.size} volume(s)`);
  for (const n of names) await call(run, 'DELETE', `/v1/volumes/${n}`).catch(() => undefined);
  await waitAll('deleted', (vs) => vs.length === 0);
}

function report(run: Run, samples: Sample[], before: { procs: OsProcess[]; mem: Memory }, after: { procs: OsProcess[]; mem: Memory }): void {
  const n = samples.length;
  const ms = samples.map((s) => s.ms);
  const first = ms.slice(0, WINDOW);
  const last = ms.slice(-WINDOW);
  console.log(`attach ${n} volumes: p50 ${percentile(ms, 50).toFixed(0)} ms, p99 ${percentile(ms, 99).toFixed(0)} ms, max ${Math.max(...ms).toFixed(0)} ms`);
  const growth = percentile(last, 50) / percentile(first, 50);
  for (const p of [50, 99]) {
    const l = percentile(last, p);
    const f = percentile(first, p);
    console.log(`attach p${p} [ms, create request → attached on a watch; lower is better]: ours (last ${last.length}) ${l.toFixed(0)} ms, baseline (first ${first.length}) ${f.toFixed(0)} ms, ratio ${ratio(l / f)}`);
  }
  const b = before.mem;
  const a = after.mem;
  console.log(`RSS of all Stratum processes [MiB; lower is better]: ours (${n} attached) ${(a.rss / MiB).toFixed(1)} MiB, baseline (no volumes) ${(b.rss / MiB).toFixed(1)} MiB, ratio ${ratio(a.rss / b.rss)}`);
  if (a.pss !== undefined && b.pss !== undefined) {
    console.log(`PSS of all Stratum processes [MiB; lower is better]: ours (${n} attached) ${(a.pss / MiB).toFixed(1)} MiB, baseline (no volumes) ${(b.pss / MiB).toFixed(1)} MiB, ratio ${ratio(a.pss / b.pss)}`);
  } else console.log('note: /proc/PID/smaps_rollup is not readable here; no PSS figures');
  console.log(`Stratum OS processes [lower is better]: ours (${n} attached) ${a.processes}, baseline (no volumes) ${b.processes}, ratio ${ratio(a.processes / b.processes)}`);
  const perRss = n > 0 ? (a.rss - b.rss) / n : NaN;
  const perPss = n > 0 && a.pss !== undefined && b.pss !== undefined ? (a.pss - b.pss) / n : undefined;
  console.log(`per attached volume: RSS +${mib(perRss)}${perPss === undefined ? '' : `, PSS +${mib(perPss)}`}, +${((a.processes - b.processes) / Math.max(n, 1)).toFixed(2)} processes`);
  console.log(`processes before: ${processKinds(before.procs)}`);
  console.log(`processes after: ${processKinds(after.procs)}`);
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  const p99 = percentile(ms, 99);
  console.log(`goal: p99 create+attach ≤ ${GOAL_P99_MS / 1000} s over all ${n}: ${verdict(p99 <= GOAL_P99_MS)} (${(p99 / 1000).toFixed(2)} s)`);
  console.log(`goal: last-${last.length} p50 ≤ ${GOAL_GROWTH}× first-${first.length} p50: ${verdict(growth <= GOAL_GROWTH)} (${ratio(growth)}×)`);
  console.log(`goal: ≤ ${GOAL_RSS_PER_VOLUME / MiB} MiB RSS per attached volume: ${verdict(perRss <= GOAL_RSS_PER_VOLUME)} (${mib(perRss)})`);
  if (n < 2 * WINDOW) console.log(`note: with fewer than ${2 * WINDOW} volumes the first and the last ${WINDOW} overlap`);
  if (n < run.o.volumes) console.log(`note: only ${n} of ${run.o.volumes} volumes were attached; the figures are for those`);
}

export async function run(args: string[]): Promise<void> {
  const o = parseArgs(args);
  const missing = ['qemu-img', 'truncate', ...(o.frontend === 'blockdev' ? ['nbdfuse', 'losetup'] : [])].filter((t) => !hasTool(t));
  if (missing.length > 0) {
    process.stderr.write(`attach: this machine lacks ${missing.join(', ')}; install them (Debian: apt-get install qemu-utils nbdfuse) and run again\n`);
    process.exit(2);
  }
  if (o.frontend === 'blockdev' && process.getuid?.() !== 0) {
    process.stderr.write('attach: --frontend blockdev needs root (loop devices)\n');
    process.exit(2);
  }
  const root = mkdtempSync(join(tmpdir(), 'stratum-bench-attach-'));
  const run: Run = {
    o, budget: new Budget(o.limitMs), stop: new AbortController(), tools: new Children(), cluster: new Children(), root, dataDir: join(root, 'cluster'),
    api: '', upPid: 0, seen: new Map(), created: [],
  };
  // First Ctrl-C: abort the run (the wait in flight ends at once) and clean up in order. A second: kill by pid, exit.
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    run.stop.abort(new Error(`interrupted by ${sig}`));
    if (++signals < 2) return;
    process.stderr.write('attach: second signal: killing the cluster by pid\n');
    killSurvivors([...run.seen.values(), ...clusterProcesses(run.upPid, run.dataDir)]);
    try {
      rmSync(root, { recursive: true, force: true });
    } catch (err) {
      process.stderr.write(`attach: could not remove ${root}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // The budget aborts and the tools stop on the signal; `up` is stopped by the cleanup below, after the volumes.
  const undoSignals = interruptOnSignals(run.budget, run.tools);
  let web: FileServer | undefined;
  let stopCluster: (() => Promise<void>) | undefined;
  let watch: VolumeWatch | undefined;
  let failure: unknown;
  try {
    const files = await makeImage(run);
    web = await new FileServer(files).start();
    progress(`starting stratum up in ${run.dataDir}`);
    ({ stopCluster } = await startCluster(run));
    snapshot(run);
    const nodes = (await call<{ items: { metadata: { name: string } }[] }>(run, 'GET', `/apis/longhorn.io/v1beta2/namespaces/${NS}/nodes`)).items.map((n) => n.metadata.name).sort();
    progress(`cluster on ${run.api} with nodes ${nodes.join(', ')}; preparing the backing image`);
    await prepareImage(run, `${web.url}/image.qcow2`, nodes.length);
    console.log(`setup: ${nodes.length} nodes, up to ${o.volumes} volumes of ${VOLUME_SIZE / MiB} MiB with ${o.replicas} replica(s), frontend ${o.frontend}, on a ${VOLUME_SIZE / MiB} MiB qcow2 backing image with a copy on every node`);
    // Let the pods that the image brought (data source, backing-image managers) settle before the empty reading.
    await new Promise((r) => setTimeout(r, 2000));
    const before = snapshot(run);
    progress(`before: ${before.mem.processes} processes, RSS ${mib(before.mem.rss)}`);
    watch = await new VolumeWatch(run.api, NS, auth(run)).start();
    const samples = await attachAll(run, nodes, watch);
    const after = snapshot(run);
    if (samples.length === 0) throw new Error('no volume was attached');
    report(run, samples, before, after);
  } catch (err) {
    failure = err;
  } finally {
    await watch?.close();
    try {
      await removeVolumes(run);
    } catch (err) {
      progress(`cleanup: ${err instanceof Error ? err.message : String(err)}; the cluster stops anyway`);
    }
    if (stopCluster) {
      progress('cleanup: stopping the cluster');
      snapshot(run);
      await stopCluster();
    }
    const killed = killSurvivors([...run.seen.values(), ...(run.upPid ? clusterProcesses(run.upPid, run.dataDir) : [])]);
    if (killed > 0) progress(`cleanup: killed ${killed} process(es) left running`);
    if (o.frontend === 'blockdev') await unmountLeftovers(run);
    await run.tools.stopAll();
    await run.cluster.stopAll();
    await web?.close();
    undoSignals();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(root, { recursive: true, force: true });
  }
  if (failure === undefined) return;
  // One line, not a stack: an interruption or a cluster that failed is the message, and everything is cleaned up.
  process.stderr.write(`attach: ${run.stop.signal.aborted ? 'interrupted' : 'failed'}: ${failure instanceof Error ? failure.message : String(failure)}\n`);
  process.exitCode = run.stop.signal.aborted ? 130 : 1;
}

/** nbdfuse mounts of this run's volumes left by a frontend that was killed rather than stopped. */
async function unmountLeftovers(run: Run): Promise<void> {
  const ours = (m: string) => m.startsWith(run.root) || run.created.some((v) => m.split('/').includes(v));
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter(ours);
  for (const m of mounts.reverse()) {
    progress(`cleanup: unmounting ${m}`);
    await exec(run.tools, new Budget(10_000), 'umount', ['-l', m]).catch(() => undefined);
  }
}
