// Image-transfer benchmark: moving a backing image's bytes, ours against the plain tools a person would use instead,
// side by side in one run on the same disk, the same loopback network and the same page cache.
//
//   download   `stratum data-source --source-type download --checksum` of a 2 GiB random file from a local web
//              server, timed from process start to `ready-for-transfer`, against `curl | tee FILE | sha512sum`
//              from the same server. The baseline also gets an fsync of its copy, because `ready-for-transfer`
//              means fsynced: without it the baseline would be timed against the page cache, not the disk.
//   peer-sync  the same file from one `stratum bim` to a fresh one on another disk, fsync before `ready`, against
//              `curl -o FILE` of the sender's own download endpoint plus fsync (the plain HTTP copy), and that copy
//              followed by `sha512sum` (the same guarantee ours gives). Ours twice: as the controller asks for it, with
//              the image's manifest anchor (each chunk read back and checked against the data source's manifest on a
//              second thread; the bench computes the anchor from the origin file, as the data source does), and
//              without one (the whole-file SHA-512 on a second thread while chunks arrive). The sender's chunk
//              manifest is computed before the clock starts: it is made once per file and cached, and is reported on
//              its own line. Ours is timed from the sync request to the `ready` event on the receiver's watch stream
//              (not polled: polling cost the measured side CPU). A `cpu:` line gives the median CPU seconds per run
//              of the sender, the receiver and the whole machine (curl and the kernel's share included), from
//              /proc: on a 2-core host sender, receiver and hashing compete for the same cores, so CPU per byte
//              decides the rate.
//   sparse-sync a 4 GiB raw image holding 256 MiB of data, downloaded by a data source and taken over by a manager
//              (the first copy), then synced to another manager, against `curl -o` of the whole download: bytes
//              sent (the sender's /v1/stats), wall time and the allocated size of the first and the synced copy.
//
// Download and peer-sync time each side `--rounds` times (default 3), alternating, and report medians with every
// run listed: single runs on a shared VM vary by a third. Every timed copy starts right after a scratch file of the
// same size was written and deleted on its disk (recyclePages): on a VM with free-page reporting, pages not touched
// for a while cost a trip to the host on first touch, which otherwise favours whichever side runs second.
//
// Every receiving process (and the sender, restarted over its disk) is fresh per round, so its VmHWM from
// /proc/PID/status is that round's peak resident set. Sources are always served from the page cache (they were just
// written and hashed), so both sides read them at the same cost.
//
//   npm run bench -- image-transfer [download] [peer-sync] [sparse-sync] [--size 2G] [--sparse-size 4G] [--rounds 3] [--limit 600]
//                                          [--cpu-prof DIR]
//
// --cpu-prof DIR writes a V8 CPU profile of every Stratum process to DIR (open it in Chrome's DevTools).

import { cpus, freemem, release, tmpdir, totalmem } from 'node:os';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ManifestBuilder, manifestDigest } from '../src/bim/manifest.js';
import {
  allocatedBytes,
  BENCH_AUTH,
  Budget,
  check,
  Children,
  cpuSeconds,
  CURL_AUTH,
  exec,
  FileServer,
  fsyncFile,
  GiB,
  hasTool,
  interruptOnSignals,
  machineBusySeconds,
  median,
  memoryOf,
  MiB,
  profileServices,
  recyclePages,
  Service,
  startBim,
  waitUntil,
} from './transfer-kit.js';

const PHASES = ['download', 'peer-sync', 'sparse-sync'] as const;
type Phase = (typeof PHASES)[number];

/** Tools each phase runs besides our own processes (coreutils `head`, `tee`, `du` are taken as given). */
const NEEDS: Record<Phase, string[]> = {
  download: ['curl', 'sha512sum'],
  'peer-sync': ['curl', 'sha512sum'],
  'sparse-sync': ['curl', 'qemu-img', 'dd'],
};

const CHUNK = 4 * MiB;

interface Options {
  phases: Phase[];
  size: number;
  sparseSize: number;
  limitMs: number;
  /** Timed runs of each side of the download and peer-sync comparisons (medians are reported). */
  rounds: number;
}

