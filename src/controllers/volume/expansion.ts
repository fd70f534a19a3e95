// Offline expansion: the volume controller's rules for `spec.volumeSize` of a volume's Engine and Replicas. The data
// plane grows a replica when it starts with a larger size than its directory has, and an engine runs only with
// replicas of its own size, so sizes change only while instances are stopped:
//   - while the engine is stopped, every stopped replica and the engine get the volume's `spec.size`;
//   - while it runs (or is starting or stopping), replicas that join it (rebuilds) get the engine's size;
//   - a replica is started only once its size is the one it should have (replicaSizeFor).
// Sizes only grow here: a smaller size is never written (validation refuses shrinking a volume).

import type { Engine } from '../../api/engine.js';
import type { DeepReadonly } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import { sizeBytes as bytes } from '../../api/volume.js';

type RO<T> = DeepReadonly<T>;

const IDLE = new Set(['', 'stopped', 'error']);

/** Not asked to run and not running, starting or stopping: its size may change. */
export function idle(o: RO<Engine> | RO<Replica>): boolean {
  return o.spec?.desireState !== 'running' && IDLE.has(o.status?.currentState ?? '');
}

/** The size a replica of the volume must have to start: the engine's while it is not idle, else the volume's. */
export function replicaSizeFor(volumeSize: string, e: RO<Engine> | undefined): string {
  return e && !idle(e) && e.spec?.volumeSize ? e.spec.volumeSize : volumeSize;
}

/** True when `a` is a larger size than `b` (decimal byte strings). */
export const larger = (a: string | undefined, b: string | undefined): boolean => bytes(a) > bytes(b);

/**
 * Longhorn's `status.expansionRequired`: the volume is larger than what its data plane has — the engine's or a live
 * replica's `spec.volumeSize`, or the size the engine last ran with (Engine `status.currentSize`, kept after it stops;
 * unset for a volume never attached). False again once the engine has run with the new size.
 */
export function expansionRequired(volumeSize: string, e: RO<Engine>, liveReplicas: readonly RO<Replica>[]): boolean {
  const want = bytes(volumeSize);
  if (want === 0n) return false;
  const current = bytes(e.status?.currentSize);
  if (current > 0n && current < want) return true;
  return bytes(e.spec?.volumeSize) < want || liveReplicas.some((r) => bytes(r.spec?.volumeSize) < want);
}
