// Process identity from /proc: a pid alone is not an identity (pids are reused), so the agent records a pid
// together with its start time (field 22 of /proc/<pid>/stat, clock ticks since boot) and only treats a live
// process as "ours" when both match. Linux only, which is where node agents run.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat, as a decimal string (it can exceed 2^53 in theory, never in practice). */
  startTime: string;
}

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z (zombie), T, … */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  startTime: string;
}

/**
 * Parses /proc/<pid>/stat. `comm` is in parentheses and may itself contain spaces and parentheses, so the
 * fields after it are found from the last ')'.
 *
 *   1234 (my (odd) name) S 1 1234 1234 0 -1 … starttime(22) …
 *   ^1   ^2              ^3 ^4 ^5 ^6                      ^22
 */
export function parseStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3, so field n is rest[n - 3].
  const field = (n: number): string | undefined => rest[n - 3];
  const startTime = field(22);
  const state = field(3);
  if (!Number.isInteger(pid) || startTime === undefined || state === undefined || !/^\d+$/.test(startTime)) return undefined;
  return {
    pid,
    comm: text.slice(open + 1, close),
    state,
    ppid: Number(field(4)),
    pgrp: Number(field(5)),
    session: Number(field(6)),
    startTime,
  };
}

export function readStatSync(pid: number): ProcStat | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

export async function readStat(pid: number): Promise<ProcStat | undefined> {
  try {
    return parseStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The identity of a live process, or undefined when there is none (zombies count as gone). */
export function identityOf(pid: number): ProcessIdentity | undefined {
  const st = readStatSync(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return undefined;
  return { pid, startTime: st.startTime };
}

/** True when the process `id` describes is still running (same pid, same start time, not a zombie). */
export function isRunning(id: ProcessIdentity): boolean {
  const now = identityOf(id.pid);
  return now !== undefined && now.startTime === id.startTime;
}

export async function isRunningAsync(id: ProcessIdentity): Promise<boolean> {
  const st = await readStat(id.pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X' && st.startTime === id.startTime;
}

/** Sends `signal` to the process group led by `id` (a pod's shim), if that very process still runs. */
export function signalGroup(id: ProcessIdentity, signal: NodeJS.Signals): boolean {
  if (!isRunning(id)) return false;
  try {
    process.kill(-id.pid, signal);
    return true;
  } catch {
    return false;
  }
}
