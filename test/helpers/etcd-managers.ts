// The etcd topology for end-to-end tests: a three-member etcd cluster (the machine's `etcd`) and three
// `stratum manager --etcd` processes. A ManagerProcess delegates here when STRATUM_TEST_STORE=etcd, so the same
// test files run on either store; `*-etcd.test.ts` files set the variable and import the SQLite ones.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { hasEtcd, LocalEtcd } from '../../src/store/etcd/local-cluster.js';
import { adminToken, bearerHeaders } from './credentials.js';

/** Read when a manager is made (not at import: the `*-etcd.test.ts` files set it after their imports ran). */
export const testStore = (): 'etcd' | 'sqlite' => (process.env['STRATUM_TEST_STORE'] === 'etcd' ? 'etcd' : 'sqlite');
export const skipEtcd = hasEtcd() ? false : 'etcd is not installed (Debian package etcd-server)';

interface ManagerChild {
  port: number;
  child: ChildProcess | undefined;
}

export class EtcdManagers {
  readonly etcd: LocalEtcd | undefined;
  readonly managers: ManagerChild[] = [];
  readonly #dataDir: string;
  #log = '';

  constructor(dataDir: string) {
    this.#dataDir = dataDir;
    this.etcd = undefined;
  }

  get log(): string {
    return this.#log;
  }

  get urls(): string[] {
    return this.managers.map((m) => `http://127.0.0.1:${m.port}`);
  }

  /** Starts etcd (if not running) and every manager that is not running; resolves when all answer /healthz. */
  async start(deps: { freePort(): Promise<number>; cli: string; waitFor: WaitFor; extraArgs?: string[] }, count = 3): Promise<void> {
    let etcd = this.etcd;
    if (!etcd) {
      const ports = [];
      for (let i = 0; i < 3; i++) ports.push({ client: await deps.freePort(), peer: await deps.freePort() });
      etcd = new LocalEtcd({ dir: join(this.#dataDir, 'etcd'), ports, token: `test-${process.pid}-${ports[0]?.client}` });
      (this as { etcd: LocalEtcd }).etcd = etcd;
    }
    await etcd.start();
    while (this.managers.length < count) this.managers.push({ port: await deps.freePort(), child: undefined });
    // One after the other: they share one credentials directory, and the first start creates it (CA, admin token).
    for (let i = 0; i < this.managers.length; i++) {
      if (!this.running(i)) this.startManager(i, deps.cli, deps.extraArgs ?? []);
      const url = this.urls[i];
      await deps.waitFor(`manager ${i} on ${url}`, async () => {
        if (!this.running(i)) throw new Error(`manager ${i} exited: ${this.#log}`);
        return (await fetch(`${url}/healthz`)).ok;
      }, 30_000);
    }
  }

  startManager(i: number, cli: string, extraArgs: string[] = []): void {
    const m = this.managers[i];
    const etcd = this.etcd;
    if (!m || !etcd) throw new Error(`no manager ${i}`);
    const child = spawn(process.execPath, [cli, 'manager', '--port', String(m.port), '--data-dir', this.#dataDir, '--etcd', etcd.endpoints.join(','), ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (this.#log += `[m${i}] ${d.toString()}`));
    child.stderr?.on('data', (d: Buffer) => (this.#log += `[m${i}] ${d.toString()}`));
    m.child = child;
  }

  running(i: number): boolean {
    const c = this.managers[i]?.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  pid(i: number): number | undefined {
    return this.managers[i]?.child?.pid;
  }

  /** Index of the manager that says it leads now, if any. */
  async leader(): Promise<number | undefined> {
    for (let i = 0; i < this.managers.length; i++) {
      if (!this.running(i)) continue;
      try {
        const r = (await (await fetch(`${this.urls[i]}/stratum/leader`, { headers: bearerHeaders(adminToken(this.#dataDir)), signal: AbortSignal.timeout(1000) })).json()) as { isLeader: boolean };
        if (r.isLeader) return i;
      } catch {
        // not answering
      }
    }
    return undefined;
  }

  async stopManager(i: number, sig: NodeJS.Signals): Promise<void> {
    const c = this.managers[i]?.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(sig);
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }

  async killManagers(): Promise<void> {
    await Promise.all(this.managers.map((_, i) => this.stopManager(i, 'SIGKILL')));
  }

  async stop(): Promise<void> {
    try {
      await Promise.all(this.managers.map((_, i) => this.stopManager(i, 'SIGTERM')));
    } finally {
      await this.etcd?.stop('SIGKILL');
    }
  }
}

type WaitFor = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs?: number) => Promise<T>;
