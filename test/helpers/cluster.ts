// Test helpers for whole clusters: a `stratum up` process, stand-alone `stratum node` agents, reads of Nodes
// and Pods over the API, and a last-resort cleanup that kills (by recorded pid and start time) every process a
// test's data directory knows about, so a failing test leaves nothing running.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, waitFor } from './processes.js';
import { authFor, rememberCluster } from './credentials.js';

export const NS = 'longhorn-system';

export interface ClusterFile {
  nodes: number;
  disksPerNode: number;
  port: number;
  processes?: Record<string, { pid: number; argv: string[]; log: string }>;
}

export function readCluster(dir: string): ClusterFile {
  return JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterFile;
}

/** A child process with its output collected. */
export class Proc {
  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<void>;

  constructor(argv: string[], opts: { ipc?: boolean } = {}) {
    const [cmd = process.execPath, ...args] = argv;
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', ...(opts.ipc ? ['ipc' as const] : [])] });
    this.child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((r) => this.child.once('exit', () => r()));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `sig` and waits for the exit; SIGKILL after `ms`. */
  async stop(sig: NodeJS.Signals = 'SIGTERM', ms = 60_000): Promise<void> {
    if (!this.running) return;
    this.child.kill(sig);
    const t = setTimeout(() => this.child.kill('SIGKILL'), ms);
    await this.exited;
    clearTimeout(t);
  }
}

/** `stratum up` over `dir`, waiting until it printed that every node is Ready. */
/**
 * `stratum up` in `dir`, once every node is Ready. Unless `supervise`, it does not restart a manager or agent that
 * exits (`--no-supervise`): tests kill them on purpose to make outages.
 */
export async function startUp(dir: string, port: number, extra: string[] = [], opts: { supervise?: boolean } = {}): Promise<Proc> {
  const up = new Proc([process.execPath, CLI, 'up', '--data-dir', dir, '--port', String(port), ...(opts.supervise ? [] : ['--no-supervise']), ...extra]);
  try {
    await waitFor('stratum up to report Ready nodes', async () => {
      if (!up.running) throw new Error(`stratum up exited: ${up.output}`);
      return /all \d+ nodes are Ready/.test(up.output);
    }, 30_000);
    rememberCluster(`http://127.0.0.1:${port}`, dir);
  } catch (err) {
    // Not returned, so nobody else could stop it: stop it here (it stops its manager, agents and pods).
    await up.stop('SIGINT', 60_000);
    throw new Error(`${(err as Error).message}\n--- stratum up output:\n${up.output}`);
  }
  return up;
}

export function startNodeAgent(argv: string[]): Proc {
  return new Proc(argv);
}

export async function api<T>(url: string, path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${url}${path}`, { ...init, headers: { ...authFor(url), 'content-type': 'application/json', ...init.headers } });
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export interface PodView {
  metadata: { name: string; annotations?: Record<string, string>; finalizers?: string[]; uid: string };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      restartCount: number;
      containerID?: string;
      ready: boolean;
      state?: { running?: object; waiting?: { reason?: string }; terminated?: { exitCode: number; reason?: string } };
      lastState?: { terminated?: { exitCode: number } };
    }[];
  };
}

export function getPod(url: string, ns: string, name: string): Promise<PodView> {
  return api<PodView>(url, `/api/v1/namespaces/${ns}/pods/${name}`);
}

export function podPid(p: PodView): number | undefined {
  const id = p.status?.containerStatuses?.[0]?.containerID;
  return id ? Number(id.replace('pid://', '')) : undefined;
}

export function podPorts(p: PodView): Record<string, number> {
  return JSON.parse(p.metadata.annotations?.['stratum.io/ports'] ?? '{}') as Record<string, number>;
}

export async function createPod(url: string, pod: Record<string, unknown>): Promise<void> {
  await api(url, '/api/v1/namespaces/default/pods', { method: 'POST', body: JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...pod }) });
}

export function httpPod(name: string, node: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: { name, namespace: 'default' },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 5,
      containers: [{
        name: 'web',
        image: 'stratum-test-http:v1',
        ports: [{ name: 'http', containerPort: 8080 }],
        readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
        ...extra,
      }],
    },
  };
}

export async function nodeReady(url: string, name: string): Promise<string | undefined> {
  const n = await api<{ status?: { conditions?: { type: string; status: string }[] } }>(url, `/apis/longhorn.io/v1beta2/namespaces/${NS}/nodes/${name}`);
  return n.status?.conditions?.find((c) => c.type === 'Ready')?.status;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Kills every pod process (its shim's group) recorded under `dir`, when the recorded pid still has the recorded
 * start time: the safety net after a failed test. Returns how many it found running.
 */
export function killRecordedPods(dir: string): number {
  let killed = 0;
  const visit = (d: string, depth: number): void => {
    if (depth > 6 || !existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) visit(p, depth + 1);
      else if (e.name === 'record.json') {
        try {
          const rec = JSON.parse(readFileSync(p, 'utf8')) as { current?: { shim: { pid: number; startTime: string } } };
          const shim = rec.current?.shim;
          if (shim && startTime(shim.pid) === shim.startTime) {
            process.kill(-shim.pid, 'SIGKILL');
            killed++;
          }
        } catch {
          // unreadable record or already gone
        }
      }
    }
  };
  visit(dir, 0);
  return killed;
}

/** SIGKILLs the processes a `stratum up` recorded in cluster.json, if they are still alive. */
export function killRecordedCluster(dir: string): void {
  if (!existsSync(join(dir, 'cluster.json'))) return;
  for (const p of Object.values(readCluster(dir).processes ?? {})) {
    if (p.pid > 0 && alive(p.pid)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}
