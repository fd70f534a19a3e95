// Reports of an instance's state reach a controller by two roads that do not keep pace: the instance manager's
// answer to a create, and the InstanceManager status that its stream keeps (written a moment later, and by the
// previous leader until this manager's own stream has caught up). One incarnation of an instance (its `uid`) only
// moves forward, so a report of an earlier state of the incarnation a status already recorded is stale: written, it
// would set a running replica back to starting until the next change.

import type { Instance } from '../../instance-manager/instance.js';

const ORDER: Record<string, number> = { starting: 0, running: 1, stopping: 2, stopped: 3, error: 3 };

/** True when `observed` is the incarnation `recorded` names (status.uuid) and is behind the state recorded for it. */
export function isBehind(recorded: { currentState?: string; uuid?: string } | undefined, observed: Pick<Instance, 'uid' | 'state'>): boolean {
  if (!observed.uid || observed.uid !== recorded?.uuid) return false;
  const was = ORDER[recorded.currentState ?? ''];
  const now = ORDER[observed.state];
  return was !== undefined && now !== undefined && now < was;
}

/**
 * The state to record for an instance whose instance manager cannot be asked (its node down, the manager restarting):
 * one that was up is `unknown` for as long as that lasts, since it was not seen to stop. A recorded `stopped` would
 * make the next report of the same incarnation, `running`, look stale (isBehind), and the status would never come
 * back once the manager does (a volume stayed attaching after its node's agent answered again).
 */
export function stateWhileUnreachable(current: string | undefined): 'unknown' | 'stopped' {
  return current === 'running' || current === 'starting' || current === 'unknown' ? 'unknown' : 'stopped';
}
