// Restart policy and crash-loop backoff, as the kubelet does them: after the n-th consecutive failure a container
// waits base·2^(n-1) before it starts again (10 s, 20 s, 40 s … capped at 5 min by default), and a container that
// ran long enough (2 × the cap, 10 min by default) starts its count over. The base is configurable so tests run
// in milliseconds. Pure functions only.

import type { PodSpec } from '../api/pod.js';

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** A run at least this long resets the failure count. */
  resetAfterMs: number;
}

/** The kubelet's numbers scaled from `baseMs` (default 10 s): cap 30 × base, reset after 2 × cap. */
export function backoffPolicy(baseMs = 10_000, maxMs = baseMs * 30): BackoffPolicy {
  if (!(baseMs > 0) || !(maxMs >= baseMs)) throw new RangeError(`restart backoff needs 0 < base <= max, got ${baseMs}, ${maxMs}`);
  return { baseMs, maxMs, resetAfterMs: 2 * maxMs };
}

/** How long to wait before the next start after `failures` consecutive failures (0 → no wait). */
export function restartDelayMs(failures: number, p: BackoffPolicy): number {
  if (failures <= 0) return 0;
  return Math.min(p.baseMs * 2 ** Math.min(failures - 1, 52), p.maxMs);
}

/** The failure count after an instance that ran `ranForMs` ended. */
export function failuresAfterExit(previous: number, ranForMs: number, p: BackoffPolicy): number {
  return ranForMs >= p.resetAfterMs ? 1 : previous + 1;
}

const VOLUME_RECHECK = backoffPolicy(250, 2000);

/**
 * How long a pod waits before it checks its volumes again after `checks` checks found them not ready (bound, attached,
 * mounted): 250 ms doubling to 2 s. An attach usually takes about a second, so the pod starts soon after its volume
 * is attached, and a volume that takes longer costs one check every 2 s.
 */
export function volumeRecheckMs(checks: number): number {
  return restartDelayMs(Math.max(checks, 1), VOLUME_RECHECK);
}

export type RestartPolicy = NonNullable<PodSpec['restartPolicy']>;

/** Whether a container that exited with `exitCode` is started again. */
export function shouldRestart(policy: RestartPolicy | undefined, exitCode: number): boolean {
  switch (policy ?? 'Always') {
    case 'Always':
      return true;
    case 'OnFailure':
      return exitCode !== 0;
    case 'Never':
      return false;
  }
}
