// One run of a pod's process ("instance" n = the restart count it started with), wrapped in a tiny POSIX `sh`
// shim that outlives the agent:
//
//   agent ──spawn(detached: setsid)──► sh shim (session + group leader; pid recorded with its start time)
//                                        ├─ "$@" &             the pod's process; stdout+stderr → logs/<n>.log
//                                        ├─ writes pid-<n>     so the agent knows the pod's own pid
//                                        ├─ waits for it, forwarding nothing: signals go to the whole group
//                                        └─ writes exit-<n>    its exit status, even when no agent is running
//
// Why a shim: once the agent is gone, nobody reaps the pod's process or sees its exit code; the shim does, for
// the cost of one `sh` (about 1 MB), instead of a Node.js process per pod. Why signals go to the group: a
// non-interactive `sh` ignores SIGINT/SIGQUIT in background jobs, and a group signal reaches the pod's own
// children too. The shim traps TERM/INT/HUP with a no-op so it keeps waiting for the process instead of dying
// first, and loops on `wait` because a trapped signal interrupts it (status > 128) before the process ended.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AgentError } from './errors.js';
import { identityOf, isRunning, isRunningAsync, readStatSync, type ProcessIdentity } from './proc.js';
import { sleep } from './sleep.js';

const SHIM = [
  'dir=$1; n=$2; shift 2',
  '"$@" </dev/null &',
  'pid=$!',
  'echo "$pid" > "$dir/pid-$n.tmp" && mv "$dir/pid-$n.tmp" "$dir/pid-$n"',
  "trap ':' TERM INT HUP",
  'while :; do',
  '  wait "$pid"; rc=$?',
  '  if [ "$rc" -le 128 ] || ! kill -0 "$pid" 2>/dev/null; then break; fi',
  'done',
  'echo "$rc" > "$dir/exit-$n.tmp" && mv "$dir/exit-$n.tmp" "$dir/exit-$n"',
  'exit "$rc"',
].join('\n');

export interface InstanceRecord {
  /** Instance number: the restart count when it started; names its log and status files. */
  n: number;
  shim: ProcessIdentity;
  /** The pod's own process, once the shim reported it. */
  process?: ProcessIdentity;
  startedAt: string;
}

export interface ExitRecord {
  n: number;
  exitCode: number;
  /** Set when the process was killed by a signal (exit status 128 + signal). */
  signal?: number;
  reason: string;
  message?: string;
  startedAt: string;
  finishedAt: string;
}

export interface StartOptions {
  /** The pod's state directory; pid/exit files go here. */
  dir: string;
  n: number;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  logFile: string;
  signal?: AbortSignal;
}

export interface Started {
  record: InstanceRecord;
  /** The shim as our child (only for instances this agent started; adopted ones have none). */
  child: ChildProcess;
}

export async function startInstance(o: StartOptions): Promise<Started> {
  mkdirSync(o.dir, { recursive: true });
  mkdirSync(dirname(o.logFile), { recursive: true });
  const fd = openSync(o.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn('/bin/sh', ['-c', SHIM, 'stratum-pod-shim', o.dir, String(o.n), ...o.argv], {
      cwd: o.cwd,
      env: o.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    // The child has its own copy of the descriptor; ours is not needed.
    closeSync(fd);
  }
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    throw new AgentError('StartFailed', `Cannot start ${o.argv.join(' ')}: ${(await spawnError).message}`);
  }
  const startedAt = new Date().toISOString();
  // The shim may already be gone (a command that fails at once); its start time is then unknowable, and "0"
  // never matches a live process, which is the truth.
  const shim = identityOf(pid) ?? { pid, startTime: '0' };
  const record: InstanceRecord = { n: o.n, shim, startedAt };
  const processPid = await waitForPidFile(o.dir, o.n, shim, o.signal);
  if (processPid !== undefined) {
    const id = identityOf(processPid);
    if (id) record.process = id;
  }
  return { record, child };
}

/** Waits (up to 5 s) for the shim to report the pod process's pid. */
async function waitForPidFile(dir: string, n: number, shim: ProcessIdentity, signal?: AbortSignal): Promise<number | undefined> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !signal?.aborted) {
    const text = await readFile(join(dir, `pid-${n}`), 'utf8').catch(() => undefined);
    if (text !== undefined && /^\d+\s*$/.test(text)) return Number(text);
    if (!isRunning(shim)) return undefined;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}

/** The pod process's pid from its pid file, for adopted instances recorded before it was known. */
export async function readPidFile(dir: string, n: number): Promise<number | undefined> {
  const text = await readFile(join(dir, `pid-${n}`), 'utf8').catch(() => undefined);
  return text !== undefined && /^\d+\s*$/.test(text) ? Number(text) : undefined;
}

