// Helpers for the image-transfer benchmark: a time budget that every wait respects, child processes that are always
// reaped by pid (shell pipelines by their own process group, so a killed `sh` cannot leave a `curl` behind), the
// compiled `stratum bim` / `stratum data-source` as child processes, a static file server, and /proc readings.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CLUSTER_SECRET_ENV, clusterAuthHeaders, newSecret } from '../src/auth/index.js';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

const here = dirname(fileURLToPath(import.meta.url));

// The data-plane processes a bench starts accept only the cluster credential: one secret per bench run, handed to
// them as a node agent would (STRATUM_CLUSTER_SECRET_FILE) and sent by the bench's own requests.
const BENCH_SECRET = newSecret();
const secretDir = mkdtempSync(join(tmpdir(), 'stratum-bench-'));
const secretFile = join(secretDir, 'cluster-secret');
writeFileSync(secretFile, `${BENCH_SECRET}\n`, { mode: 0o600 });
process.on('exit', () => rmSync(secretDir, { recursive: true, force: true }));
process.env[CLUSTER_SECRET_ENV] = secretFile;
export const BENCH_AUTH = clusterAuthHeaders(BENCH_SECRET);
/** The same credential as curl arguments. */
export const CURL_AUTH = ['-H', `Authorization: ${BENCH_AUTH.authorization}`];
/** The compiled CLI (this file runs from dist/bench). */
export const CLI = resolve(here, '..', 'src', 'cli', 'main.js');

/** Node options every Service is started with (a bench's --cpu-prof DIR). */
const serviceNodeArgs: string[] = [];

/** Makes every Service started from now on write a V8 CPU profile to `dir` when it exits. */
export function profileServices(dir: string): void {
  serviceNodeArgs.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
}

/** A deadline for the whole run; `abort` makes every later wait throw at once. */
export class Budget {
  readonly #deadline: number;
  #aborted: string | undefined;

  constructor(ms: number) {
    this.#deadline = Date.now() + ms;
  }

  get aborted(): string | undefined {
    return this.#aborted;
  }

  abort(reason: string): void {
    this.#aborted ??= reason;
  }

