// The pure half of the node controller: from a Node's heartbeat Lease, the clock and `node-down-timeout`, what
// its Ready condition should be and when to look again. No I/O, so FakeClock tests cover every branch.

import type { Condition, DeepReadonly } from '../../api/meta.js';
import type { Lease } from '../../api/lease.js';
import { NodeReadyReason } from '../../api/node-contract.js';

export interface ReadinessInput {
  nodeName: string;
  /** The Node's creationTimestamp in ms, to give a freshly registered node its first heartbeat window. */
  createdAtMs: number;
  lease: DeepReadonly<Lease> | undefined;
  nowMs: number;
  timeoutSeconds: number;
  /** The current Ready condition, to keep a False message stable while the node stays down. */
  current: DeepReadonly<Condition> | undefined;
}

export interface Readiness {
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  /** Look again after this many ms (when the heartbeat would expire), or undefined to wait for an event. */
  recheckAfterMs: number | undefined;
}

/** Lease renewTime (or acquireTime) in ms, or undefined when missing or unparsable. */
export function lastHeartbeatMs(lease: DeepReadonly<Lease> | undefined): number | undefined {
  const t = lease?.spec?.renewTime ?? lease?.spec?.acquireTime;
  if (!t) return undefined;
  const ms = Date.parse(t);
  return Number.isFinite(ms) ? ms : undefined;
}

export function computeReadiness(i: ReadinessInput): Readiness {
  const timeoutMs = i.timeoutSeconds * 1000;
  const last = lastHeartbeatMs(i.lease);
  const hint = `is \`stratum node --name ${i.nodeName}\` running there?`;
  if (last === undefined) {
    // A node whose agent registered it but has not renewed yet gets one timeout's grace before it is judged.
    const graceLeft = i.createdAtMs + timeoutMs - i.nowMs;
    if (graceLeft > 0 && i.current?.status !== 'False') {
      return {
        status: 'Unknown',
        reason: NodeReadyReason.registered,
        message: `waiting for the first heartbeat of ${i.nodeName}`,
        recheckAfterMs: graceLeft,
      };
    }
    return keepIfSame(i.current, {
      status: 'False',
      reason: NodeReadyReason.noHeartbeat,
      message: `${i.nodeName} has never sent a heartbeat (no Lease ${i.lease?.metadata.name ?? i.nodeName} in the ` +
        `node's namespace): ${hint}`,
      recheckAfterMs: undefined,
    });
  }
  const age = i.nowMs - last;
  if (age > timeoutMs) {
    return keepIfSame(i.current, {
      status: 'False',
      reason: NodeReadyReason.heartbeatTimeout,
      message: `no heartbeat from ${i.nodeName} for ${Math.round(age / 1000)} s (node-down-timeout ` +
        `${i.timeoutSeconds} s): ${hint}`,
      recheckAfterMs: undefined,
    });
  }
  return {
    status: 'True',
    reason: NodeReadyReason.heartbeat,
    message: `${i.nodeName} is ready: its node agent renews its heartbeat`,
    // One ms past the deadline, so the recheck sees the heartbeat as expired rather than exactly due.
    recheckAfterMs: timeoutMs - age + 1,
  };
}

/** While a node stays down, keep the message written at the transition: rewriting "for 35 s", "for 36 s", … would be a write per look. */
function keepIfSame(current: DeepReadonly<Condition> | undefined, next: Readiness): Readiness {
  if (current?.status === next.status && current.reason === next.reason && current.message) {
    return { ...next, message: current.message };
  }
  return next;
}
