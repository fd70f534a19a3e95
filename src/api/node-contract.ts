// What the node agent (`stratum node`) and the node controller agree on: where heartbeats live, which Node
// annotations the agent publishes, who owns which condition, and the condition helper both use.
//
//   agent  ── renews Lease longhorn-system/<node> every few seconds (spec.renewTime) ──►  node controller
//   agent  ── writes Node spec.disks, status.diskStatus, condition Schedulable,
//             annotation stratum.io/agent-url (its HTTP endpoint: pod logs) ──────────►  manager (pod logs)
//   node controller ── owns condition Ready: False when no heartbeat for `node-down-timeout` seconds
//
// The agent only creates `Ready` (as Unknown) when the Node has none; the node controller decides it after that.

import type { Condition, DeepReadonly } from './meta.js';

/** Leases of node heartbeats live beside the Nodes, named after them. */
export const LEASE_NAMESPACE = 'longhorn-system';

/** The node agent's HTTP endpoint (pod logs), e.g. `http://10.0.0.2:41234`. */
export const AGENT_URL_ANNOTATION = 'stratum.io/agent-url';

export const NodeReadyReason = {
  /** The agent registered the Node; the node controller has not judged its heartbeat yet. */
  registered: 'NodeRegistered',
  heartbeat: 'HeartbeatReceived',
  /** Heartbeats stopped for longer than node-down-timeout. */
  heartbeatTimeout: 'NodeHeartbeatTimeout',
  /** There is no Lease at all: the agent never ran, or its Lease was deleted. */
  noHeartbeat: 'NoHeartbeat',
} as const;

/**
 * Returns `conditions` with `next` set: `lastTransitionTime` moves only when the status changes, so rewriting
 * an unchanged condition does not look like a transition (and does not cause a write). `probeTime: false` for
 * core v1 kinds (Pods), which have no empty-string timestamps. `phaseOf` maps reasons to phases for a condition
 * whose status stays the same across phases (a volume's Attached=False while detached, then attaching): the
 * transition time also moves when the phase does.
 */
export function setCondition(
  conditions: readonly Condition[] | readonly DeepReadonly<Condition>[] | null | undefined,
  next: Omit<Condition, 'lastTransitionTime' | 'lastProbeTime'>,
  now: string,
  opts: { probeTime?: boolean; phaseOf?: (reason: string) => string } = {},
): Condition[] {
  const list = (conditions ?? []).map((c) => ({ ...c }) as Condition);
  const phase = opts.phaseOf;
  const samePhase = (a: string | undefined, b: string | undefined) => !phase || phase(a ?? '') === phase(b ?? '');
  const i = list.findIndex((c) => c.type === next.type);
  const old = i >= 0 ? list[i] : undefined;
  const cond: Condition = {
    type: next.type,
    status: next.status,
    reason: next.reason ?? '',
    message: next.message ?? '',
    // Longhorn writes lastProbeTime "" on its own kinds; a core v1 object must not (kubectl parses it as a time).
    ...(opts.probeTime === false ? {} : { lastProbeTime: '' }),
    lastTransitionTime: old !== undefined && old.status === next.status && samePhase(old.reason, next.reason) ? (old.lastTransitionTime ?? now) : now,
  };
  if (i >= 0) list[i] = cond;
  else list.push(cond);
  return list;
}

export function getCondition(
  conditions: readonly DeepReadonly<Condition>[] | readonly Condition[] | null | undefined,
  type: string,
): DeepReadonly<Condition> | undefined {
  return (conditions ?? []).find((c) => c.type === type);
}

/** Kubernetes timestamps: seconds precision, `Z`. */
export function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** metav1.MicroTime, as Lease `renewTime` uses. */
export function microTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}
