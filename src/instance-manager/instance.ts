// One hosted instance: a `stratum replica` or `stratum engine` child process and its state. The state comes from
// the child itself: "starting" until its one JSON ready line on stdout, "running" after; an exit that was not
// asked for is "error" with the reason (signal, or exit code and the last stderr line). Nothing is restarted here:
// the controllers see the error and decide.
//
//   starting ──ready line──► running ──stop()──► stopping ──exit──► stopped
//      │                        │
//      └──exit / no ready in time──┴──────────────────────────────► error

import { spawn, type ChildProcess } from 'node:child_process';
import { LineRing } from './line-ring.js';
import type { InstanceSpec } from './spec.js';

export type InstanceState = 'starting' | 'running' | 'stopping' | 'stopped' | 'error';

/** What the API shows of an instance. */
export interface Instance {
  name: string;
  type: InstanceSpec['type'];
  state: InstanceState;
  pid: number;
  /** Replica: where it serves ("host:port"). */
  address?: string;
  /** Engine: the NBD URI, the control API ("host:port"), the block device path (frontend blockdev). */
  nbd?: string;
  control?: string;
  device?: string;
  errorMsg?: string;
  exitCode?: number;
  signal?: string;
  startedAt: string;
  spec: InstanceSpec;
}

export interface ChildOptions {
  /** argv[0] and the leading arguments: [process.execPath, <repo>/dist/src/cli/main.js]. */
  command: readonly string[];
  args: string[];
  readyTimeoutMs: number;
  stopGraceMs: number;
  logLines: number;
  /** Each stderr line of the child (the manager forwards them to its own stderr, prefixed). */
  onLog?: (line: string) => void;
  /** Called after every state change. */
  onChange: () => void;
  now?: () => Date;
}

export class InstanceProcess {
  readonly name: string;
  readonly spec: InstanceSpec;
  readonly log: LineRing;
  readonly #child: ChildProcess;
  readonly #opts: ChildOptions;
  readonly #startedAt: string;
  readonly #exited: Promise<void>;
  readonly #ready: { address?: string; nbd?: string; control?: string; device?: string } = {};
  #state: InstanceState = 'starting';
  #errorMsg: string | undefined;
  #exitCode: number | undefined;
  #signal: string | undefined;
  #readyTimer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;

  constructor(name: string, spec: InstanceSpec, opts: ChildOptions) {
    this.name = name;
    this.spec = spec;
    this.#opts = opts;
    this.log = new LineRing(opts.logLines);
    this.#startedAt = (opts.now?.() ?? new Date()).toISOString();
    const [cmd, ...pre] = opts.command;
    // Not detached: the children share the manager's process group, so a signal to the pod's group reaches them.
    this.#child = spawn(cmd!, [...pre, ...opts.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    this.#child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      let nl: number;
      while ((nl = stdout.indexOf('\n')) >= 0) {
        this.#onStdoutLine(stdout.slice(0, nl));
        stdout = stdout.slice(nl + 1);
      }
      if (stdout.length > 64 * 1024) stdout = '';
    });
    this.#child.stderr!.setEncoding('utf8').on('data', (d: string) => this.log.push(d, opts.onLog));
    this.#exited = new Promise((resolve) => {
      this.#child.once('error', (err) => {
        // Spawn failed (no such binary): there will be no 'exit'.
        if (this.#child.pid === undefined) {
          this.#fail(`${this.#what} could not be started: ${err.message}`);
          resolve();
        }
      });
      this.#child.once('close', (code, signal) => {
        this.log.end(opts.onLog);
        this.#onExit(code, signal);
        resolve();
      });
    });
    this.#readyTimer = setTimeout(() => {
      if (this.#state !== 'starting') return;
      this.#fail(`${this.#what} did not report ready within ${opts.readyTimeoutMs / 1000} s; killed`);
      this.#child.kill('SIGKILL');
    }, opts.readyTimeoutMs);
  }

  get #what(): string {
    return `${this.spec.type} ${this.name}`;
  }

  get state(): InstanceState {
    return this.#state;
  }

  /** True once the child process is gone (stopped or error after exit). */
  get exited(): Promise<void> {
    return this.#exited;
  }

  info(): Instance {
    return {
      name: this.name,
      type: this.spec.type,
      state: this.#state,
      pid: this.#child.pid ?? 0,
      ...this.#ready,
      ...(this.#errorMsg === undefined ? {} : { errorMsg: this.#errorMsg }),
      ...(this.#exitCode === undefined ? {} : { exitCode: this.#exitCode }),
      ...(this.#signal === undefined ? {} : { signal: this.#signal }),
      startedAt: this.#startedAt,
      spec: this.spec,
    };
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the child exited. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.#child.exitCode !== null || this.#child.signalCode !== null || this.#child.pid === undefined) {
        await this.#exited;
        return;
      }
      if (this.#state === 'starting' || this.#state === 'running') this.#set('stopping');
      this.#child.kill('SIGTERM');
      const kill = setTimeout(() => this.#child.kill('SIGKILL'), this.#opts.stopGraceMs);
      await this.#exited;
      clearTimeout(kill);
    })();
    return this.#stopping;
  }

  #onStdoutLine(line: string): void {
    if (this.#state !== 'starting') return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // Not the ready line: children print only that one, but a stray line must not break the manager.
    }
    if (msg.ready !== true) return;
    for (const k of ['address', 'nbd', 'control', 'device'] as const) if (typeof msg[k] === 'string') this.#ready[k] = msg[k];
    clearTimeout(this.#readyTimer);
    this.#set('running');
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    clearTimeout(this.#readyTimer);
    if (code !== null) this.#exitCode = code;
    if (signal !== null) this.#signal = signal;
    if (this.#state === 'stopping') return this.#set('stopped');
    if (this.#state === 'error') return this.#opts.onChange(); // exit code/signal of a child killed for a timeout
    const why = signal !== null ? `signal ${signal}` : `code ${code}${this.log.last() ? `: ${this.log.last()}` : ''}`;
    this.#fail(`${this.#what} exited with ${why}`);
  }

  #fail(message: string): void {
    clearTimeout(this.#readyTimer);
    this.#errorMsg = message;
    this.#set('error');
  }

  #set(state: InstanceState): void {
    this.#state = state;
    this.#opts.onChange();
  }
}
