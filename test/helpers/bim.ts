// Test helpers for the backing-image manager: disks in temp dirs, `stratum bim` child processes (kill -9 and
// restart over the same disk), random and sparse files, and a small JSON client of the manager's API.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './processes.js';
import { DATA_PLANE_ENV, dataPlaneAuth } from './credentials.js';
import { DATA_SOURCE_FINISHED_FILE, DATA_SOURCE_STAGING_DIR } from '../../src/api/backing-image-data-source.js';

const here = dirname(fileURLToPath(import.meta.url));
export const BIM_ENTRY = join(here, 'bim-entry.js');

/** A disk folder with its longhorn-disk.cfg. */
export function makeDisk(root: string, label: string): { path: string; uuid: string } {
  const path = join(root, label);
  mkdirSync(path, { recursive: true });
  const uuid = randomUUID();
  writeFileSync(join(path, 'longhorn-disk.cfg'), JSON.stringify({ diskUUID: uuid }));
  return { path, uuid };
}

/** What the manager's API returns for one file. */
export type { FileInfo } from '../../src/bim/table.js';
import type { FileInfo } from '../../src/bim/table.js';

export interface Stats {
  sent: { dataBytes: number; dataRequests: number; downloadBytes: number; manifestRequests: number; busyRejections: number };
  received: { bytes: number; chunks: number; chunksRejected: number; zeroChunks: number; reusedChunks: number };
  hashedBytes: number;
}

/** A `stratum bim` child process over one disk; `start()` again after `kill9()` reuses the disk and port. */
export class BimProcess {
  readonly disk: { path: string; uuid: string };
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
  port = 0;
  #child: ChildProcess | undefined;
  #log = '';

  constructor(disk: { path: string; uuid: string }, opts: { args?: string[]; env?: NodeJS.ProcessEnv } = {}) {
    this.disk = disk;
    this.args = opts.args ?? [];
    this.env = { ...process.env, ...DATA_PLANE_ENV, ...opts.env };
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    const pid = this.#child?.pid;
    if (pid === undefined) throw new Error('bim is not running');
    return pid;
  }

  get log(): string {
    return this.#log;
  }

  get exited(): boolean {
    return !this.#child || this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  /** Spawns the process without waiting for it to serve (for start-up failures). */
  spawn(extraArgs: string[] = []): ChildProcess {
    const child = spawn(
      process.execPath,
      [BIM_ENTRY, 'bim', '--disk', this.disk.path, '--disk-uuid', this.disk.uuid, '--port', String(this.port), ...this.args, ...extraArgs],
      { stdio: ['ignore', 'pipe', 'pipe'], env: this.env },
    );
    child.stdout?.on('data', (d: Buffer) => (this.#log += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.#log += d.toString()));
    this.#child = child;
    return child;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const child = this.spawn();
    await waitFor(`bim on port ${this.port}`, async () => {
      if (child.exitCode !== null) throw new Error(`bim exited with ${child.exitCode}: ${this.#log}`);
      const res = await fetch(`${this.url}/v1/version`, { headers: dataPlaneAuth() });
      return res.ok;
    });
  }

  async kill9(): Promise<void> {
    const child = this.#child;
    if (!child || this.exited) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || this.exited) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }

  async api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { ...dataPlaneAuth(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  async file(name: string): Promise<FileInfo> {
    const r = await this.api<FileInfo>('GET', `/v1/files/${encodeURIComponent(name)}`);
    if (r.status !== 200) throw new Error(`GET ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async stats(): Promise<Stats> {
    return (await this.api<Stats>('GET', '/v1/stats')).body;
  }

  /** Waits until the file reaches one of `states`, failing early on an unexpected `failed`. */
  async waitState(name: string, states: string[], timeoutMs = 60_000): Promise<FileInfo> {
    return waitFor(
      `${name} to become ${states.join('|')}`,
      async () => {
        const f = await this.file(name);
        if (states.includes(f.state)) return f;
        if (f.state === 'failed') throw new Error(`${name} failed: ${f.message}`);
        return undefined;
      },
      timeoutMs,
    );
  }

  /** Takes a file at `sourcePath` (on this disk) over as `name`, and waits for it to be ready. */
  async fetchReady(name: string, uuid: string, sourcePath: string, size: number, extra: Record<string, unknown> = {}): Promise<FileInfo> {
    const r = await this.api('POST', `/v1/files/${encodeURIComponent(name)}/fetch`, { uuid, sourcePath, size, ...extra });
    if (r.status !== 202 && r.status !== 200) throw new Error(`fetch ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    return this.waitState(name, ['ready'], 120_000);
  }
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command with stdin closed (a tool that never reads stdin cannot fail the test with EPIPE), output captured
 * as latin1 so binary output keeps its length.
 */
export function exec(cmd: string, args: string[], timeoutMs = 300_000): Promise<ExecResult> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

/** Where a data source leaves a finished file on `disk` (the only place a manager's fetch takes files from). */
export function stagedPath(disk: { path: string }, name: string): string {
  const dir = join(disk.path, DATA_SOURCE_STAGING_DIR, `${name}-staged`);
  mkdirSync(dir, { recursive: true });
  return join(dir, DATA_SOURCE_FINISHED_FILE);
}

/** `head -c` of /dev/urandom into `path` (random data of `bytes` bytes, written by a child so the test stays light). */
export async function randomFile(path: string, bytes: number): Promise<void> {
  const r = await exec('sh', ['-c', `head -c ${bytes} /dev/urandom > '${path}'`]);
  if (r.code !== 0) throw new Error(`creating ${path}: ${r.stderr}`);
}

/** SHA-512 of a file by `sha512sum`, a peer nobody here wrote. */
export async function sha512sum(path: string): Promise<string> {
  const r = await exec('sha512sum', [path]);
  if (r.code !== 0) throw new Error(`sha512sum ${path}: ${r.stderr}`);
  return r.stdout.split(' ')[0] ?? '';
}

/** Process memory from /proc: current resident set and its high-water mark, in bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Bytes the process read through read(2) and friends (/proc/PID/io rchar), page cache hits included. */
export function bytesReadBy(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/^rchar:\s+(\d+)/m.exec(io)?.[1] ?? NaN);
}
