// A volume's robustness from what its engine reports, and which replicas count as failed. Pure, so the rules are
// tested apart from the controller.
//
//   attached:  healthy  = at least numberOfReplicas replicas RW in the engine
//              degraded = at least one RW, fewer than wanted (the rest rebuilding, failed or not yet scheduled)
//              faulted  = no RW replica: I/O fails until one comes back
//   detached:  unknown (nothing has checked the replicas), or faulted when no usable replica is left

import type { DeepReadonly } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import type { VolumeRobustness } from '../../api/volume.js';

export function robustnessOf(opts: {
  attached: boolean;
  wanted: number;
  modes: Readonly<Record<string, string>>;
  liveReplicas: readonly string[];
}): VolumeRobustness {
  if (!opts.attached) return opts.liveReplicas.length === 0 ? 'faulted' : 'unknown';
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