function parseSize(flag: string, v: string | undefined): number {
  const m = /^(\d+)([KMG]?)$/i.exec(v ?? '');
  if (!m) throw new Error(`${flag} takes a size such as 512M or 2G, not ${JSON.stringify(v)}`);
  return Number(m[1]) * ({ '': 1, K: 1024, M: MiB, G: GiB }[(m[2] ?? '').toUpperCase()] ?? 1);
}

function parseArgs(args: string[]): Options {
  const o: Options = { phases: [], size: 2 * GiB, sparseSize: 4 * GiB, limitMs: 600_000, rounds: 3 };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--size') o.size = parseSize(a, args[++i]);
    else if (a === '--sparse-size') o.sparseSize = parseSize(a, args[++i]);
    else if (a === '--limit') o.limitMs = parseSize(a, args[++i]) * 1000;
    else if (a === '--cpu-prof') profileServices(resolve(args[++i] ?? '.'));
    else if (a === '--rounds') o.rounds = Math.max(1, Math.floor(Number(args[++i])) || 0);
    else if ((PHASES as readonly string[]).includes(a)) o.phases.push(a as Phase);
    else throw new Error(`unknown argument ${JSON.stringify(a)}; phases: ${PHASES.join(', ')}`);
  }
  if (o.phases.length === 0) o.phases = [...PHASES];
  if (o.size < CHUNK) throw new Error('--size must be at least 4M');
  // 16 runs of sparseSize/256 bytes written by dd in 1 MiB blocks, each 3 MiB into its sixteenth of the file.
  if (o.sparseSize < 256 * MiB || o.sparseSize % (256 * MiB) !== 0) throw new Error('--sparse-size must be a multiple of 256M');
  return o;
}

const gib = (n: number) => (n >= GiB && n % GiB === 0 ? `${n / GiB} GiB` : `${(n / MiB).toFixed(0)} MiB`);
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);
const ratio = (r: number) => (r >= 0.1 ? r.toFixed(2) : r.toFixed(3));

function figure(name: string, unit: string, ours: number, baseline: number, digits = 1): void {
  console.log(`${name}: ours ${ours.toFixed(digits)} ${unit}, baseline ${baseline.toFixed(digits)} ${unit}, ratio ${ratio(ours / baseline)}`);
}

function rss(phase: string, who: string, pid: number): void {
  console.log(`rss: ${phase} ${who} peak ${mib(memoryOf(pid).hwm)}`);
}

interface DsFile {
  state: string;
  message: string;
  filePath: string | null;
  currentChecksum: string;
  identity: unknown;
}

interface FileInfo {
  name: string;
  state: string;
  message: string;
  currentChecksum: string;
  realSize: number;
}

interface Stats {
  sent: { dataBytes: number; downloadBytes: number };
}

async function waitReady(bim: Service, budget: Budget, name: string): Promise<FileInfo> {
  return waitUntil(`${name} to be ready on ${bim.what}`, budget, async () => {
    const r = await bim.api<FileInfo>('GET', `/v1/files/${name}`);
    if (r.status !== 200) throw new Error(`GET ${name} on ${bim.what}: ${r.status} ${JSON.stringify(r.body)}`);
    if (r.body.state === 'failed') throw new Error(`${name} failed on ${bim.what}: ${r.body.message}`);
    return r.body.state === 'ready' ? r.body : undefined;
  });
}

/**
 * Runs `start` and resolves once `name` is ready on `bim`, told by the manager's watch stream (opened first, so no
 * event is missed). Used where the time is measured: polling every 50 ms cost the measured side a request handled
 * and answered per poll, about 0.2 CPU s per 2 GiB sync on this 2-core machine.
 */
async function readyAfter(bim: Service, budget: Budget, name: string, start: () => Promise<void>): Promise<FileInfo> {
  const what = `${name} to be ready on ${bim.what}`;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`the benchmark's time limit ran out while waiting for ${what}`)), budget.left(what));
  try {
    const res = await fetch(`${bim.url}/v1/watch`, { headers: BENCH_AUTH, signal: ac.signal });
    if (!res.ok || !res.body) throw new Error(`GET /v1/watch on ${bim.what}: ${res.status}`);
    const lines = res.body.pipeThrough(new TextDecoderStream()).getReader();
    await start();
    let text = '';
    for (;;) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`${bim.what} ended its watch stream before ${name} was ready`);
      text += value;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
        const ev = JSON.parse(text.slice(0, nl)) as { type: string; file?: FileInfo; files?: FileInfo[] };
        text = text.slice(nl + 1);
        for (const f of ev.files ?? (ev.file ? [ev.file] : [])) {
          if (f.name !== name || ev.type === 'DELETED') continue;
          if (f.state === 'failed') throw new Error(`${name} failed on ${bim.what}: ${f.message}`);
          if (f.state === 'ready') return f;
        }
      }
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

