// The pure half of the pod runtime: from what the agent knows about a pod's process (its record and the live
// instance), the Kubernetes-shaped `status` — phase, conditions, containerStatuses with state and lastState —
// that `kubectl get pods` and controllers read. No I/O, so each state is unit-tested.

import type { Condition } from '../api/meta.js';
import type { ContainerState, ContainerStatus, PodSpec, PodStatus } from '../api/pod.js';
import { setCondition } from '../api/node-contract.js';
import type { ExitRecord } from './instance.js';
import type { PodRecord } from './pod-record.js';

/** What the container is doing right now, as the worker sees it. */
export type ContainerView =
  /** Not started yet (ports, image, first start): waiting with this reason. */
  | { kind: 'waiting'; reason: string; message: string }
  | { kind: 'running'; startedAt: string; pid: number | undefined; ready: boolean; notReadyMessage: string }
  /** Ended and waiting to be started again. */
  | { kind: 'backoff'; delayMs: number; message: string }
  /** Ended for good (or never could start): the pod's phase is final. */
  | { kind: 'terminal' };

export interface StatusInput {
  pod: { spec?: PodSpec | undefined; status?: PodStatus | undefined };
  record: PodRecord;
  view: ContainerView;
  hostIP: string;
  imageID: string;
  now: string;
}

export function containerId(pid: number | undefined): string | undefined {
  return pid === undefined ? undefined : `pid://${pid}`;
}

function terminatedState(e: ExitRecord): ContainerState {
  return {
    terminated: {
      exitCode: e.exitCode,
      ...(e.signal === undefined ? {} : { signal: e.signal }),
      reason: e.reason,
      ...(e.message === undefined ? {} : { message: e.message }),
      startedAt: stripMs(e.startedAt),
      finishedAt: stripMs(e.finishedAt),
    },
  };
}

/** Kubernetes timestamps have seconds precision; keeping ms would make every status look new. */
function stripMs(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

export function computePodStatus(i: StatusInput): PodStatus {
  const { record, view } = i;
  const container = i.pod.spec?.containers[0];
  const name = container?.name ?? 'main';
  let state: ContainerState;
  let lastState: ContainerState = {};
  let ready = false;
  let phase: PodStatus['phase'];
  let notReady = '';
  switch (view.kind) {
    case 'waiting':
      state = { waiting: { reason: view.reason, message: view.message } };
      phase = record.everStarted ? 'Running' : 'Pending';
      notReady = view.message;
      if (record.lastExit) lastState = terminatedState(record.lastExit);
      break;
    case 'running':
      state = { running: { startedAt: stripMs(view.startedAt) } };
      phase = 'Running';
      ready = view.ready;
      notReady = view.notReadyMessage;
      if (record.lastExit) lastState = terminatedState(record.lastExit);
      break;
    case 'backoff':
      state = { waiting: { reason: 'CrashLoopBackOff', message: view.message } };
      phase = 'Running';
      notReady = view.message;
      if (record.lastExit) lastState = terminatedState(record.lastExit);
      break;
    case 'terminal': {
      const t = record.terminal;
      phase = t?.phase ?? 'Failed';
      if (record.lastExit && record.everStarted) state = terminatedState(record.lastExit);
      else state = { waiting: { reason: t?.reason ?? 'Error', message: t?.message ?? '' } };
      notReady = t?.message ?? '';
      break;
    }
  }
  const pid = view.kind === 'running' ? view.pid : undefined;
  const cs: ContainerStatus = {
    name,
    ready,
    restartCount: record.restartCount,
    started: view.kind === 'running',
    state,
    lastState,
    image: container?.image ?? '',
    imageID: i.imageID,
    ...(pid === undefined ? {} : { containerID: containerId(pid) as string }),
  };
  const old = i.pod.status?.conditions;
  const readyCond = (type: string): Omit<Condition, 'lastTransitionTime' | 'lastProbeTime'> =>
    ready
      ? { type, status: 'True' }
      : {
          type,
          status: 'False',
          reason: phase === 'Succeeded' || phase === 'Failed' ? 'PodCompleted' : 'ContainersNotReady',
          message: `containers with unready status: [${name}]${notReady ? `: ${notReady}` : ''}`,
        };
  const core = { probeTime: false };
  let conditions = setCondition(old, { type: 'PodScheduled', status: 'True' }, i.now, core);
  conditions = setCondition(conditions, { type: 'Initialized', status: 'True' }, i.now, core);
  conditions = setCondition(conditions, readyCond('ContainersReady'), i.now, core);
  conditions = setCondition(conditions, readyCond('Ready'), i.now, core);
  const status: PodStatus = {
    phase,
    conditions,
    hostIP: i.hostIP,
    podIP: i.hostIP,
    startTime: stripMs(record.startTime),
    containerStatuses: [cs],
  };
  if (view.kind === 'terminal' && record.terminal) {
    status.reason = record.terminal.reason;
    status.message = record.terminal.message;
  }
  return status;
}

/** Compares statuses the way the store would store them (key order and undefined members do not matter). */
export function sameStatus(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val !== null && typeof val === 'object' && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val as Record<string, unknown>).sort(([x], [y]) => x.localeCompare(y)))
      : val,
  );
}