/** True while the instance's shim runs. */
export function instanceRunning(r: InstanceRecord): boolean {
  return isRunning(r.shim);
}

/**
 * Resolves once the instance ended, with its exit record. Our own child is awaited by its exit event, an
 * adopted one by polling /proc (it is not our child, so there is no event). Rejects with `signal.reason`.
 */
export async function waitForExit(dir: string, r: InstanceRecord, child: ChildProcess | undefined, signal: AbortSignal, pollMs = 500): Promise<ExitRecord> {
  if (child && child.exitCode === null && child.signalCode === null) {
    // The child is unref'd so the agent can exit without it; while someone waits for it, it must keep the
    // event loop alive (AbortSignal.timeout timers do not).
    child.ref();
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        child.off('exit', onExit);
        reject(signal.reason);
      };
      const onExit = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal.aborted) return onAbort();
      child.once('exit', onExit);
      signal.addEventListener('abort', onAbort, { once: true });
    }).finally(() => child.unref());
  } else {
    while (await isRunningAsync(r.shim)) {
      await sleep(pollMs, signal);
    }
  }
  return readExit(dir, r);
}

/** The exit record of an instance whose shim is gone. */
export async function readExit(dir: string, r: InstanceRecord): Promise<ExitRecord> {
  const file = join(dir, `exit-${r.n}`);
  const text = await readFile(file, 'utf8').catch(() => undefined);
  const finishedAt = (await stat(file).catch(() => undefined))?.mtime.toISOString() ?? new Date().toISOString();
  if (text === undefined || !/^\d+\s*$/.test(text)) {
    // The shim itself was killed (SIGKILL to the group, OOM): the process went with it or is orphaned.
    if (r.process && isRunning(r.process)) killProcess(r.process, 'SIGKILL');
    return {
      n: r.n,
      exitCode: 137,
      reason: 'ContainerStatusUnknown',
      message: 'the process ended but its exit status was not recorded (its wrapper was killed); assumed killed',
      startedAt: r.startedAt,
      finishedAt,
    };
  }
  const exitCode = Number(text);
  const out: ExitRecord = {
    n: r.n,
    exitCode,
    reason: exitCode === 0 ? 'Completed' : 'Error',
    startedAt: r.startedAt,
    finishedAt,
  };
  if (exitCode > 128 && exitCode < 160) out.signal = exitCode - 128;
  return out;
}

/**
 * Signals the instance: the shim's process group when the shim still runs, else the pod process alone (if it is
 * still the one we started). False when neither runs.
 */
export function signalInstance(r: InstanceRecord, sig: NodeJS.Signals): boolean {
  if (isRunning(r.shim)) {
    try {
      process.kill(-r.shim.pid, sig);
      return true;
    } catch {
      return false;
    }
  }
  return r.process !== undefined && killProcess(r.process, sig);
}

function killProcess(id: ProcessIdentity, sig: NodeJS.Signals): boolean {
  if (!isRunning(id)) return false;
  const st = readStatSync(id.pid);
  try {
    // Still in the shim's group (the shim died alone): take the whole group down.
    process.kill(st && st.pgrp === id.pid ? -id.pid : id.pid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGTERM, then SIGKILL after `graceMs`, then wait (bounded) for the end. Resolves with the exit record, or
 * undefined when the instance would not die even after SIGKILL within 10 s (a process stuck in the kernel).
 */
export async function stopInstance(dir: string, r: InstanceRecord, child: ChildProcess | undefined, graceMs: number): Promise<ExitRecord | undefined> {
  if (!instanceRunning(r)) return readExit(dir, r);
  signalInstance(r, 'SIGTERM');
  const tryWait = async (ms: number): Promise<ExitRecord | undefined> => {
    try {
      return await waitForExit(dir, r, child, AbortSignal.timeout(ms), 100);
    } catch {
      return undefined;
    }
  };
  const graceful = await tryWait(Math.max(graceMs, 1));
  if (graceful) return graceful;
  signalInstance(r, 'SIGKILL');
  const killed = await tryWait(10_000);
  if (killed?.reason !== 'ContainerStatusUnknown') return killed;
  // SIGKILL reached the shim too, so no status was written; we know what happened.
  return {
    ...killed,
    signal: 9,
    reason: 'Error',
    message: `did not stop within ${Math.round(graceMs / 1000)} s of SIGTERM (terminationGracePeriodSeconds); killed`,
  };
}