async function post(bim: Service, path: string, body: unknown): Promise<void> {
  const r = await bim.api('POST', path, body);
  if (r.status !== 200 && r.status !== 202) throw new Error(`POST ${path} on ${bim.what}: ${r.status} ${JSON.stringify(r.body)}`);
}

async function stats(bim: Service): Promise<Stats> {
  return (await bim.api<Stats>('GET', '/v1/stats')).body;
}

function makeDisk(root: string, label: string): { path: string; uuid: string } {
  const path = join(root, label);
  mkdirSync(join(path, 'tmp'), { recursive: true });
  const uuid = randomUUID();
  writeFileSync(join(path, 'longhorn-disk.cfg'), JSON.stringify({ diskUUID: uuid }));
  return { path, uuid };
}

/** State shared by the phases of one run. */
interface Run {
  o: Options;
  root: string;
  budget: Budget;
  kids: Children;
  server: FileServer;
  /** The random file the web server serves, and its SHA-512 (by sha512sum). */
  origin: { path: string; name: string; sha: string } | undefined;
  diskA: { path: string; uuid: string };
  /** The sending manager; it holds `img` (the random file) once the download or peer-sync phase put it there. */
  bimA: Service | undefined;
}

async function makeOrigin(run: Run): Promise<NonNullable<Run['origin']>> {
  if (run.origin) return run.origin;
  const { root, kids, budget, o } = run;
  const dir = join(root, 'origin');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'image.raw');
  check(await exec(kids, budget, 'sh', ['-c', 'head -c "$1" /dev/urandom > "$0"', path, String(o.size)]), 'head -c /dev/urandom');
  // Its writeback would otherwise still be running while the first side is timed.
  fsyncFile(path);
  const sha = check(await exec(kids, budget, 'sha512sum', [path]), 'sha512sum').stdout.split(' ')[0] ?? '';
  return (run.origin = { path, name: 'image.raw', sha });
}

/** The sending manager with `img` ready; without the download phase it takes the origin file over directly. */
async function senderWithImage(run: Run): Promise<Service> {
  if (run.bimA) return run.bimA;
  const { kids, budget, diskA } = run;
  const origin = await makeOrigin(run);
  const bimA = (run.bimA = await startBim(kids, budget, diskA));
  // A hard link on the same file system: fetch renames it away and the origin stays for later phases.
  const src = join(diskA.path, 'tmp', 'img-staged', 'backing');
  mkdirSync(dirname(src), { recursive: true });
  check(await exec(kids, budget, 'ln', [origin.path, src]), 'ln');
  await post(bimA, '/v1/files/img/fetch', { uuid: 'u1', sourcePath: src, size: run.o.size, expectedChecksum: origin.sha });
  await waitReady(bimA, budget, 'img');
  return bimA;
}

/** Rounds of a comparison: each side timed `rounds` times, alternating, each run right after recyclePages. */
function report(label: string, oursMs: number[], baseMs: number[], size: number): void {
  const list = (ms: number[]) => ms.map((x) => mbps(size, x).toFixed(0)).join(', ');
  figure(label, 'MB/s', mbps(size, median(oursMs)), mbps(size, median(baseMs)));
  console.log(`  medians of ${oursMs.length} rounds; ours ${list(oursMs)}; baseline ${list(baseMs)}`);
}

