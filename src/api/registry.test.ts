// Tests of the kind registry: names and lookups, versions, and that every kind's description is coherent.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isUnknownKind } from './errors.js';
import { allKinds, apiVersionOf, findKind, findKindByResource, kindForObject, servedVersions } from './registry.js';
import { validateObject } from './validate.js';

describe('registry', () => {
  it('lists the eighteen kinds with the expected groups, versions and short names', () => {
    const table = allKinds().map((k) => `${k.group}/${k.version} ${k.kind} ${k.plural} ${k.shortNames.join(',')}`);
    assert.deepEqual(table, [
      'longhorn.io/v1beta2 BackingImage backingimages lhbi,bi',
      'longhorn.io/v1beta2 BackingImageDataSource backingimagedatasources lhbids,bids',
      'longhorn.io/v1beta2 BackingImageManager backingimagemanagers lhbim,bim',
      'longhorn.io/v1beta2 Volume volumes lhv',
      'longhorn.io/v1beta2 Engine engines lhe',
      'longhorn.io/v1beta2 Replica replicas lhr',
      'longhorn.io/v1beta2 Node nodes lhn',
      'longhorn.io/v1beta2 Setting settings lhs',
      'longhorn.io/v1beta2 EngineImage engineimages lhei',
      'longhorn.io/v1beta2 InstanceManager instancemanagers lhim',
      '/v1 Pod pods po',
      '/v1 Event events ev',
      'coordination.k8s.io/v1 Lease leases ',
      'storage.k8s.io/v1 StorageClass storageclasses sc',
      '/v1 PersistentVolumeClaim persistentvolumeclaims pvc',
      '/v1 PersistentVolume persistentvolumes pv',
      'apps/v1 StatefulSet statefulsets sts',
      '/v1 Service services svc',
    ]);
    for (const k of allKinds()) {
      assert.equal(k.listKind, `${k.kind}List`);
      assert.equal(k.singular, k.kind.toLowerCase());
      // As in Kubernetes, classes and PVs are cluster-scoped.
      assert.equal(k.namespaced, !['StorageClass', 'PersistentVolume'].includes(k.kind), k.kind);
    }
  });

  it('resolves every name a user might type, case-insensitively', () => {
    const cases: [string, string][] = [
      ['BackingImage', 'BackingImage'],
      ['lhbi', 'BackingImage'],
      ['BI', 'BackingImage'],
      ['backingimage', 'BackingImage'],
      ['BackingImages', 'BackingImage'],
      ['backingimages.longhorn.io', 'BackingImage'],
      ['backingimages.v1beta2.longhorn.io', 'BackingImage'],
      ['bids', 'BackingImageDataSource'],
      ['bim', 'BackingImageManager'],
      ['lhv', 'Volume'],
      ['volume.longhorn.io', 'Volume'],
      ['lhn', 'Node'],
      ['nodes', 'Node'],
      ['lhs', 'Setting'],
      ['po', 'Pod'],
      ['pods', 'Pod'],
      ['ev', 'Event'],
      ['leases', 'Lease'],
      ['leases.coordination.k8s.io', 'Lease'],
      ['lhim', 'InstanceManager'],
      ['lhei', 'EngineImage'],
    ];
    for (const [name, kind] of cases) assert.equal(findKind(name)?.kind, kind, name);
    assert.equal(findKind('nothing'), undefined);
    assert.equal(findKind('pods.longhorn.io'), undefined);
  });

  it('looks kinds up by URL group and plural', () => {
    assert.equal(findKindByResource('longhorn.io', 'backingimages')?.kind, 'BackingImage');
    assert.equal(findKindByResource('', 'pods')?.kind, 'Pod');
    assert.equal(findKindByResource('coordination.k8s.io', 'leases')?.kind, 'Lease');
    assert.equal(findKindByResource('', 'backingimages'), undefined);
    assert.equal(findKindByResource('longhorn.io', 'lhbi'), undefined);
  });

  it('gives apiVersions and served versions', () => {
    assert.equal(apiVersionOf('BackingImage'), 'longhorn.io/v1beta2');
    assert.equal(apiVersionOf('Pod'), 'v1');
    assert.equal(apiVersionOf('Lease'), 'coordination.k8s.io/v1');
    assert.equal(apiVersionOf(findKind('lhv')!), 'longhorn.io/v1beta2');
    assert.throws(() => apiVersionOf('Nope'), isUnknownKind);
    assert.deepEqual(servedVersions(findKind('BackingImage')!), ['v1beta2', 'v1beta1']);
    assert.deepEqual(servedVersions(findKind('Volume')!), ['v1beta2']);
    assert.equal(kindForObject('longhorn.io/v1beta1', 'BackingImage')?.kind, 'BackingImage');
    assert.equal(kindForObject('v1', 'Pod')?.kind, 'Pod');
    assert.equal(kindForObject('longhorn.io/v1beta2', 'Pod'), undefined);
  });

  it('has unique names across kinds, so no alias is ambiguous', () => {
    const owner = new Map<string, string>();
    for (const k of allKinds()) {
      for (const n of new Set([k.kind.toLowerCase(), k.plural, k.singular, ...k.shortNames])) {
        assert.equal(owner.get(n) ?? k.kind, k.kind, `"${n}" names both ${owner.get(n) ?? ''} and ${k.kind}`);
        owner.set(n, k.kind);
      }
    }
  });

  it('every kind has a compilable schema, an Age-like column and well-formed printer columns', () => {
    for (const k of allKinds()) {
      assert.equal(k.schema['type'], 'object', k.kind);
      // Compiles on first use; an invalid schema would throw here.
      assert.ok(Array.isArray(validateObject(k, { metadata: { name: 'x' } })), k.kind);
      assert.ok(k.printerColumns.length >= 2, k.kind);
      for (const c of k.printerColumns) assert.match(c.jsonPath, /^\.[A-Za-z]/, `${k.kind} ${c.name}`);
    }
    const cols = (kind: string): string[] => findKind(kind)!.printerColumns.map((c) => c.name);
    assert.deepEqual(cols('BackingImage'), ['UUID', 'SourceType', 'Size', 'VirtualSize', 'Age']);
    assert.deepEqual(cols('Node'), ['Ready', 'AllowScheduling', 'Schedulable', 'Age']);
    assert.deepEqual(cols('Pod'), ['Ready', 'Status', 'Restarts', 'Age', 'IP', 'Node']);
    assert.equal(findKind('Pod')!.printerColumns.find((c) => c.name === 'Node')?.priority, 1);
  });

  it('marks kinds without spec or status subresource', () => {
    const flags = (kind: string): [boolean, boolean] => [findKind(kind)!.hasSpec, findKind(kind)!.hasStatusSubresource];
    assert.deepEqual(flags('Setting'), [false, true]);
    assert.deepEqual(flags('Event'), [false, false]);
    assert.deepEqual(flags('Lease'), [true, false]);
    assert.deepEqual(flags('BackingImage'), [true, true]);
  });
});
