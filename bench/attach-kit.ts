// Helpers for the attach benchmark: which OS processes make up a running cluster and what memory they hold (from
// /proc, whatever the processes are called or how the instance manager hosts its instances), and a watch on the
// cluster's Volumes that timestamps each change the moment it arrives.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ndjson } from '../src/client/http-store.js';

export interface OsProcess {
  pid: number;
  ppid: number;
  /** Field 22 of /proc/PID/stat: with the pid, names this process and not a later one that reuses the pid. */
  startTime: string;
  argv: string[];
  /** The working directory ('' when unreadable): a pod runs in its folder under the agent's data dir. */
  cwd: string;
}

function readProcess(pid: number): OsProcess | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields after it start past the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') return undefined;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    let cwd = '';
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // another user's process, or gone
    }
    return { pid, ppid: Number(f[1]), startTime: f[19] ?? '', argv, cwd };
  } catch {
    return undefined; // exited while we looked
  }
}

/**
 * The cluster's processes: `root` (the `stratum up` process) and all its descendants, plus any process that runs
 * in the cluster's data directory or names it on its command line, and its descendants (a pod whose agent was
 * restarted is re-parented to init but still runs in its pod folder). `self` (this benchmark) is never included.
 */
export function clusterProcesses(root: number, dataDir: string, self = process.pid): OsProcess[] {
  const all = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map((d) => readProcess(Number(d))).filter((p): p is OsProcess => p !== undefined);
  const children = new Map<number, OsProcess[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const found = new Map<number, OsProcess>();
  const add = (p: OsProcess): void => {
    if (p.pid === self || found.has(p.pid)) return;
    found.set(p.pid, p);
    for (const c of children.get(p.pid) ?? []) add(c);
  };
  const inside = (path: string) => path === dataDir || path.startsWith(`${dataDir}/`);
  for (const p of all) if (p.pid === root || inside(p.cwd) || p.argv.some((a) => a.includes(dataDir))) add(p);
  return [...found.values()].sort((a, b) => a.pid - b.pid);
}

export interface Memory {
  processes: number;
  rss: number;
  /** Proportional set size (shared pages split among their sharers); undefined where smaps_rollup is missing. */
  pss: number | undefined;
}

function kB(text: string, key: string): number | undefined {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** Sums VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) over the processes still running. */
export function memoryOf(procs: OsProcess[]): Memory {
  let rss = 0;
  let pss: number | undefined = 0;
  let processes = 0;
  for (const p of procs) {
    let status: string;
    try {
      status = readFileSync(`/proc/${p.pid}/status`, 'utf8');
    } catch {
      continue; // exited since the scan
    }
    processes++;
    rss += kB(status, 'VmRSS') ?? 0;
    try {
      const v = kB(readFileSync(`/proc/${p.pid}/smaps_rollup`, 'utf8'), 'Pss');
      pss = v === undefined || pss === undefined ? undefined : pss + v;
    } catch {
      pss = undefined;
    }
  }
  return { processes, rss, pss };
}

/** "3 node, 1 manager, 100 engine, …": processes by what they run (the CLI subcommand, else the program name). */
export function processKinds(procs: OsProcess[]): string {
  const counts = new Map<string, number>();
  for (const p of procs) {
    const program = (p.argv[0] ?? '?').split('/').pop() ?? '?';
    const cli = p.argv.findIndex((a) => a.endsWith('/cli/main.js'));
    // A shell whose script names the CLI is a pod's shim (it waits for the pod process), not the pod itself.
    const kind = program === 'sh' || program === 'bash' ? `${program} (pod shim)` : cli >= 0 ? (p.argv[cli + 1] ?? 'stratum') : program;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} ${k}`).join(', ');
}

/** SIGKILLs every process of the list that still runs with the same start time (not a pid reused since). */
export function killSurvivors(procs: OsProcess[]): number {
  let killed = 0;
  for (const p of procs) {
    if (readProcess(p.pid)?.startTime !== p.startTime) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
      killed++;
    } catch {
      // gone meanwhile
    }
  }
  return killed;
}

/** A port that was free a moment ago (the OS picked it), for the cluster's API. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => res(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** MemAvailable from /proc/meminfo, in bytes. */
export function memAvailable(): number {
  return kB(readFileSync('/proc/meminfo', 'utf8'), 'MemAvailable') ?? Number.POSITIVE_INFINITY;
}

/** Nearest-rank percentile (p in 0..100) of a non-empty list. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? NaN;
}

export interface VolumeObject {
  metadata: { name: string; resourceVersion?: string };
  status?: { state?: string; currentNodeID?: string; endpoint?: string };
}

interface Waiter {
  name: string;
  pred: (v: VolumeObject) => boolean;
  resolve: (at: number) => void;
  fail: () => void;
}

/**
 * A watch on the Volumes of a namespace, from a list's resourceVersion, that resumes from the last version it saw
 * when the stream ends and re-lists after a 410. `until` resolves with the performance.now() at which the event
 * that made the predicate true was read off the stream.
 */
export class VolumeWatch {
  readonly #base: string;
  readonly #ac = new AbortController();
  readonly #latest = new Map<string, { obj: VolumeObject; at: number }>();
  readonly #waiters = new Set<Waiter>();
  #rv = '';
  #error: Error | undefined;
  #done: Promise<void> = Promise.resolve();
  readonly #headers: Record<string, string>;

  /** `headers`: the credential (`Authorization: Bearer …` from the cluster's kubeconfig). */
  constructor(apiUrl: string, namespace: string, headers: Record<string, string> = {}) {
    this.#base = `${apiUrl}/apis/longhorn.io/v1beta2/namespaces/${namespace}/volumes`;
    this.#headers = headers;
  }

  async start(): Promise<this> {
    await this.#list();
    this.#done = this.#run();
    return this;
  }

  async #list(): Promise<void> {
    const res = await fetch(this.#base, { headers: this.#headers, signal: AbortSignal.any([this.#ac.signal, AbortSignal.timeout(30_000)]) });
    if (!res.ok) throw new Error(`listing volumes: HTTP ${res.status} ${await res.text()}`);
    const list = (await res.json()) as { metadata: { resourceVersion: string }; items: VolumeObject[] };
    this.#rv = list.metadata.resourceVersion;
    for (const v of list.items) this.#seen(v);
  }

  #seen(v: VolumeObject, deleted = false): void {
    const at = performance.now();
    if (deleted) this.#latest.delete(v.metadata.name);
    else this.#latest.set(v.metadata.name, { obj: v, at });
    for (const w of this.#waiters) {
      if (!deleted && w.name === v.metadata.name && w.pred(v)) {
        this.#waiters.delete(w);
        w.resolve(at);
      }
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#ac.signal.aborted) {
      try {
        const res = await fetch(`${this.#base}?watch=true&resourceVersion=${encodeURIComponent(this.#rv)}`, { headers: this.#headers, signal: this.#ac.signal });
        if (!res.ok || !res.body) throw new Error(`watch of volumes: HTTP ${res.status}`);
        for await (const value of ndjson(res.body as AsyncIterable<Uint8Array>)) {
          const ev = value as { type: string; object: VolumeObject & { code?: number; message?: string } };
          if (ev.type === 'ERROR') {
            if (ev.object.code !== 410) throw new Error(`watch of volumes: ${ev.object.message ?? 'error event'}`);
            await this.#list(); // past the retained history: start over from a fresh list
            break;
          }
          this.#rv = ev.object.metadata.resourceVersion ?? this.#rv;
          this.#seen(ev.object, ev.type === 'DELETED');
          failures = 0;
        }
      } catch (err) {
        if (this.#ac.signal.aborted) return;
        // A manager that is gone for good (the cluster stopped under us) must end the waits, not spin.
        if (++failures >= 20) {
          this.#error = err instanceof Error ? err : new Error(String(err));
          for (const w of this.#waiters) w.fail();
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /** Resolves with the arrival time of the first event (or the current state) for which `pred` holds. */
  until(name: string, pred: (v: VolumeObject) => boolean, what: string, signal: AbortSignal): Promise<number> {
    const now = this.#latest.get(name);
    if (now && pred(now.obj)) return Promise.resolve(now.at);
    if (this.#error) return Promise.reject(new Error(`volume ${name} not ${what}: the watch failed: ${this.#error.message}`));
    return new Promise((resolve, reject) => {
      const failed = () => {
        cleanup();
        const last = this.#latest.get(name)?.obj.status;
        const why = this.#error ? `the watch failed: ${this.#error.message}` : signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
        reject(new Error(`volume ${name} not ${what} (${why}); last seen ${last?.state ?? 'nothing'} on ${last?.currentNodeID || 'no node'}`));
      };
      const w: Waiter = { name, pred, resolve: (at) => (cleanup(), resolve(at)), fail: failed };
      const cleanup = () => {
        this.#waiters.delete(w);
        signal.removeEventListener('abort', failed);
      };
      if (signal.aborted) return failed();
      signal.addEventListener('abort', failed, { once: true });
      this.#waiters.add(w);
    });
  }

  async close(): Promise<void> {
    this.#ac.abort();
    await this.#done;
  }
}