async function downloadPhase(run: Run): Promise<void> {
  const { kids, budget, server, diskA, o, root } = run;
  const origin = await makeOrigin(run);
  const url = `${server.url}/${origin.name}`;
  const label = `download+sha512 ${gib(o.size)} [MB/s; baseline curl | tee | sha512sum, + fsync]`;
  const diskB = join(root, 'disk-b');
  const oursMs: number[] = [];
  const baseMs: number[] = [];
  let last: { ds: Service; file: DsFile } | undefined;

  for (let round = 0; round < o.rounds; round++) {
    const copy = join(diskB, 'baseline-download.raw');
    recyclePages(diskB, o.size);
    const t0 = performance.now();
    const b = await exec(kids, budget, 'sh', ['-c', 'curl -sS --fail "$0" | tee "$1" | sha512sum', url, copy], { group: true });
    fsyncFile(copy);
    baseMs.push(performance.now() - t0);
    // The shell has no pipefail: a failed curl shows up as a wrong checksum or size.
    if (b.code !== 0 || b.stdout.split(' ')[0] !== origin.sha || statSync(copy).size !== o.size) {
      throw new Error(`the baseline download went wrong (exit ${b.code}): ${b.stderr.trim() || b.stdout.trim()}`);
    }
    rmSync(copy);

    // The previous round's work directory (the one holding the file it reported) goes before the next starts.
    if (last) {
      await last.ds.stop();
      if (last.file.filePath) rmSync(dirname(last.file.filePath), { recursive: true, force: true });
    }
    const ds = new Service(
      'stratum data-source',
      kids,
      ['data-source', '--disk', diskA.path, '--name', 'img', '--uuid', 'u1', '--source-type', 'download', '--parameters', `url=${url}`, '--checksum', origin.sha, '--allow-private-urls', '--port', '0'],
      /listening on (http:\/\/\S+)/,
    );
    recyclePages(join(diskA.path, 'tmp'), o.size);
    const t1 = performance.now();
    await ds.start(budget);
    const f = await waitUntil('the data source to be ready-for-transfer', budget, async () => {
      const r = await ds.api<DsFile>('GET', '/v1/file');
      if (r.body.state === 'failed') throw new Error(`the data source failed: ${r.body.message}`);
      return r.body.state === 'ready-for-transfer' ? r.body : undefined;
    });
    oursMs.push(performance.now() - t1);
    if (f.currentChecksum !== origin.sha || f.filePath === null) throw new Error(`the data source finished with ${JSON.stringify(f)}`);
    last = { ds, file: f };
  }
  report(label, oursMs, baseMs, o.size);
  if (!last?.file.filePath) return;
  rss('download', 'data-source', last.ds.pid);

  // Hand the file to the sending manager the way the controller does (rename, not read), for the next phases.
  const bimA = (run.bimA = await startBim(kids, budget, diskA));
  await post(bimA, '/v1/files/img/fetch', {
    uuid: 'u1',
    sourcePath: last.file.filePath,
    size: o.size,
    expectedChecksum: origin.sha,
    sha512: last.file.currentChecksum,
    identity: last.file.identity,
  });
  await waitReady(bimA, budget, 'img');
  const t = await last.ds.api('POST', '/v1/transfer');
  if (t.status !== 200) throw new Error(`POST /v1/transfer: ${t.status} ${JSON.stringify(t.body)}`);
  await last.ds.stop();
}

