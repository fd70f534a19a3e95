// Helpers for the volume data-path tests: replica and engine child processes (started from the compiled entry
// scripts beside this file), the engine's control API, and runners for the outside tools (qemu-img, fio, nbdcopy,
// debugfs, e2fsck) that capture their output for failure messages.

import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EngineStatus } from '../../src/engine/index.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface ToolResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Run a tool to completion (killed after `timeoutMs`); stdout is kept as bytes (debugfs cat prints binary). */
export function tool(cmd: string, args: string[], timeoutMs = 60_000): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}

/** Run a tool and fail with its output unless it exits 0. */
export async function mustRun(cmd: string, args: string[], timeoutMs?: number): Promise<Buffer> {
  const r = await tool(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout.toString().slice(0, 2000)}`);
  return r.stdout;
}

const live = new Set<ChildProcess>();
// A test process that dies must not leave replicas and engines behind.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** A child process started from one of the datapath-*-main scripts, ready once it printed its JSON line. */
export class DataPathProcess<Ready> {
  readonly what: string;
  readonly child: ChildProcess;
  readonly ready: Promise<Ready>;
  readonly exited: Promise<number | null>;
  #log = '';

  constructor(what: string, script: string, options: unknown) {
    this.what = what;
    this.child = spawn(process.execPath, [join(here, script), JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stderr?.on('data', (d: Buffer) => (this.#log += d.toString()));
    live.add(this.child);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        live.delete(this.child);
        resolve(code);
      }),
    );
    this.ready = new Promise((resolve, reject) => {
      let buf = '';
      this.child.stdout?.on('data', (d: Buffer) => {
        buf += d.toString();
        const line = buf.split('\n').find((l) => l.startsWith('{"ready"'));
        if (line) resolve(JSON.parse(line) as Ready);
      });
      void this.exited.then((code) => reject(new Error(`${what} exited (${code}) before it was ready: ${this.#log}`)));
      setTimeout(() => reject(new Error(`${what} not ready after 20 s: ${this.#log}`)), 20_000).unref();
    });
  }

  get log(): string {
    return this.#log;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGKILL: no chance to answer, flush or close anything. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM and wait for the graceful shutdown (SIGKILL after 15 s). */
  async stop(): Promise<number | null> {
    if (!this.running) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

export interface ReplicaReady {
  ready: true;
  address: { host: string; port: number };
}

export interface ReplicaSpec {
  name: string;
  dir: string;
  /** Create the replica with this size when the directory holds none; omit to open an existing one. */
  size?: number;
  backing?: { name: string; uuid: string; path: string };
}

export async function startReplica(spec: ReplicaSpec): Promise<{ proc: DataPathProcess<ReplicaReady>; address: string }> {
  const proc = new DataPathProcess<ReplicaReady>(`replica ${spec.name}`, 'datapath-replica-main.js', {
    dir: spec.dir,
    listen: { host: '127.0.0.1', port: 0 },
    ...(spec.size === undefined ? {} : { create: { name: spec.name, size: spec.size, ...(spec.backing ? { backing: spec.backing } : {}) } }),
  });
  const ready = await proc.ready;
  return { proc, address: `${ready.address.host}:${ready.address.port}` };
}

export interface EngineReady {
  ready: true;
  nbdUri: string;
  control: { host: string; port: number };
}

export class EngineProcess {
  readonly proc: DataPathProcess<EngineReady>;
  nbdUri = '';
  nbdPort = 0;
  exportName = '';
  controlUrl = '';

  constructor(volume: string, size: number, replicas: { name: string; address: string }[], requestTimeoutMs = 3000) {
    this.proc = new DataPathProcess<EngineReady>(`engine ${volume}`, 'datapath-engine-main.js', {
      volume,
      size,
      replicas,
      nbd: { host: '127.0.0.1', port: 0 },
      control: { host: '127.0.0.1', port: 0 },
      requestTimeoutMs,
      pingIntervalMs: 500,
    });
  }

  static async start(volume: string, size: number, replicas: { name: string; address: string }[]): Promise<EngineProcess> {
    const e = new EngineProcess(volume, size, replicas);
    const ready = await e.proc.ready;
    e.nbdUri = ready.nbdUri;
    const u = new URL(ready.nbdUri);
    e.nbdPort = Number(u.port);
    e.exportName = decodeURIComponent(u.pathname.slice(1));
    e.controlUrl = `http://${ready.control.host}:${ready.control.port}`;
    return e;
  }

  async status(): Promise<EngineStatus> {
    const res = await fetch(`${this.controlUrl}/v1/engine`);
    if (!res.ok) throw new Error(`GET /v1/engine: ${res.status} ${await res.text()}`);
    return (await res.json()) as EngineStatus;
  }

  async addReplica(name: string, address: string): Promise<void> {
    const res = await fetch(`${this.controlUrl}/v1/engine/replicas`, { method: 'POST', body: JSON.stringify({ name, address }), headers: { 'content-type': 'application/json' } });
    if (res.status !== 202) throw new Error(`POST /v1/engine/replicas: ${res.status} ${await res.text()}`);
  }

  async removeReplica(name: string): Promise<void> {
    const res = await fetch(`${this.controlUrl}/v1/engine/replicas/${encodeURIComponent(name)}`, { method: 'DELETE' });
    if (!res.ok) throw new Error(`DELETE replica ${name}: ${res.status} ${await res.text()}`);
  }

  /** Poll the status until `pred` holds (or fail after `timeoutMs` with the last status). */
  async waitFor(what: string, pred: (s: EngineStatus) => boolean, timeoutMs = 30_000): Promise<EngineStatus> {
    const deadline = Date.now() + timeoutMs;
    let last: EngineStatus | undefined;
    while (Date.now() < deadline) {
      last = await this.status();
      if (pred(last)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}; last status ${JSON.stringify(last)}; log: ${this.proc.log}`);
  }
}
