// Test helpers that start real Stratum processes (the compiled CLI) in temp dirs and real peers (kubectl).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtcdManagers, testStore } from './etcd-managers.js';
import { adminToken, kubeconfigFor, rememberCluster, tokenFor } from './credentials.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from dist/test/helpers). */
export const REPO = resolve(here, '..', '..', '..');
export const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `stratum-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

export function hasTool(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** A test's `skip`: why it cannot run here (the tools it drives that are missing, or root for loop devices and mount), else false. */
export function skipWithoutRootAnd(tools: readonly string[]): string | false {
  const missing = tools.filter((t) => !hasTool(t));
  if (missing.length > 0) return `needs ${missing.join(', ')}`;
  return process.getuid?.() === 0 ? false : 'needs root (loop devices and mount)';
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
}

/**
 * A `stratum manager` process on a free port over a data dir that outlives restarts. With STRATUM_TEST_STORE=etcd
 * it is three managers on a three-member etcd instead (`etcd`); `url` is the first, `urls` all of them, and
 * kill9/stop act on all managers.
 */
export class ManagerProcess {
  readonly dataDir: string;
  readonly etcd: EtcdManagers | undefined;
  port = 0;
  #child: ChildProcess | undefined;
  #log = '';

  readonly #extraArgs: string[];

  /** `extraArgs` go after the manager's own flags (e.g. `--event-ttl 2`). */
  constructor(dataDir: string, extraArgs: string[] = []) {
    this.dataDir = dataDir;
    this.etcd = testStore() === 'etcd' ? new EtcdManagers(dataDir) : undefined;
    this.#extraArgs = extraArgs;
  }

  /** On etcd: the first manager still running (a test may have killed one). */
  get url(): string {
    if (this.etcd) {
      const live = this.etcd.managers.findIndex((_, i) => this.etcd?.running(i));
      return this.etcd.urls[Math.max(0, live)] ?? `http://127.0.0.1:${this.port}`;
    }
    return `http://127.0.0.1:${this.port}`;
  }

  /** Every manager's URL, comma-separated (what agents and the CLI accept). */
  get urls(): string {
    return this.etcd ? this.etcd.urls.join(',') : this.url;
  }

  get pid(): number | undefined {
    return this.etcd ? this.etcd.pid(0) : this.#child?.pid;
  }

  get log(): string {
    return this.etcd ? this.etcd.log : this.#log;
  }

  /** The exit status of the (SQLite-mode) manager process once it exited on its own; null while it runs. */
  get exitCode(): number | null {
    return this.#child?.exitCode ?? null;
  }

  async start(): Promise<void> {
    if (this.etcd) {
      await this.etcd.start({ freePort, cli: CLI, waitFor, extraArgs: this.#extraArgs });
      this.port = this.etcd.managers[0]?.port ?? 0;
      // The managers share one credentials directory: one admin token for all of them.
      for (const url of this.etcd.urls) rememberCluster(url, this.dataDir);
      return;
    }
    if (this.port === 0) this.port = await freePort();
    const child = spawn(process.execPath, [CLI, 'manager', '--port', String(this.port), '--data-dir', this.dataDir, ...this.#extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (this.#log += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.#log += d.toString()));
    this.#child = child;
    await waitFor(`manager on port ${this.port} (log: ${this.#log})`, async () => {
      if (child.exitCode !== null) throw new Error(`manager exited with ${child.exitCode}: ${this.#log}`);
      const res = await fetch(`${this.url}/healthz`);
      return res.ok;
    });
    rememberCluster(this.url, this.dataDir);
  }

  /** The admin token the manager wrote to `<data dir>/kubeconfig` on its first start. */
  get token(): string {
    return adminToken(this.dataDir);
  }

  /** SIGKILL, no chance to flush anything. */
  async kill9(): Promise<void> {
    if (this.etcd) return this.etcd.killManagers();
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    if (this.etcd) return this.etcd.stop();
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment for a `stratum` CLI run against a test cluster: its admin token (the CLI would otherwise look
 * for `.stratum/kubeconfig` in the working directory, which belongs to the developer's own cluster).
 */
export function cliEnv(args: readonly string[], env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const i = args.indexOf('--server');
  const token = i >= 0 ? tokenFor(args[i + 1] ?? '') : undefined;
  return token && args.includes(CLI) ? { ...env, STRATUM_TOKEN: token } : env;
}

export async function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: cliEnv(args, opts.env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
    // A command that never reads stdin must not fail the test with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

export function stratum(server: string, args: string[], input?: string): Promise<RunResult> {
  return run(process.execPath, [CLI, '--server', server, ...args], input === undefined ? {} : { input });
}

export function kubectl(server: string, args: string[], input?: string): Promise<RunResult> {
  // An empty kubeconfig keeps the developer's own config out of the way.
  const env = { ...process.env, KUBECONFIG: '/dev/null' };
  return run('kubectl', kubectlArgs(server, args), { env, ...(input === undefined ? {} : { input }) });
}

/** `--kubeconfig FILE` (the cluster's own, as the manager or `stratum up` wrote it) followed by `args`. */
export function kubectlArgs(server: string, args: string[]): string[] {
  const file = kubeconfigFor(server);
  // --server too: on etcd the kubeconfig names the first of several managers (the CA and token fit all of them).
  return [...(file ? ['--kubeconfig', file, '--server', server.replace(/^http:/, 'https:')] : ['--server', server]), ...args];
}