async function peerSyncPhase(run: Run): Promise<void> {
  const { kids, budget, root, o } = run;
  const origin = await makeOrigin(run);
  const bimA = await senderWithImage(run);

  const tm = performance.now();
  await waitUntil('the sender chunk manifest', budget, async () => {
    const r = await bimA.api('GET', `/v1/files/img/chunks?size=${CHUNK}`);
    if (r.status === 200) return true;
    if (r.status === 503) return undefined; // ManifestPending: being computed
    throw new Error(`GET chunks: ${r.status} ${JSON.stringify(r.body)}`);
  }, 200);
  console.log(`note: the sender's chunk manifest of ${gib(o.size)} (SHA-512 + SHA-256 per 4 MiB, once per file, cached) took ${((performance.now() - tm) / 1000).toFixed(1)} s, before the clock`);
  await bimA.restart(budget);

  const anchor = await manifestAnchorOf(origin.path);
  const diskB = makeDisk(root, 'disk-b');
  const oursMs: number[] = [];
  const wholeMs: number[] = [];
  const copyMs: number[] = [];
  const sumMs: number[] = [];
  let sent = 0;
  let downloaded = 0;
  // CPU seconds per run: the sender, the receiver (ours) and the whole machine (curl and the kernel included).
  const cpu = { anchored: [] as Cpu[], whole: [] as Cpu[], curl: [] as Cpu[] };
  const syncOnce = async (times: number[], cpuRuns: Cpu[], extra: Record<string, string>, last: boolean) => {
    const bimB = await startBim(kids, budget, diskB);
    const sent0 = (await stats(bimA)).sent.dataBytes;
    recyclePages(diskB.path, o.size);
    const c0 = { sender: cpuSeconds(bimA.pid), receiver: cpuSeconds(bimB.pid), machine: machineBusySeconds() };
    const t0 = performance.now();
    const f = await readyAfter(bimB, budget, 'img', () => post(bimB, '/v1/files/img/sync', { uuid: 'u1', size: o.size, expectedChecksum: origin.sha, sources: [bimA.url], ...extra }));
    times.push(performance.now() - t0);
    cpuRuns.push({ sender: cpuSeconds(bimA.pid) - c0.sender, receiver: cpuSeconds(bimB.pid) - c0.receiver, machine: machineBusySeconds() - c0.machine });
    if (f.currentChecksum !== origin.sha) throw new Error(`the synced copy has checksum ${f.currentChecksum}`);
    sent = (await stats(bimA)).sent.dataBytes - sent0;
    if (last) {
      rss('peer-sync', 'receiver', bimB.pid);
      rss('peer-sync', 'sender', bimA.pid);
    }
    await bimB.stop();
    rmSync(join(diskB.path, 'backing-images'), { recursive: true, force: true });
  };
  for (let round = 0; round < o.rounds; round++) {
    await syncOnce(oursMs, cpu.anchored, { expectedManifestDigest: anchor }, round === o.rounds - 1);

    const copy = join(diskB.path, 'baseline-copy.raw');
    const downloaded0 = (await stats(bimA)).sent.downloadBytes;
    recyclePages(diskB.path, o.size);
    const c1 = { sender: cpuSeconds(bimA.pid), machine: machineBusySeconds() };
    const t1 = performance.now();
    check(await exec(kids, budget, 'curl', ['-sS', '--fail', ...CURL_AUTH, '-o', copy, `${bimA.url}/v1/files/img/download`]), 'curl');
    fsyncFile(copy);
    copyMs.push(performance.now() - t1);
    cpu.curl.push({ sender: cpuSeconds(bimA.pid) - c1.sender, receiver: NaN, machine: machineBusySeconds() - c1.machine });
    if (statSync(copy).size !== o.size) throw new Error(`curl copied ${statSync(copy).size} bytes`);
    downloaded = (await stats(bimA)).sent.downloadBytes - downloaded0;
    const v = check(await exec(kids, budget, 'sha512sum', [copy]), 'sha512sum');
    if (v.stdout.split(' ')[0] !== origin.sha) throw new Error('the plain copy does not match the source checksum');
    sumMs.push(copyMs[round]! + v.ms);
    rmSync(copy);
    await syncOnce(wholeMs, cpu.whole, {}, false);
  }

  console.log(`note: each round the sender sent ${mib(sent)} of chunk data to the syncing manager and ${mib(downloaded)} to curl`);
  console.log(`cpu: peer sync ${gib(o.size)}, CPU s per run (median): ${cpuLine('anchored', cpu.anchored)}; ${cpuLine('whole-file', cpu.whole)}; ${cpuLine('curl -o + fsync', cpu.curl)}`);
  report(`peer sync ${gib(o.size)} [MB/s; baseline curl -o of the sender's download + fsync]`, oursMs, copyMs, o.size);
  report(`peer sync ${gib(o.size)} [MB/s; baseline curl -o + fsync, then sha512sum]`, oursMs, sumMs, o.size);
  report(`peer sync ${gib(o.size)} without the manifest anchor (whole-file SHA-512) [MB/s; baseline curl -o + fsync]`, wholeMs, copyMs, o.size);
}

interface Cpu {
  sender: number;
  /** NaN for curl, whose CPU is in `machine`. */
  receiver: number;
  machine: number;
}

