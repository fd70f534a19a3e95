// Waiting for a volume to reach a state (`stratum volume attach --wait`, `detach --wait`), apart from HTTP so it
// can be tested with a scripted sequence of volumes. While it waits it reports each change of state, robustness
// or condition message on stderr; a timeout names the last state and the conditions' messages (for example
// WaitForBackingImage's, naming the disk whose copy is not ready), so the operator knows why without digging.

import { StoreError } from '../../store/errors.js';

export interface V1Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface V1Controller {
  name: string;
  hostId: string;
  endpoint: string;
  running?: boolean;
}

/** The parts of Longhorn's /v1 volume JSON that the CLI reads. */
export interface V1Volume {
  name: string;
  size: string;
  state: string;
  robustness: string;
  frontend: string;
  disableFrontend: boolean;
  backingImage: string;
  nodeID: string;
  currentNodeID: string;
  conditions: Record<string, V1Condition>;
  controllers: V1Controller[];
}

/** `120`, `120s`, `2m`, `1h`, `500ms` → milliseconds. */
export function parseDuration(flag: string, v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
  if (!m) throw new StoreError('BadRequest', `${flag} must be a duration such as 120s, 2m or 500ms, not "${v}"`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? 1000;
  return Math.round(Number(m[1]) * mult);
}

/** The endpoint of the engine serving the volume on `node` (or the first one that has an endpoint). */
export function endpointOf(v: V1Volume, node?: string): string {
  const on = v.controllers.filter((c) => c.endpoint !== '' && (!node || c.hostId === node || c.hostId === ''));
  return on[0]?.endpoint ?? '';
}

/** Conditions worth showing: those with a message (a condition that is fine usually has none). */
export function conditionSummary(v: V1Volume): string {
  return Object.values(v.conditions ?? {})
    .filter((c) => c.message)
    .map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason})` : ''}: ${c.message}`)
    .join('; ');
}

export function stateSummary(v: V1Volume): string {
  const parts = [`state ${v.state || 'unknown'}`, `robustness ${v.robustness || 'unknown'}`];
  if (v.currentNodeID) parts.push(`on node ${v.currentNodeID}`);
  const conds = conditionSummary(v);
  return conds ? `${parts.join(', ')}; ${conds}` : parts.join(', ');
}

export interface WaitOptions {
  /** What is awaited, for messages: `attached on node-1 with its endpoint`. */
  what: string;
  timeoutMs: number;
  intervalMs?: number;
  report: (line: string) => void;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/**
 * Polls `get` until `done(volume)` is true and returns that volume. `done` may throw to stop early (the volume
 * was sent elsewhere). `get` returning undefined means the volume is gone, which ends the wait with an error.
 */
export async function waitForVolume(name: string, get: () => Promise<V1Volume | undefined>, done: (v: V1Volume) => boolean, o: WaitOptions): Promise<V1Volume> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = now() + o.timeoutMs;
  let last = '';
  for (;;) {
    const v = await get();
    if (!v) throw new StoreError('NotFound', `volume "${name}" was deleted while waiting for it to be ${o.what}`);
    if (done(v)) return v;
    const line = stateSummary(v);
    if (line !== last) {
      o.report(`volume ${name}: ${line}`);
      last = line;
    }
    if (now() >= deadline) {
      throw new StoreError('Internal', `timed out after ${o.timeoutMs / 1000}s waiting for volume "${name}" to be ${o.what}: ${line}`);
    }
    await sleep(Math.min(o.intervalMs ?? 500, Math.max(0, deadline - now())));
  }
}
