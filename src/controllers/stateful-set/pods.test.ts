// Tests of a StatefulSet's pod and claim shapes: names, ordinals, labels, claim volumes, the revision hash.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manifest } from '../../api/manifests.fixture.js';
import type { StatefulSet } from '../../api/stateful-set.js';
import { buildClaim, buildPod, claimName, ordinalOf, revisionOf } from './pods.js';

const sts = () => {
  const s = manifest('StatefulSet') as StatefulSet;
  s.metadata.uid = 'u-1';
  return s;
};

describe('StatefulSet pods and claims', () => {
  it('names claims <template>-<set>-<ordinal> and reads ordinals back only from its own pods', () => {
    assert.equal(claimName('www1', 'web', 3), 'www1-web-3');
    assert.equal(ordinalOf('web', 'web-12'), 12);
    assert.equal(ordinalOf('web', 'web-01'), undefined);
    assert.equal(ordinalOf('web', 'web-x'), undefined);
    assert.equal(ordinalOf('web', 'webby-1'), undefined);
  });

  it('builds a pod with the claim volumes, stable identity labels and a controller owner', () => {
    const s = sts();
    const pod = buildPod(s, 1, revisionOf(s));
    assert.equal(pod.metadata.name, 'web-1');
    assert.equal(pod.metadata.labels?.['app'], 'nginx');
    assert.equal(pod.metadata.labels?.['statefulset.kubernetes.io/pod-name'], 'web-1');
    assert.equal(pod.metadata.labels?.['apps.kubernetes.io/pod-index'], '1');
    assert.deepEqual(pod.spec?.volumes, [{ name: 'www1', persistentVolumeClaim: { claimName: 'www1-web-1' } }]);
    assert.equal(pod.spec?.nodeName, undefined, 'the scheduler picks the node');
    assert.deepEqual(pod.metadata.ownerReferences?.[0], { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'web', uid: 'u-1', controller: true, blockOwnerDeletion: true });
  });

  it('builds claims with the selector labels, and a new revision only when the template changes', () => {
    const s = sts();
    const c = buildClaim(s, 0, 2);
    assert.equal(c.metadata.name, 'www1-web-2');
    assert.equal(c.metadata.labels?.['app'], 'nginx');
    assert.equal(c.spec?.storageClassName, 'longhorn-test1');
    const before = revisionOf(s);
    s.spec!.replicas = 7;
    assert.equal(revisionOf(s), before);
    s.spec!.template.spec.nodeSelector = { 'kubernetes.io/hostname': 'node-2' };
    assert.notEqual(revisionOf(s), before);
  });
});