function cpuLine(what: string, runs: Cpu[]): string {
  const m = (f: (c: Cpu) => number) => median(runs.map(f)).toFixed(1);
  const receiver = runs.every((c) => Number.isNaN(c.receiver)) ? '' : `, receiver ${m((c) => c.receiver)}`;
  return `${what}: sender ${m((c) => c.sender)}${receiver}, machine ${m((c) => c.machine)}`;
}

/** What a data source publishes as the image's manifest anchor: the digest of the origin file's chunk manifest. */
async function manifestAnchorOf(path: string): Promise<string> {
  const b = new ManifestBuilder(undefined, CHUNK);
  for await (const piece of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) b.update(piece as Buffer);
  return `${CHUNK}:${manifestDigest(b.finish({ name: 'img', uuid: 'u1', sha512: '' })).toString('hex')}`;
}

async function sparseSyncPhase(run: Run): Promise<void> {
  const { kids, budget, root, o, diskA } = run;
  const size = o.sparseSize;
  const run16 = size / 256;
  const bimA = run.bimA ?? (run.bimA = await startBim(kids, budget, diskA));

  // Served by the web server (on loopback: --allow-private-urls) and downloaded by a data source: the first copy is made the way users make it.
  const src = join(root, 'origin', 'sparse.raw');
  mkdirSync(join(root, 'origin'), { recursive: true });
  check(await exec(kids, budget, 'qemu-img', ['create', '-q', '-f', 'raw', src, String(size)]), 'qemu-img create');
  // 16 runs, each starting 3 MiB into its sixteenth, so runs begin and end inside 4 MiB chunks.
  for (let k = 0; k < 16; k++) {
    const seek = (k * size) / 16 / MiB + 3;
    const args = ['if=/dev/urandom', `of=${src}`, 'bs=1M', `count=${run16 / MiB}`, `seek=${seek}`, 'conv=notrunc', 'status=none'];
    check(await exec(kids, budget, 'dd', args), 'dd');
  }
  fsyncFile(src);
  const srcAllocated = allocatedBytes(src);
  const tf = performance.now();
  const ds = new Service(
    'stratum data-source',
    kids,
    ['data-source', '--disk', diskA.path, '--name', 'sparse', '--uuid', 'u2', '--source-type', 'download', '--parameters', `url=${run.server.url}/sparse.raw`, '--allow-private-urls', '--port', '0'],
    /listening on (http:\/\/\S+)/,
  );
  await ds.start(budget);
  const df = await waitUntil('the sparse download to be ready-for-transfer', budget, async () => {
    const r = await ds.api<DsFile>('GET', '/v1/file');
    if (r.body.state === 'failed') throw new Error(`the data source failed: ${r.body.message}`);
    return r.body.state === 'ready-for-transfer' ? r.body : undefined;
  });
  // Taken over the way the controller does it: by rename, with the data source's checksum, identity and manifest.
  await post(bimA, '/v1/files/sparse/fetch', { uuid: 'u2', sourcePath: df.filePath, size, sha512: df.currentChecksum, identity: df.identity });
  const a = await waitReady(bimA, budget, 'sparse');
  await ds.api('POST', '/v1/transfer');
  await ds.stop();
  const firstAllocated = allocatedBytes(join(diskA.path, 'backing-images', 'sparse-u2', 'backing'));
  console.log(`note: sparse source ${gib(size)} raw, ${mib(srcAllocated)} allocated; downloaded by the data source and taken over in ${((performance.now() - tf) / 1000).toFixed(1)} s, before the clock`);
  await bimA.restart(budget);

  const diskC = makeDisk(root, 'disk-c');
  const bimC = await startBim(kids, budget, diskC);
  const before = await stats(bimA);
  const t0 = performance.now();
  await post(bimC, '/v1/files/sparse/sync', { uuid: 'u2', size, expectedChecksum: a.currentChecksum, sources: [bimA.url] });
  const f = await waitReady(bimC, budget, 'sparse');
  const oursMs = performance.now() - t0;
  const mid = await stats(bimA);
  if (f.currentChecksum !== a.currentChecksum) throw new Error(`the sparse copy has checksum ${f.currentChecksum}`);
  const oursAllocated = allocatedBytes(join(diskC.path, 'backing-images', 'sparse-u2', 'backing'));
  rss('sparse-sync', 'receiver', bimC.pid);
  rss('sparse-sync', 'sender', bimA.pid);
  await bimC.stop();

  const copy = join(diskC.path, 'baseline-sparse.raw');
  const t1 = performance.now();
  check(await exec(kids, budget, 'curl', ['-sS', '--fail', ...CURL_AUTH, '-o', copy, `${bimA.url}/v1/files/sparse/download`]), 'curl');
  fsyncFile(copy);
  const copyMs = performance.now() - t1;
  if (statSync(copy).size !== size) throw new Error(`curl copied ${statSync(copy).size} bytes`);
  const after = await stats(bimA);
  const baseAllocated = allocatedBytes(copy);
  rmSync(copy);

  const what = `sparse sync ${gib(size)} raw holding ${gib(16 * run16)}`;
  const sent = mid.sent.dataBytes - before.sent.dataBytes;
  const curlSent = after.sent.downloadBytes - mid.sent.downloadBytes;
  figure(`${what} [MiB sent by the sender; baseline curl -o of the whole download; lower is better]`, 'MiB', sent / MiB, curlSent / MiB);
  figure(`${what} [wall s; baseline curl -o + fsync; lower is better]`, 's', oursMs / 1000, copyMs / 1000, 2);
  figure(`${what} [MiB allocated by the first copy (data source download, st_blocks); baseline curl -o; lower is better]`, 'MiB', firstAllocated / MiB, baseAllocated / MiB);
  figure(`${what} [MiB allocated by the synced copy (st_blocks); baseline curl -o; lower is better]`, 'MiB', oursAllocated / MiB, baseAllocated / MiB);
  console.log(`note: allocated / data written: first copy ${ratio(firstAllocated / (16 * run16))}, synced copy ${ratio(oursAllocated / (16 * run16))} (target ≤ 1.1)`);
}

