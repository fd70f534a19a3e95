// Tests of defaulting on create for the kinds other than BackingImage (see backing-image.test.ts).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { CoreEvent } from './event.js';
import type { DefaultingContext } from './kind.js';
import type { KubeObject } from './meta.js';
import type { Node } from './node.js';
import type { Pod } from './pod.js';
import { findKind } from './registry.js';
import { validateObject } from './validate.js';
import type { Volume } from './volume.js';

function ctx(settings: Record<string, string> = {}): DefaultingContext {
  return {
    setting: (n) => settings[n],
    randomId: () => 'deadbeef',
    now: () => new Date('2024-05-01T10:00:00.123Z'),
  };
}

function defaulted<T extends KubeObject>(kind: string, o: T, settings: Record<string, string> = {}): T {
  const info = findKind(kind)!;
  info.defaultOnCreate?.(o, ctx(settings));
  assert.deepEqual(validateObject(info, o), [], `${kind} is valid after defaulting`);
  return o;
}

describe('Volume defaults', () => {
  const bare = (): Volume => ({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'Volume',
    metadata: { name: 'vol-a', namespace: 'longhorn-system' },
    spec: { size: '1073741824', backingImage: 'parrot' },
  });
  it('numberOfReplicas follows default-replica-count, else 3', () => {
    assert.equal(defaulted('Volume', bare(), { 'default-replica-count': '2' }).spec?.numberOfReplicas, 2);
    assert.equal(defaulted('Volume', bare()).spec?.numberOfReplicas, 3);
    assert.equal(defaulted('Volume', bare(), { 'default-replica-count': '{"v1":"1","v2":"2"}' }).spec?.numberOfReplicas, 1);
  });
  it('frontend blockdev, data engine v1, access mode rwo, locality from its setting, "ignored" policies', () => {
    const v = defaulted('Volume', bare(), { 'default-data-locality': 'best-effort' });
    assert.equal(v.spec?.frontend, 'blockdev');
    assert.equal(v.spec?.dataEngine, 'v1');
    assert.equal(v.spec?.accessMode, 'rwo');
    assert.equal(v.spec?.dataLocality, 'best-effort');
    assert.equal(v.spec?.replicaAutoBalance, 'ignored');
    assert.equal(v.spec?.offlineRebuilding, 'ignored');
  });
  it('keeps explicit values and rounds the size up to 2 MiB', () => {
    const v = bare();
    v.spec = { ...v.spec, numberOfReplicas: 1, frontend: 'iscsi', size: '1000' };
    defaulted('Volume', v);
    assert.equal(v.spec?.numberOfReplicas, 1);
    assert.equal(v.spec?.frontend, 'iscsi');
    assert.equal(v.spec?.size, String(2 * 1024 * 1024));
  });
});

describe('Pod defaults', () => {
  it('restartPolicy Always, grace period 30, phase Pending, TCP ports, probe timings', () => {
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'bim-x', namespace: 'longhorn-system' },
      spec: {
        nodeName: 'node-1',
        containers: [{ name: 'main', image: 'stratum-bim:v1', ports: [{ containerPort: 8000 }], readinessProbe: { httpGet: { port: 8000 } } }],
      },
    };
    defaulted('Pod', pod);
    assert.equal(pod.spec?.restartPolicy, 'Always');
    assert.equal(pod.spec?.terminationGracePeriodSeconds, 30);
    assert.equal(pod.status?.phase, 'Pending');
    const c = pod.spec?.containers[0];
    assert.equal(c?.ports?.[0]?.protocol, 'TCP');
    assert.deepEqual(c?.readinessProbe, {
      httpGet: { port: 8000, path: '/', scheme: 'HTTP' },
      timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3,
    });
  });
  it('keeps explicit values', () => {
    const pod: Pod = {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' },
      spec: { containers: [{ name: 'm', image: 'i' }], restartPolicy: 'Never', terminationGracePeriodSeconds: 0 },
      status: { phase: 'Running' },
    };
    defaulted('Pod', pod);
    assert.equal(pod.spec?.restartPolicy, 'Never');
    assert.equal(pod.spec?.terminationGracePeriodSeconds, 0);
    assert.equal(pod.status?.phase, 'Running');
  });
});

describe('Event and Node defaults', () => {
  it('an Event gets type Normal, count 1 and second-precision timestamps', () => {
    const e = defaulted<CoreEvent>('Event', {
      apiVersion: 'v1', kind: 'Event', metadata: { name: 'bi.1' },
      involvedObject: { kind: 'BackingImage', name: 'bi' }, reason: 'Created', message: 'm',
    });
    assert.equal(e.type, 'Normal');
    assert.equal(e.count, 1);
    assert.equal(e.firstTimestamp, '2024-05-01T10:00:00Z');
    assert.equal(e.lastTimestamp, '2024-05-01T10:00:00Z');
  });
  it('a Node gets empty disks and tags', () => {
    const n = defaulted<Node>('Node', { apiVersion: 'longhorn.io/v1beta2', kind: 'Node', metadata: { name: 'node-1' } });
    assert.deepEqual(n.spec, { disks: {}, tags: [] });
  });
});
