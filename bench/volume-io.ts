// Volume I/O benchmark: fio's nbd engine against a Stratum volume over a qcow2 backing image, and against `qemu-nbd`
// serving a qcow2 overlay on the same backing file, side by side in one run.
//
//   setup      a 1 GiB qcow2 backing image holding 512 MiB of random data (the first MiB of every 2 MiB, so reads
//              meet both allocated clusters and holes), converted from a raw file by `qemu-img convert`, then read
//              once so both sides start from a warm page cache.
//   ours       one instance-manager process per node, as in production (bench/volume-io-child.ts, not the
//              `stratum` CLI): node 0 hosts the engine and replica r0 (reached in-process) and serves the NBD export
//              on a unix socket; with 3 replicas, nodes 1 and 2 host r1 and r2, reached over their replica
//              listeners on loopback TCP. All replicas read the same backing file path (in production each disk
//              has its own copy).
//   baseline   `qemu-img create -f qcow2 -b backing.qcow2 -F qcow2 overlay.qcow2` served by `qemu-nbd -f qcow2
//              --cache=writeback --aio=threads` on a unix socket. writeback is qemu-nbd's default and the mode
//              comparable to ours: both write through the page cache and make writes durable (fdatasync) when the
//              client sends NBD_CMD_FLUSH, and neither syncs otherwise.
//   workloads  fio --ioengine=nbd over the whole 1 GiB, time based: sequential read and write with 1 MiB blocks at
//              queue depth 4, random read and write with 4 KiB blocks at queue depth 16, and random write again with
//              a flush every 32 writes (the durability path). Each workload runs on both sides back to back, the
//              order alternating, each on a fresh volume / fresh overlay and fresh processes, for 1 and 3 replicas.
//
// Every writing run starts on page-cache pages just freed (recyclePages in transfer-kit.ts): on a VM that reports
// free pages to its host, pages untouched for a while cost a host round trip on first touch, and a run with three
// replicas, which fills three files, would otherwise pay that three times over.
//
// With several replica counts it also compares each count above 1 with 1 replica (ours against ours, same run): what
// replication costs. Besides the figures it prints the CPU time the serving processes used during each run (from
// /proc/PID/stat), that time per request (at fio's rate over the whole run, ramp included), the share of the
// machine's cores left idle during the run (from /proc/stat: with 3 replicas every node's instance manager and fio
// share this machine's cores, so idle cores mean the chain of processes was waiting on itself) and their peak
// resident set (VmHWM from /proc/PID/status).
//
//   npm run bench -- volume-io [seq-read] [seq-write] [rand-read] [rand-write] [rand-write-flush]
//                              [--replicas 1,3] [--runtime 8] [--limit 900] [--cpu-prof DIR]
//
// --cpu-prof DIR writes a V8 CPU profile of every instance manager to DIR (open it in Chrome's DevTools).

import { cpus, freemem, release, tmpdir, totalmem } from 'node:os';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Budget, check, Children, cpuSeconds, exec, GiB, hasTool, interruptOnSignals, machineBusySeconds, memoryOf, MiB, recyclePages, waitUntil } from './transfer-kit.js';
import type { ChildSpec } from './volume-io-child.js';
import { clusterAuthHeaders, newSecret } from '../src/auth/index.js';

/** One cluster secret for the bench's instance managers (they require it, as in production). */
const SECRET = newSecret();

const CHILD = resolve(dirname(fileURLToPath(import.meta.url)), 'volume-io-child.js');

const VOLUME_SIZE = GiB;
/** Random data in the backing image: the first half of every 2 MiB stride. */
const STRIDE = 2 * MiB;
const EXPORT = 'vol';

interface Workload {
  key: string;
  label: string;
  rw: 'read' | 'write' | 'randread' | 'randwrite';
  bs: string;
  depth: number;
  /** fio --fsync: a flush after every N writes. */
  fsync?: number;
  random: boolean;
}

const WORKLOADS: Workload[] = [
  { key: 'seq-read', label: 'seq read 1MiB QD4', rw: 'read', bs: '1M', depth: 4, random: false },
  { key: 'seq-write', label: 'seq write 1MiB QD4', rw: 'write', bs: '1M', depth: 4, random: false },
  { key: 'rand-read', label: 'rand read 4KiB QD16', rw: 'randread', bs: '4k', depth: 16, random: true },
  { key: 'rand-write', label: 'rand write 4KiB QD16', rw: 'randwrite', bs: '4k', depth: 16, random: true },
  { key: 'rand-write-flush', label: 'rand write 4KiB QD16 + flush every 32', rw: 'randwrite', bs: '4k', depth: 16, fsync: 32, random: true },
];

