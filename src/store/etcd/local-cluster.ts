// A local etcd cluster of N members, each a child process of the machine's `etcd` binary with its own data
// directory and ports: what `stratum up --store etcd`, the end-to-end tests and the store benchmark run on. A
// member whose data directory already exists rejoins with its state (the initial-cluster flags are then ignored
// by etcd), so running it again resumes the same cluster.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';

export interface EtcdMemberSpec {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  log: string;
}

export interface LocalEtcdOptions {
  /** Directory under which member-<i>/ data directories and logs live. */
  dir: string;
  /** One client and one peer port per member. */
  ports: { client: number; peer: number }[];
  host?: string;
  /** Cluster token: members of different clusters on one machine never talk to each other. */
  token?: string;
  /** Process group: true puts each member in its own (so a terminal's Ctrl-C reaches only the parent). */
  detached?: boolean;
}

export function hasEtcd(): boolean {
  return spawnSync('sh', ['-c', 'command -v etcd'], { stdio: 'ignore' }).status === 0;
}

export class LocalEtcd {
  readonly members: EtcdMemberSpec[];
  readonly #host: string;
  readonly #token: string;
  readonly #detached: boolean;
  readonly #procs = new Map<string, ChildProcess>();

  constructor(opts: LocalEtcdOptions) {
    this.#host = opts.host ?? '127.0.0.1';
    this.#token = opts.token ?? 'stratum';
    this.#detached = opts.detached ?? false;
    this.members = opts.ports.map((p, i) => {
      const dir = join(opts.dir, `member-${i + 1}`);
      return { name: `etcd-${i + 1}`, clientPort: p.client, peerPort: p.peer, dataDir: join(dir, 'data'), log: join(dir, 'etcd.log') };
    });
  }

  get endpoints(): string[] {
    return this.members.map((m) => `http://${this.#host}:${m.clientPort}`);
  }

  /** The argv that runs member `i` (recorded by `stratum up` so tools can see what runs). */
  argv(i: number): string[] {
    const m = this.member(i);
    const peer = (x: EtcdMemberSpec) => `http://${this.#host}:${x.peerPort}`;
    return [
      'etcd',
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `http://${this.#host}:${m.clientPort}`,
      '--advertise-client-urls', `http://${this.#host}:${m.clientPort}`,
      '--listen-peer-urls', peer(m),
      '--initial-advertise-peer-urls', peer(m),
      '--initial-cluster', this.members.map((x) => `${x.name}=${peer(x)}`).join(','),
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', this.#token,
      '--logger', 'zap',
      '--log-outputs', 'stderr',
    ];
  }

  member(i: number): EtcdMemberSpec {
    const m = this.members[i];
    if (!m) throw new Error(`etcd member ${i} does not exist (there are ${this.members.length})`);
    return m;
  }

  pid(i: number): number | undefined {
    return this.#procs.get(this.member(i).name)?.pid;
  }

  running(i: number): boolean {
    const p = this.#procs.get(this.member(i).name);
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** Starts every member that is not running, then waits until the cluster answers with a leader. */
  async start(opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
    for (let i = 0; i < this.members.length; i++) if (!this.running(i)) this.startMember(i);
    await this.waitHealthy(opts);
  }

  startMember(i: number): ChildProcess {
    const m = this.member(i);
    mkdirSync(m.dataDir, { recursive: true, mode: 0o700 });
    const fd = openSync(m.log, 'a');
    const [cmd = 'etcd', ...args] = this.argv(i);
    const proc = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: this.#detached });
    closeSync(fd);
    this.#procs.set(m.name, proc);
    return proc;
  }

  /** Sends `sig` to member `i` and waits for it to exit. */
  async stopMember(i: number, sig: NodeJS.Signals = 'SIGTERM', ms = 10_000): Promise<void> {
    const p = this.#procs.get(this.member(i).name);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(sig);
    const t = setTimeout(() => p.kill('SIGKILL'), ms);
    await exited;
    clearTimeout(t);
  }

  async stop(sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.stopMember(i, sig)));
  }

  /**
   * Waits until some running member (or, with `member`, that one) reports itself healthy: it has a leader and
   * answers a quorum read. A restarted member serves clients only once it has rejoined, so "some member" is not
   * enough before taking others down.
   */
  async waitHealthy(opts: { signal?: AbortSignal; timeoutMs?: number; member?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    let last = 'no member answered';
    while (Date.now() < deadline) {
      opts.signal?.throwIfAborted();
      for (let i = 0; i < this.members.length; i++) {
        if (!this.running(i) || (opts.member !== undefined && i !== opts.member)) continue;
        try {
          const res = await fetch(`${this.endpoints[i]}/health`, { signal: AbortSignal.timeout(1000) });
          const body = (await res.json()) as { health?: string; reason?: string };
          if (body.health === 'true') return;
          last = `${this.member(i).name}: ${body.reason ?? JSON.stringify(body)}`;
        } catch (err) {
          last = `${this.member(i).name}: ${(err as Error).message}`;
        }
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`the etcd cluster did not become healthy within ${opts.timeoutMs ?? 30_000} ms (${last}); see ${this.members.map((m) => m.log).join(', ')}`);
  }
}
