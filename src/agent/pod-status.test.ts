// Unit tests of pod status computation: phases, container states, restart counts, conditions.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PodSpec } from '../api/pod.js';
import type { PodRecord } from './pod-record.js';
import { computePodStatus, sameStatus, type ContainerView } from './pod-status.js';

const spec: PodSpec = { containers: [{ name: 'web', image: 'stratum-test-http:v1' }], restartPolicy: 'Always' };
const base: PodRecord = { uid: 'u', namespace: 'default', name: 'web', restartCount: 0, failures: 0, ports: {}, startTime: '2025-01-01T00:00:00.123Z', everStarted: false };
const exit = { n: 0, exitCode: 1, reason: 'Error', startedAt: '2025-01-01T00:00:01.000Z', finishedAt: '2025-01-01T00:00:02.000Z' };

function status(view: ContainerView, record: Partial<PodRecord> = {}, old?: unknown) {
  return computePodStatus({
    pod: { spec, ...(old ? { status: old as never } : {}) },
    record: { ...base, ...record },
    view,
    hostIP: '10.0.0.2',
    imageID: 'stratum://stratum-test-http:v1@1.0.0',
    now: '2025-01-01T00:01:00Z',
  });
}

const cond = (s: ReturnType<typeof status>, type: string) => s.conditions?.find((c) => c.type === type);

test('before the first start: Pending, waiting, not ready, start time set', () => {
  const s = status({ kind: 'waiting', reason: 'ContainerCreating', message: 'starting' });
  assert.equal(s.phase, 'Pending');
  assert.deepEqual(s.containerStatuses?.[0]?.state, { waiting: { reason: 'ContainerCreating', message: 'starting' } });
  assert.equal(cond(s, 'Ready')?.status, 'False');
  assert.equal(cond(s, 'Ready')?.reason, 'ContainersNotReady');
  assert.equal(s.startTime, '2025-01-01T00:00:00Z');
  assert.equal(s.podIP, '10.0.0.2');
  assert.equal(s.hostIP, '10.0.0.2');
  assert.equal('lastProbeTime' in (cond(s, 'Ready') ?? {}), false, 'core v1 conditions carry no empty timestamps');
});

test('running and ready: Running, containerID is the pid, restart count and last state kept', () => {
  const s = status({ kind: 'running', startedAt: '2025-01-01T00:00:03.500Z', pid: 4242, ready: true, notReadyMessage: '' }, { everStarted: true, restartCount: 2, lastExit: exit });
  assert.equal(s.phase, 'Running');
  const c = s.containerStatuses?.[0];
  assert.equal(c?.containerID, 'pid://4242');
  assert.equal(c?.ready, true);
  assert.equal(c?.restartCount, 2);
  assert.deepEqual(c?.state, { running: { startedAt: '2025-01-01T00:00:03Z' } });
  assert.equal(c?.lastState?.terminated?.exitCode, 1);
  assert.equal(cond(s, 'Ready')?.status, 'True');
});

test('crash loop: Running phase, waiting CrashLoopBackOff with the message', () => {
  const s = status({ kind: 'backoff', delayMs: 20_000, message: 'back-off 20 s' }, { everStarted: true, restartCount: 1, lastExit: exit });
  assert.equal(s.phase, 'Running');
  assert.deepEqual(s.containerStatuses?.[0]?.state, { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 20 s' } });
});

test('terminal: Failed with the exit code, or Failed with ErrImageNeverPull before any start', () => {
  const failed = status({ kind: 'terminal' }, { everStarted: true, lastExit: exit, terminal: { phase: 'Failed', reason: 'Error', message: 'exited with code 1' } });
  assert.equal(failed.phase, 'Failed');
  assert.equal(failed.containerStatuses?.[0]?.state?.terminated?.exitCode, 1);
  assert.equal(failed.reason, 'Error');
  assert.equal(cond(failed, 'Ready')?.reason, 'PodCompleted');
  const image = status({ kind: 'terminal' }, { terminal: { phase: 'Failed', reason: 'ErrImageNeverPull', message: 'image "x:v1" is not in the image catalog' } });
  assert.equal(image.phase, 'Failed');
  assert.equal(image.containerStatuses?.[0]?.state?.waiting?.reason, 'ErrImageNeverPull');
  assert.match(image.message ?? '', /x:v1/);
});

test('an unchanged status compares equal, and transition times move only on change', () => {
  const view: ContainerView = { kind: 'running', startedAt: '2025-01-01T00:00:03Z', pid: 1, ready: false, notReadyMessage: 'probe failed' };
  const first = status(view, { everStarted: true });
  const again = computePodStatus({ pod: { spec, status: first }, record: { ...base, everStarted: true }, view, hostIP: '10.0.0.2', imageID: 'stratum://stratum-test-http:v1@1.0.0', now: '2025-01-01T00:09:00Z' });
  assert.equal(sameStatus(first, again), true);
  const ready = computePodStatus({ pod: { spec, status: first }, record: { ...base, everStarted: true }, view: { ...view, ready: true }, hostIP: '10.0.0.2', imageID: '', now: '2025-01-01T00:09:00Z' });
  assert.equal(cond(ready, 'Ready')?.lastTransitionTime, '2025-01-01T00:09:00Z');
  assert.equal(cond(ready, 'PodScheduled')?.lastTransitionTime, '2025-01-01T00:01:00Z');
});