interface Options {
  workloads: Workload[];
  replicas: number[];
  runtimeS: number;
  limitMs: number;
  /** Where the instance managers write V8 CPU profiles, if set. */
  cpuProfDir?: string;
}

function parseArgs(args: string[]): Options {
  const o: Options = { workloads: [], replicas: [1, 3], runtimeS: 8, limitMs: 900_000 };
  const int = (flag: string, v: string | undefined): number => {
    if (!/^\d+$/.test(v ?? '') || Number(v) < 1) throw new Error(`${flag} takes a positive whole number, not ${JSON.stringify(v)}`);
    return Number(v);
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    const w = WORKLOADS.find((x) => x.key === a);
    if (w) o.workloads.push(w);
    else if (a === '--runtime') o.runtimeS = int(a, args[++i]);
    else if (a === '--limit') o.limitMs = int(a, args[++i]) * 1000;
    else if (a === '--cpu-prof') o.cpuProfDir = resolve(args[++i] ?? '.');
    else if (a === '--replicas') o.replicas = (args[++i] ?? '').split(',').map((v) => int(a, v));
    else throw new Error(`unknown argument ${JSON.stringify(a)}; workloads: ${WORKLOADS.map((x) => x.key).join(', ')}`);
  }
  if (o.workloads.length === 0) o.workloads = [...WORKLOADS];
  return o;
}

const ratio = (r: number) => (r >= 0.1 ? r.toFixed(2) : r.toFixed(3));
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const plural = (n: number) => `${n} replica${n === 1 ? '' : 's'}`;

function figure(name: string, unit: string, ours: number, baseline: number, digits = 1, baselineName = 'qemu-nbd qcow2 overlay'): void {
  console.log(`${name}: ours ${ours.toFixed(digits)} ${unit}, baseline (${baselineName}) ${baseline.toFixed(digits)} ${unit}, ratio ${ratio(ours / baseline)}`);
}

/** One long-running child: spawned, waited for until it is ready, stopped by pid. */
class Proc {
  readonly what: string;
  readonly child: ChildProcess;
  #log = '';