  /** Milliseconds left; throws when the run was aborted or the time is up. */
  left(what: string): number {
    if (this.#aborted) throw new Error(`${this.#aborted} while ${what}`);
    const ms = this.#deadline - Date.now();
    if (ms <= 0) throw new Error(`the benchmark's time limit ran out while ${what}`);
    return ms;
  }
}

interface Kid {
  child: ChildProcess;
  group: boolean;
}

function gone(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Every child this run started, so that cleanup can stop exactly those (by pid), whatever failed. */
export class Children {
  readonly #live = new Set<Kid>();

  /** `group`: the child leads a new process group (for `sh -c` pipelines) and is signalled as a group. */
  spawn(cmd: string, args: string[], opts: { group?: boolean; stdout?: 'pipe' | 'ignore' } = {}): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'], detached: opts.group === true });
    const kid: Kid = { child, group: opts.group === true };
    this.#live.add(kid);
    child.once('exit', () => this.#live.delete(kid));
    child.once('error', () => this.#live.delete(kid));
    return child;
  }

  signal(child: ChildProcess, sig: NodeJS.Signals): void {
    const kid = [...this.#live].find((k) => k.child === child);
    if (!kid || gone(child) || child.pid === undefined) return;
    try {
      if (kid.group) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch {
      // ESRCH: it exited between the check and the signal.
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
  async stop(child: ChildProcess, graceMs = 10_000): Promise<void> {
    if (gone(child) || child.pid === undefined) return;
    const exited = new Promise((r) => child.once('exit', r));
    this.signal(child, 'SIGTERM');
    const timer = setTimeout(() => this.signal(child, 'SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#live].map((k) => this.stop(k.child)));
  }
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion within the budget (killed when it runs out). */
export function exec(kids: Children, budget: Budget, cmd: string, args: string[], opts: { group?: boolean } = {}): Promise<ExecResult> {
  const limit = budget.left(`running ${cmd}`);
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const child = kids.spawn(cmd, args, opts);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      kids.signal(child, 'SIGKILL');
    }, limit);
    child.on('error', (err) => {
      clearTimeout(timer);
      rej(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (timedOut) rej(new Error(`the benchmark's time limit ran out while running ${cmd}`));
      else if (budget.aborted) rej(new Error(`${budget.aborted} while running ${cmd}`));
      else res({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** Throws with the command's stderr unless it exited 0. */
export function check(r: ExecResult, what: string): ExecResult {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}: ${r.stderr.trim()}`);
  return r;
}

export function hasTool(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$0"', cmd], { stdio: 'ignore' }).status === 0;
}

/** fsync of a file another process wrote: the page cache is shared, so this makes that process's writes durable. */
export function fsyncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `size` bytes of zeros into a scratch file in `dir` and deletes it, unsynced (nothing goes to the disk), so the
 * copy timed next takes page-cache pages that were just freed. On a VM with free-page reporting a page the guest has
 * not touched for a while costs a trip to the host on first touch, several times the cost of the copy itself:
 * without this, whichever side of a comparison runs right after the other deleted its copy is timed on cheap pages.
 */
export function recyclePages(dir: string, size: number): void {
  const path = join(dir, `.recycle-${process.pid}`);
  const fd = openSync(path, 'w');
  try {
    const buf = Buffer.alloc(8 * MiB);
    for (let done = 0; done < size; done += buf.length) writeSync(fd, buf, 0, Math.min(buf.length, size - done));
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}

/** The median of some measurements (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function allocatedBytes(path: string): number {
  return statSync(path).blocks * 512;
}

/** Polls `fn` every `everyMs` until it returns a value; its errors end the wait. */
export async function waitUntil<T>(what: string, budget: Budget, fn: () => Promise<T | undefined>, everyMs = 50): Promise<T> {
  while (true) {
    budget.left(`waiting for ${what}`);
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** User + system CPU seconds a process has used so far, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3; utime and stime are fields 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** CPU seconds the whole machine has spent busy so far (every core, all but idle and iowait), from /proc/stat. */
export function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  return busy / CLK_TCK;
}

/** Resident set now and its high-water mark since the process started, from /proc/PID/status, in bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** A Stratum subcommand as a child process that announces its URL on stdout (`--port 0`). */
export class Service {
  readonly what: string;
  readonly #kids: Children;
  readonly #args: string[];
  readonly #urlPattern: RegExp;
  #child: ChildProcess | undefined;
  #log = '';
  url = '';

  constructor(what: string, kids: Children, args: string[], urlPattern: RegExp) {
    this.what = what;
    this.#kids = kids;
    this.#args = args;
    this.#urlPattern = urlPattern;
  }

  get pid(): number {
    const pid = this.#child?.pid;
    if (pid === undefined || !this.#child || gone(this.#child)) throw new Error(`${this.what} is not running`);
    return pid;
  }

  /** The end of its output, for error messages. */
  get log(): string {
    return this.#log.slice(-2000);
  }

  /** Spawns the process and resolves once it printed the URL it serves. */
  async start(budget: Budget): Promise<this> {
    this.url = '';
    this.#log = '';
    const child = this.#kids.spawn(process.execPath, [...serviceNodeArgs, CLI, ...this.#args]);
    this.#child = child;
    const keep = (d: Buffer) => {
      // Only the tail matters (error messages); a long run must not grow this without bound.
      this.#log = (this.#log + d.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    await waitUntil(`${this.what} to listen`, budget, async () => {
      const m = this.#urlPattern.exec(this.#log);
      if (m?.[1]) return (this.url = m[1]);
      if (gone(child)) throw new Error(`${this.what} exited with ${child.exitCode ?? child.signalCode}: ${this.log}`);
      return undefined;
    });
    return this;
  }

  async stop(): Promise<void> {
    if (this.#child) await this.#kids.stop(this.#child);
  }

  /** Stop and start again over the same disk: a fresh process, so its memory high-water mark starts over. */
  async restart(budget: Budget): Promise<void> {
    await this.stop();
    await this.start(budget);
  }

  async api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      // A process that accepts but never answers must not hang the run past its budget.
      signal: AbortSignal.timeout(30_000),
      headers: { ...BENCH_AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON (e.g. a proxy's error page): kept as text for the message.
    }
    return { status: res.status, body: parsed as T };
  }
}

export function startBim(kids: Children, budget: Budget, disk: { path: string; uuid: string }): Promise<Service> {
  const args = ['bim', '--disk', disk.path, '--disk-uuid', disk.uuid, '--port', '0'];
  return new Service(`stratum bim on ${disk.path.split('/').pop() ?? ''}`, kids, args, /served at (http:\/\/\S+)/).start(budget);
}

/** Serves the files of one folder by name (GET/HEAD, 200 with Content-Length), as a plain web server would. */
export class FileServer {
  readonly #dir: string;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  url = '';

  constructor(dir: string) {
    this.#dir = dir;
    this.#server = createServer((req, res) => {
      const name = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/').slice(1);
      let size: number;
      try {
        if (name === '' || name.includes('/')) throw new Error('not a file name');
        size = statSync(join(this.#dir, name)).size;
      } catch {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      // 1 MiB reads: the default 64 KiB would make this server, not the clients, the bottleneck on loopback.
      pipeline(createReadStream(join(this.#dir, name), { highWaterMark: MiB }), res, () => undefined);
    });
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    const addr = this.#server.address();
    this.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    return this;
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

/** Ctrl-C or a kill aborts the run's budget (every wait throws) and stops its children; returns the undo. */
export function interruptOnSignals(budget: Budget, kids: Children): () => void {
  const onSignal = (sig: NodeJS.Signals) => {
    budget.abort(`interrupted by ${sig}`);
    void kids.stopAll();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