async function header(run: Run): Promise<void> {
  const { o, kids, budget, root } = run;
  const cpu = cpus();
  const fs = await exec(kids, budget, 'stat', ['-f', '-c', '%T', root]);
  console.log(
    `image-transfer: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), ${gib(Math.round(totalmem() / GiB) * GiB)} RAM ` +
      `(${(freemem() / GiB).toFixed(1)} GiB free), Node ${process.version}, Linux ${release()}, temp dir on ${fs.code === 0 ? fs.stdout.trim() : 'unknown fs'}`,
  );
  console.log(
    `files: ${gib(o.size)} random (head -c /dev/urandom) for download and peer-sync; ${gib(o.sparseSize)} sparse raw holding ` +
      `${gib(o.sparseSize / 16)} in 16 runs of ${gib(o.sparseSize / 256)} for sparse-sync; sources served from the page cache; MB = 10^6 bytes`,
  );
}

export async function run(args: string[]): Promise<void> {
  const o = parseArgs(args);
  const budget = new Budget(o.limitMs);
  const kids = new Children();
  const root = mkdtempSync(join(tmpdir(), 'stratum-bench-image-transfer-'));
  const server = new FileServer(join(root, 'origin'));
  // Ctrl-C or a kill reaches the cleanup below: every wait throws and every child of this run is stopped.
  const undoSignals = interruptOnSignals(budget, kids);
  try {
    await server.start();
    const r: Run = { o, root, budget, kids, server, origin: undefined, diskA: makeDisk(root, 'disk-a'), bimA: undefined };
    mkdirSync(join(root, 'disk-b'), { recursive: true });
    await header(r);
    for (const phase of o.phases) {
      const missing = NEEDS[phase].filter((t) => !hasTool(t));
      if (missing.length > 0) {
        console.log(`skip: ${phase} needs ${missing.join(' and ')}, which this machine does not have`);
        continue;
      }
      const t0 = performance.now();
      if (phase === 'download') await downloadPhase(r);
      else if (phase === 'peer-sync') await peerSyncPhase(r);
      else await sparseSyncPhase(r);
      console.log(`phase ${phase} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    undoSignals();
    await kids.stopAll();
    await server.close();
    rmSync(root, { recursive: true, force: true });
  }
}
