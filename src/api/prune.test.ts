// Tests of unknown-field pruning.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { untyped } from './manifests.fixture.js';
import { pruneUnknownFields } from './prune.js';
import { findKind } from './registry.js';
import { validateObject } from './validate.js';

describe('pruneUnknownFields', () => {
  it('removes undeclared fields and reports their dotted paths', () => {
    const bi = untyped('BackingImage');
    bi['extra'] = 1;
    bi.spec.imageURL = 'https://x';
    bi.spec.diskFileSpecMap['7f6c1d2e-0000-4000-8000-000000000001'].weight = 3;
    const removed = pruneUnknownFields(findKind('BackingImage')!, bi);
    assert.deepEqual(removed.sort(), [
      'extra',
      'spec.diskFileSpecMap.7f6c1d2e-0000-4000-8000-000000000001.weight',
      'spec.imageURL',
    ]);
    assert.equal(bi['extra'], undefined);
    assert.equal(bi.spec.imageURL, undefined);
    assert.deepEqual(bi.spec.diskFileSpecMap['7f6c1d2e-0000-4000-8000-000000000001'], { evictionRequested: false, dataEngine: 'v1' });
  });

  it('reports array elements by index and odd map keys in brackets', () => {
    const pod = untyped('Pod');
    pod.spec.containers[0].securityContext = {};
    pod.spec.containers[0].ports[0].hostPort = 80;
    assert.deepEqual(pruneUnknownFields(findKind('Pod')!, pod).sort(), [
      'spec.containers[0].ports[0].hostPort',
      'spec.containers[0].securityContext',
    ]);
    const node = untyped('Node');
    node.spec.disks['disk.with.dots'] = { path: '/d', colour: 'red' };
    assert.deepEqual(pruneUnknownFields(findKind('Node')!, node), ['spec.disks[disk.with.dots].colour']);
  });

  it('never touches apiVersion, kind or metadata', () => {
    const v = untyped('Volume');
    v.metadata.managedFields = [{ manager: 'kubectl' }];
    v.metadata.selfLink = '/x';
    assert.deepEqual(pruneUnknownFields(findKind('Volume')!, v), []);
    assert.deepEqual(v.metadata.managedFields, [{ manager: 'kubectl' }]);
  });

  it('keeps unknown status fields (controllers own status) but not unknown spec fields', () => {
    const bi = untyped('BackingImage');
    bi.status.transferRate = 12;
    bi.spec.transferRate = 12;
    assert.deepEqual(pruneUnknownFields(findKind('BackingImage')!, bi), ['spec.transferRate']);
    assert.equal(bi.status.transferRate, 12);
  });

  it('drops Go-style nulls of non-nullable fields silently, keeps nullable ones', () => {
    const bi = untyped('BackingImage');
    bi.spec.diskSelector = null;
    bi.spec.nodeSelector = null;
    bi.status.diskLastRefAtMap = null;
    const info = findKind('BackingImage')!;
    assert.deepEqual(pruneUnknownFields(info, bi), []);
    assert.equal('diskSelector' in bi.spec, false);
    assert.equal(bi.status.diskLastRefAtMap, null);
    assert.deepEqual(validateObject(info, bi), []);
  });

  it('prunes top-level fields of kinds without spec (Setting, Event)', () => {
    const s = untyped('Setting');
    s.spec = { value: 'x' };
    assert.deepEqual(pruneUnknownFields(findKind('Setting')!, s), ['spec']);
    const e = untyped('Event');
    e.note = 'x';
    assert.deepEqual(pruneUnknownFields(findKind('Event')!, e), ['note']);
  });
});
