// A volume's robustness from what its engine reports, and which replicas count as failed. Pure, so the rules are
// tested apart from the controller.
//
//   attached:  healthy  = at least numberOfReplicas replicas RW in the engine
//              degraded = at least one RW, fewer than wanted (the rest rebuilding, failed or not yet scheduled)
//              faulted  = no RW replica: I/O fails until one comes back
//   detached:  unknown (nothing has checked the replicas, or none was made yet: a new volume), or faulted when
//              replicas were made and none of them is usable any more

import type { DeepReadonly } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import type { VolumeRobustness } from '../../api/volume.js';

export function robustnessOf(opts: {
  attached: boolean;
  wanted: number;
  modes: Readonly<Record<string, string>>;
  liveReplicas: readonly string[];
  /** Replicas that exist, failed ones included. */
  madeReplicas: number;
}): VolumeRobustness {
  if (!opts.attached) return opts.liveReplicas.length === 0 && opts.madeReplicas > 0 ? 'faulted' : 'unknown';
  const rw = opts.liveReplicas.filter((n) => opts.modes[n] === 'RW').length;
  if (rw === 0) return 'faulted';
  return rw >= opts.wanted ? 'healthy' : 'degraded';
}

/**
 * Why a live replica should now be marked failed, or undefined. A replica fails when its process errored, when
 * the running engine marked it ERR, or when its node is down while the volume needs it.
 */
export function failureOf(opts: {
  replica: DeepReadonly<Replica>;
  engineRunning: boolean;
  engineMode: string | undefined;
  engineError: string | undefined;
  nodeReady: boolean;
  needed: boolean;
}): string | undefined {
  const r = opts.replica;
  if (r.spec?.failedAt) return undefined;
  if (opts.engineRunning && opts.engineMode === 'ERR') return `the engine marked it ERR${opts.engineError ? `: ${opts.engineError}` : ''}`;
  if (r.status?.currentState === 'error') {
    const why = (r.status.conditions ?? []).find((c) => c.type === 'InstanceReady')?.message;
    return `it failed on its instance manager${why ? `: ${why}` : ''}`;
  }
  if (opts.needed && !opts.nodeReady) return `its node ${r.spec?.nodeID} is down`;
  return undefined;
}

export interface RobustnessEvent {
  type: 'Normal' | 'Warning';
  reason: 'Degraded' | 'Faulted' | 'Healthy';
  message: string;
}

/**
 * The event for a change of robustness, or undefined: a volume that turns degraded or faulted (a Warning naming the
 * replicas that are not RW and what they are), and one that is healthy again after either. Attaching a volume whose
 * replicas are all RW (unknown to healthy) is no news.
 */
export function robustnessEvent(opts: {
  /** The stored robustness ('' or undefined before the first status). */
  from: VolumeRobustness | '' | undefined;
  to: VolumeRobustness;
  wanted: number;
  modes: Readonly<Record<string, string>>;
  liveReplicas: readonly string[];
  /** Each live replica's process state (its status' currentState), said of those not in the engine. */
  processStates?: Readonly<Record<string, string>>;
}): RobustnessEvent | undefined {
  const { from, to } = opts;
  if (from === to) return undefined;
  const rw = opts.liveReplicas.filter((n) => opts.modes[n] === 'RW');
  const others = opts.liveReplicas
    .filter((n) => opts.modes[n] !== 'RW')
    .sort()
    .map((n) => `${n} ${describeMode(opts.modes[n], opts.processStates?.[n])}`);
  const count = `${rw.length} of ${opts.wanted} replica${opts.wanted === 1 ? '' : 's'} RW`;
  const rest = others.length > 0 ? `; ${others.join(', ')}` : opts.liveReplicas.length < opts.wanted ? '; the others are failed or not yet scheduled' : '';
  if (to === 'degraded') return { type: 'Warning', reason: 'Degraded', message: `volume is degraded: ${count}${rest}` };
  if (to === 'faulted') {
    const why = opts.liveReplicas.length === 0 ? 'no usable replica is left' : `no replica is RW${rest}`;
    return { type: 'Warning', reason: 'Faulted', message: `volume is faulted: ${why}` };
  }
  if (to === 'healthy' && (from === 'degraded' || from === 'faulted')) return { type: 'Normal', reason: 'Healthy', message: `volume is healthy again: ${count}` };
  return undefined;
}

function describeMode(mode: string | undefined, process: string | undefined): string {
  if (mode === 'WO') return 'WO (rebuilding)';
  if (mode === 'ERR') return 'ERR';
  return `not in the engine (its process is ${process || 'not started'})`;
}