  constructor(what: string, kids: Children, cmd: string, args: string[]) {
    this.what = what;
    this.child = kids.spawn(cmd, args);
    const keep = (d: Buffer) => (this.#log = (this.#log + d.toString()).slice(-20_000));
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
  }

  get log(): string {
    return this.#log.slice(-2000);
  }

  get pid(): number {
    if (this.child.pid === undefined || this.exited) throw new Error(`${this.what} is not running: ${this.log}`);
    return this.child.pid;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Waits until `ready()` returns a value; the process exiting first is an error. */
  async waitFor<T>(budget: Budget, ready: (log: string) => T | undefined): Promise<T> {
    return waitUntil(`${this.what} to be ready`, budget, async () => {
      const v = ready(this.#log);
      if (v !== undefined) return v;
      if (this.exited) throw new Error(`${this.what} exited with ${this.child.exitCode ?? this.child.signalCode}: ${this.log}`);
      return undefined;
    }, 20);
  }
}

/** A serving side of one run: its processes, the NBD URI, and how to stop it. */
interface Side {
  uri: string;
  procs: { role: string; proc: Proc }[];
  stop(): Promise<void>;
}

interface Ctx {
  o: Options;
  root: string;
  budget: Budget;
  kids: Children;
  backing: string;
  /** Peak VmHWM per "side/role", over all runs. */
  hwm: Map<string, number>;
  /** Our fio result per "workload/replicas", for the comparison of replica counts. */
  ours: Map<string, FioResult>;
  seq: number;
}

async function startIm(ctx: Ctx, what: string, spec: ChildSpec): Promise<{ proc: Proc; url: string; replicaAddress: string }> {
  const prof = ctx.o.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${ctx.o.cpuProfDir}`];
  const proc = new Proc(what, ctx.kids, process.execPath, [...prof, CHILD, JSON.stringify(spec)]);
  const [url = '', replicaAddress = ''] = await proc.waitFor(ctx.budget, (log) => /^ready (\S+) (\S+)$/m.exec(log)?.slice(1));
  return { proc, url, replicaAddress };
}

async function imCall(url: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const headers = { ...clusterAuthHeaders(SECRET), ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
  const res = await fetch(`${url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${url}${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function running(ctx: Ctx, url: string, name: string): Promise<void> {
  await waitUntil(`instance ${name} running`, ctx.budget, async () => {
    const i = await imCall(url, 'GET', `/v1/instances/${name}`);
    if (i['state'] === 'error') throw new Error(`instance ${name} failed: ${String(i['errorMsg'])}`);
    return i['state'] === 'running' ? true : undefined;
  }, 20);
}

/**
 * Ours: one instance manager per node, as in production. Replica r0 and the engine share node 0's instance manager
 * (the engine reaches r0 in-process); r1, r2 live on nodes 1 and 2 and are reached over their replica listeners.
 */
async function startOurs(ctx: Ctx, replicas: number): Promise<Side> {
  const dir = join(ctx.root, `ours-${++ctx.seq}`);
  const disk = join(dir, 'disk');
  // A registered disk holding the backing file (a link to the one file every run uses) and the replica directories.
  mkdirSync(join(disk, 'backing-images', 'backing-bench'), { recursive: true });
  writeFileSync(join(disk, 'longhorn-disk.cfg'), JSON.stringify({ diskName: 'bench', diskUUID: 'bench' }));
  symlinkSync(ctx.backing, join(disk, 'backing-images', 'backing-bench', 'backing'));
  const backing = { name: 'backing', uuid: 'bench', path: join(disk, 'backing-images', 'backing-bench', 'backing') };
  const clusterSecretFile = join(dir, 'cluster-secret');
  writeFileSync(clusterSecretFile, SECRET, { mode: 0o600 });
  const procs: Side['procs'] = [];
  const stop = async () => {
    // Node 0 first: its engine drains the NBD client and flushes the replicas on its way out.
    for (const p of procs) await ctx.kids.stop(p.proc.child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ims = await Promise.all(
      Array.from({ length: replicas }, (_, i) =>
        startIm(ctx, `instance manager n${i}`, { role: 'im', node: `n${i}`, lockDir: join(dir, `locks-${i}`), nbdSocket: join(dir, `nbd-${i}.sock`), dataRoot: disk, clusterSecretFile }),
      ),
    );
    ims.forEach((im, i) => procs.push({ role: i === 0 ? 'instance manager (engine + r0)' : 'instance manager (replica)', proc: im.proc }));
    await Promise.all(ims.map((im, i) => imCall(im.url, 'POST', '/v1/instances', { name: `r${i}`, type: 'replica', replica: { dir: join(disk, 'replicas', `r${i}`), size: VOLUME_SIZE, backing } })));
    await Promise.all(ims.map((im, i) => running(ctx, im.url, `r${i}`)));
    const engineIm = ims[0]!;
    const engine = { volume: EXPORT, size: VOLUME_SIZE, replicas: ims.map((im, i) => ({ name: `r${i}`, address: im.replicaAddress })), frontend: 'nbd' };
    await imCall(engineIm.url, 'POST', '/v1/instances', { name: 'e0', type: 'engine', engine });
    await running(ctx, engineIm.url, 'e0');
    return { uri: `nbd+unix:///${EXPORT}?socket=${join(dir, 'nbd-0.sock')}`, procs, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startBaseline(ctx: Ctx): Promise<Side> {
  const dir = join(ctx.root, `base-${++ctx.seq}`);
  mkdirSync(dir, { recursive: true });
  const overlay = join(dir, 'overlay.qcow2');
  const sock = join(dir, 'nbd.sock');
  check(await exec(ctx.kids, ctx.budget, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-b', ctx.backing, '-F', 'qcow2', overlay]), 'qemu-img create');
  const proc = new Proc('qemu-nbd', ctx.kids, 'qemu-nbd', [
    '--persistent', '--shared=4', '-f', 'qcow2', '--cache=writeback', '--aio=threads', '-x', EXPORT, '-k', sock, overlay,
  ]);
  const stop = async () => {
    await ctx.kids.stop(proc.child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await proc.waitFor(ctx.budget, () => (existsSync(sock) ? true : undefined));
  } catch (err) {
    await stop();
    throw err;
  }
  return { uri: `nbd+unix:///${EXPORT}?socket=${sock}`, procs: [{ role: 'qemu-nbd', proc }], stop };
}

interface FioResult {
  bwBytes: number;
  iops: number;
  p99Ns: number;
}

interface FioJson {
  jobs?: { error?: number; read?: FioDir; write?: FioDir }[];
}
interface FioDir {
  bw_bytes: number;
  iops: number;
  clat_ns?: { percentile?: Record<string, number> };
}

async function fio(ctx: Ctx, w: Workload, uri: string): Promise<FioResult> {
  const out = join(ctx.root, `fio-${++ctx.seq}.json`);
  const args = [
    `--name=${w.key}`, '--ioengine=nbd', `--uri=${uri}`, `--rw=${w.rw}`, `--bs=${w.bs}`, `--iodepth=${w.depth}`,
    `--size=${VOLUME_SIZE}`, '--time_based', '--ramp_time=1', `--runtime=${ctx.o.runtimeS}`,
    '--output-format=json', `--output=${out}`,
    ...(w.fsync ? [`--fsync=${w.fsync}`] : []),
  ];
  const r = await exec(ctx.kids, ctx.budget, 'fio', args);
  let json: FioJson;
  try {
    json = JSON.parse(readFileSync(out, 'utf8')) as FioJson;
  } catch {
    throw new Error(`fio ${w.key} on ${uri} exited with ${r.code} and no JSON: ${r.stderr.trim() || r.stdout.trim()}`);
  } finally {
    rmSync(out, { force: true });
  }
  const job = json.jobs?.[0];
  const d = w.rw === 'read' || w.rw === 'randread' ? job?.read : job?.write;
  if (r.code !== 0 || !job || job.error || !d || d.iops <= 0) {
    throw new Error(`fio ${w.key} on ${uri} failed (exit ${r.code}, error ${job?.error}): ${r.stderr.trim()}`);
  }
  return { bwBytes: d.bw_bytes, iops: d.iops, p99Ns: d.clat_ns?.percentile?.['99.000000'] ?? NaN };
}

interface Measured {
  fio: FioResult;
  /** CPU seconds per role during the fio run. */
  cpu: Map<string, number>;
  /** Share of the machine's cores idle during the fio run, 0..1. */
  idle: number;
}

/**
 * One workload on one freshly started side: fio, then the CPU used and the memory peaks, then stop. A writing
 * workload first recycles as many page-cache pages as its files can take (`copies` × the volume; recyclePages), so
 * every run writes into pages just freed, whatever ran before it.
 */
async function measure(ctx: Ctx, w: Workload, label: string, copies: number, start: () => Promise<Side>): Promise<Measured> {
  const side = await start();
  try {
    if (w.rw === 'write' || w.rw === 'randwrite') recyclePages(ctx.root, copies * VOLUME_SIZE);
    const before = side.procs.map((p) => cpuSeconds(p.proc.pid));
    const busy0 = machineBusySeconds();
    const t0 = performance.now();
    const result = await fio(ctx, w, side.uri);
    const idle = Math.max(0, 1 - (machineBusySeconds() - busy0) / (((performance.now() - t0) / 1000) * cpus().length));
    const cpu = new Map<string, number>();
    side.procs.forEach((p, i) => cpu.set(p.role, (cpu.get(p.role) ?? 0) + cpuSeconds(p.proc.pid) - (before[i] ?? 0)));
    for (const p of side.procs) {
      const key = `${label}/${p.role}`;
      ctx.hwm.set(key, Math.max(ctx.hwm.get(key) ?? 0, memoryOf(p.proc.pid).hwm));
    }
    return { fio: result, cpu, idle };
  } finally {
    await side.stop();
  }
}

function cpuText(m: Measured): string {
  return [...m.cpu].map(([role, s]) => `${role} ${s.toFixed(1)} s`).join(' + ');
}

/** CPU µs of the serving processes per request, at fio's rate over the whole run (ramp included). */
function cpuPerRequest(m: Measured, runS: number): string {
  const total = [...m.cpu.values()].reduce((a, b) => a + b, 0);
  return `${((total / (m.fio.iops * runS)) * 1e6).toFixed(1)} µs`;
}

function percent(x: number): string {
  return `${Math.round(x * 100)}%`;
}

async function workload(ctx: Ctx, w: Workload, replicas: number, oursFirst: boolean): Promise<void> {
  const label = plural(replicas);
  const runOurs = () => measure(ctx, w, label, replicas, () => startOurs(ctx, replicas));
  const runBase = () => measure(ctx, w, 'qemu-nbd', 1, () => startBaseline(ctx));
  let ours: Measured;
  let base: Measured;
  if (oursFirst) {
    ours = await runOurs();
    base = await runBase();
  } else {
    base = await runBase();
    ours = await runOurs();
  }
  ctx.ours.set(`${w.key}/${replicas}`, ours.fio);
  const name = `${w.label}, ${label}`;
  if (w.random) {
    figure(`${name} [IOPS]`, 'IOPS', ours.fio.iops, base.fio.iops, 0);
    figure(`${name} [p99 completion latency; lower is better]`, 'ms', ours.fio.p99Ns / 1e6, base.fio.p99Ns / 1e6, 2);
  } else {
    figure(`${name} [MiB/s]`, 'MiB/s', ours.fio.bwBytes / MiB, base.fio.bwBytes / MiB, 0);
  }
  const runS = ctx.o.runtimeS + 1;
  console.log(`cpu: ${name}, ${oursFirst ? 'ours ran first' : 'baseline ran first'}: ours ${cpuText(ours)}, baseline ${cpuText(base)} (CPU s during the ${runS} s fio run)`);
  console.log(
    `cpu per request: ${name}: ours ${cpuPerRequest(ours, runS)}, baseline ${cpuPerRequest(base, runS)}; ` +
      `machine cores idle during the run: ours ${percent(ours.idle)}, baseline ${percent(base.idle)}`,
  );
}

/** A raw image of random data in the first half of every stride, converted to qcow2; then read once into the cache. */
async function makeBacking(ctx: Ctx): Promise<string> {
  const raw = join(ctx.root, 'backing.raw');
  const qcow = join(ctx.root, 'backing.qcow2');
  const t0 = performance.now();
  const fd = openSync(raw, 'w');
  try {
    const buf = Buffer.alloc(MiB);
    for (let off = 0; off < VOLUME_SIZE; off += STRIDE) {
      ctx.budget.left('writing the backing image');
      randomFillSync(buf);
      writeSync(fd, buf, 0, buf.length, off);
    }
    // Sized to the whole volume: the last stride's hole is part of the image.
    writeSync(fd, Buffer.alloc(1), 0, 1, VOLUME_SIZE - 1);
  } finally {
    closeSync(fd);
  }
  check(await exec(ctx.kids, ctx.budget, 'qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow]), 'qemu-img convert');
  rmSync(raw);
  const info = JSON.parse(check(await exec(ctx.kids, ctx.budget, 'qemu-img', ['info', '--output=json', qcow]), 'qemu-img info').stdout) as {
    'virtual-size': number;
    'actual-size': number;
    'cluster-size': number;
  };
  const r = openSync(qcow, 'r');
  try {
    const buf = Buffer.alloc(8 * MiB);
    while (readSync(r, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(r);
  }
  console.log(
    `setup: backing image qcow2 ${info['virtual-size'] / GiB} GiB virtual, ${mib(info['actual-size'])} on disk, ` +
      `${info['cluster-size'] / 1024} KiB clusters, random data in the first 1 MiB of every 2 MiB; made and cached in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return qcow;
}

/** Once: the Stratum volume must read exactly what the backing image holds, or the figures mean nothing. */
async function verify(ctx: Ctx): Promise<void> {
  const side = await startOurs(ctx, 1);
  try {
    const r = await exec(ctx.kids, ctx.budget, 'qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'qcow2', side.uri, ctx.backing]);
    if (r.code !== 0) throw new Error(`a fresh Stratum volume does not read as its backing image (qemu-img compare exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    console.log(`check: a fresh 1-replica Stratum volume reads the same bytes as the backing image (qemu-img compare, ${(r.ms / 1000).toFixed(1)} s)`);
  } finally {
    await side.stop();
  }
}

function missingTools(): string[] {
  const missing = ['fio', 'qemu-nbd', 'qemu-img'].filter((t) => !hasTool(t));
  if (!missing.includes('fio')) {
    const help = spawnSync('fio', ['--enghelp'], { encoding: 'utf8' });
    if (!/^\s*nbd\s*$/m.test(`${help.stdout}`)) missing.push("fio's nbd engine (fio --enghelp does not list nbd; fio needs libnbd)");
  }
  return missing;
}

async function header(ctx: Ctx): Promise<void> {
  const { o, kids, budget, root } = ctx;
  const cpu = cpus();
  const fs = await exec(kids, budget, 'stat', ['-f', '-c', '%T', root]);
  const fioV = (await exec(kids, budget, 'fio', ['--version'])).stdout.trim();
  const qemuV = (await exec(kids, budget, 'qemu-nbd', ['--version'])).stdout.split('\n')[0]?.trim() ?? '';
  console.log(
    `volume-io: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), ${Math.round(totalmem() / GiB)} GiB RAM ` +
      `(${(freemem() / GiB).toFixed(1)} GiB free), Node ${process.version}, Linux ${release()}, temp dir on ${fs.code === 0 ? fs.stdout.trim() : 'unknown fs'}, ${fioV}, ${qemuV}`,
  );
  console.log(
    `setup: fio --ioengine=nbd over the whole ${VOLUME_SIZE / GiB} GiB, ${o.runtimeS} s per run after 1 s ramp, fresh volume/overlay and processes per run; ` +
      `ours: one instance manager per node (engine + r0 in-process on node 0, NBD on a unix socket; r1, r2 over loopback TCP), all replicas over the same backing file ` +
      `(in production each disk has its own copy), 4 KiB replica blocks; baseline: qemu-nbd -f qcow2 --cache=writeback --aio=threads ` +
      `on a unix socket serving a fresh qcow2 overlay (64 KiB clusters) of the same backing file; both sides write through the page cache and fdatasync only on NBD flush`,
  );
}

/** What more replicas cost: each workload with N replicas against the same workload with 1, both ours, same run. */
function replicaCost(ctx: Ctx): void {
  if (!ctx.o.replicas.includes(1)) return;
  for (const replicas of ctx.o.replicas.filter((n) => n > 1)) {
    for (const w of ctx.o.workloads) {
      const one = ctx.ours.get(`${w.key}/1`);
      const many = ctx.ours.get(`${w.key}/${replicas}`);
      if (!one || !many) continue;
      const name = `${w.label}, ${plural(replicas)} vs 1 replica`;
      if (w.random) figure(`${name} [IOPS]`, 'IOPS', many.iops, one.iops, 0, 'Stratum, 1 replica');
      else figure(`${name} [MiB/s]`, 'MiB/s', many.bwBytes / MiB, one.bwBytes / MiB, 0, 'Stratum, 1 replica');
    }
  }
}

export async function run(args: string[]): Promise<void> {
  const o = parseArgs(args);
  const missing = missingTools();
  if (missing.length > 0) {
    process.stderr.write(`volume-io: this machine lacks ${missing.join(', ')}; install them (Debian: apt-get install fio qemu-utils) and run again\n`);
    process.exitCode = 1;
    return;
  }
  const budget = new Budget(o.limitMs);
  const kids = new Children();
  const root = mkdtempSync(join(tmpdir(), 'stratum-bench-volume-io-'));
  // Ctrl-C or a kill reaches the cleanup below: every wait throws and every child of this run is stopped.
  const undoSignals = interruptOnSignals(budget, kids);
  try {
    const ctx: Ctx = { o, root, budget, kids, backing: '', hwm: new Map(), ours: new Map(), seq: 0 };
    await header(ctx);
    ctx.backing = await makeBacking(ctx);
    await verify(ctx);
    let k = 0;
    for (const replicas of o.replicas) {
      for (const w of o.workloads) {
        await workload(ctx, w, replicas, k++ % 2 === 0);
      }
    }
    replicaCost(ctx);
    const base = ctx.hwm.get('qemu-nbd/qemu-nbd') ?? NaN;
    for (const replicas of o.replicas) {
      const label = plural(replicas);
      const node0 = ctx.hwm.get(`${label}/instance manager (engine + r0)`) ?? NaN;
      const others = replicas > 1 ? (ctx.hwm.get(`${label}/instance manager (replica)`) ?? NaN) : 0;
      console.log(`rss: ${label}: node 0's instance manager (engine + r0) peak ${mib(node0)}${replicas > 1 ? `, each other node's (one replica) up to ${mib(others)}` : ''}; qemu-nbd peak ${mib(base)} (VmHWM, highest over the runs)`);
      figure(`peak RSS of the instance managers serving the volume, ${label} [MiB; lower is better]`, 'MiB', (node0 + (replicas - 1) * others) / MiB, base / MiB);
    }
  } finally {
    undoSignals();
    await kids.stopAll();
    rmSync(root, { recursive: true, force: true });
  }
}
