// Tests of schema, metadata and semantic validation across kinds: realistic manifests pass, and each kind of
// mistake is reported at the right field with the right Kubernetes reason.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { FieldError, KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import { manifest, realisticManifests, untyped, type Untyped } from './manifests.fixture.js';
import { pruneUnknownFields } from './prune.js';
import { allKinds, findKind } from './registry.js';
import { validateObject } from './validate.js';

function info(kind: string): KindInfo {
  const i = findKind(kind);
  assert.ok(i, `kind ${kind} is registered`);
  return i;
}

function errorsOf(kind: string, mutate: (o: Untyped) => void, old?: KubeObject): FieldError[] {
  const o = untyped(kind);
  mutate(o);
  return validateObject(info(kind), o, old);
}

function only(errs: FieldError[], field: string): FieldError {
  const hits = errs.filter((e) => e.field === field);
  assert.equal(hits.length, 1, `one error at ${field}, got ${JSON.stringify(errs)}`);
  return hits[0]!;
}

describe('realistic manifests', () => {
  const manifests = realisticManifests();
  it('cover every registered kind', () => {
    assert.deepEqual([...manifests.keys()].sort(), allKinds().map((k) => k.kind).sort());
  });
  for (const [kind, obj] of manifests) {
    it(`${kind} validates without errors and loses no field to pruning`, () => {
      const i = info(kind);
      assert.deepEqual(pruneUnknownFields(i, obj), []);
      assert.deepEqual(validateObject(i, obj), []);
    });
  }
});

describe('metadata.name', () => {
  for (const bad of ['../x', 'Foo', 'a_b', '-a', 'a'.repeat(254)]) {
    it(`refuses ${JSON.stringify(bad.length > 20 ? `${bad.slice(0, 5)}…` : bad)}`, () => {
      for (const kind of ['BackingImage', 'Volume', 'Pod']) {
        // A BackingImage name may also get a second error saying why: it becomes a file path component.
        const errs = errorsOf(kind, (o) => (o.metadata.name = bad));
        assert.ok(errs.length > 0 && errs.every((e) => e.field === 'metadata.name' && e.reason === 'FieldValueInvalid'),
          JSON.stringify(errs));
        const why = bad.length > 253 ? /no more than 253 characters/ : /lowercase RFC 1123 subdomain/;
        assert.ok(errs.some((e) => why.test(e.message)), JSON.stringify(errs));
      }
      const path = errorsOf('BackingImage', (o) => (o.metadata.name = bad)).filter((e) => /path component/.test(e.message));
      assert.equal(path.length, bad.includes('..') ? 1 : 0);
    });
  }
  it('accepts dotted names and checks generateName as a prefix', () => {
    assert.deepEqual(errorsOf('Volume', (o) => (o.metadata.name = 'pvc.a-1')), []);
    assert.deepEqual(errorsOf('Volume', (o) => {
      delete o.metadata.name;
      o.metadata.generateName = 'vol-';
    }), []);
    const e = only(errorsOf('Volume', (o) => {
      delete o.metadata.name;
      o.metadata.generateName = 'Vol-';
    }), 'metadata.generateName');
    assert.equal(e.reason, 'FieldValueInvalid');
  });
  it('reports a name of the wrong type once, as a type error', () => {
    assert.equal(only(errorsOf('Volume', (o) => (o.metadata.name = 5)), 'metadata.name').reason, 'FieldValueTypeInvalid');
  });
  it('requires a name or generateName', () => {
    assert.equal(only(errorsOf('Volume', (o) => delete o.metadata.name), 'metadata.name').reason, 'FieldValueRequired');
  });
  it('refuses a bad namespace', () => {
    assert.equal(only(errorsOf('Volume', (o) => (o.metadata.namespace = 'Longhorn')), 'metadata.namespace').reason, 'FieldValueInvalid');
  });
});

describe('labels and annotations', () => {
  it('accept prefixed keys and empty values', () => {
    const errs = errorsOf('Volume', (o) => {
      o.metadata.labels = { 'longhorn.io/backing-image': 'parrot', app: '', 'a.b/c_d.e': 'X_1.y' };
      o.metadata.annotations = { 'Example.COM/Note': 'any text at all, spaces too' };
    });
    assert.deepEqual(errs, []);
  });
  for (const [key, value, why] of [
    ['a/b/c', 'v', /qualified name/],
    ['-a', 'v', /name part must consist/],
    ['Bad_Prefix/a', 'v', /prefix part/],
    ['k', 'has space', /a valid label must be an empty string/],
    ['k', 'v'.repeat(64), /no more than 63 characters/],
    ['x'.repeat(64), 'v', /name part must be no more than 63/],
  ] as const) {
    it(`refuses ${key.slice(0, 10)}=${value.slice(0, 10)}`, () => {
      const e = only(errorsOf('Volume', (o) => (o.metadata.labels = { [key]: value })), 'metadata.labels');
      assert.equal(e.reason, 'FieldValueInvalid');
      assert.match(e.message, why);
    });
  }
  it('type-checks label values', () => {
    const e = only(errorsOf('Volume', (o) => (o.metadata.labels = { a: 1 })), 'metadata.labels.a');
    assert.equal(e.reason, 'FieldValueTypeInvalid');
  });
});

describe('schema errors', () => {
  it('wrong type: FieldValueTypeInvalid, "must be integer"', () => {
    const e = only(errorsOf('BackingImage', (o) => (o.spec.minNumberOfCopies = '2')), 'spec.minNumberOfCopies');
    assert.equal(e.reason, 'FieldValueTypeInvalid');
    assert.match(e.message, /must be integer/);
    assert.match(e.message, /"2"/);
  });
  it('wrong type inside a map names the map key', () => {
    const e = only(errorsOf('Node', (o) => (o.spec.disks['default-disk-fd0100000000'].storageReserved = 'lots')),
      'spec.disks.default-disk-fd0100000000.storageReserved');
    assert.equal(e.reason, 'FieldValueTypeInvalid');
  });
  it('wrong type inside an array names the index', () => {
    const e = only(errorsOf('Pod', (o) => (o.spec.containers[0].ports[0].containerPort = '8000')),
      'spec.containers[0].ports[0].containerPort');
    assert.equal(e.reason, 'FieldValueTypeInvalid');
  });
  it('missing required field: FieldValueRequired', () => {
    assert.equal(only(errorsOf('EngineImage', (o) => delete o.spec.image), 'spec.image').reason, 'FieldValueRequired');
    assert.equal(only(errorsOf('EngineImage', (o) => (o.spec.image = '')), 'spec.image').reason, 'FieldValueRequired');
    assert.equal(only(errorsOf('Pod', (o) => delete o.spec.containers[0].image), 'spec.containers[0].image').reason,
      'FieldValueRequired');
    assert.equal(only(errorsOf('Setting', (o) => delete o.value), 'value').reason, 'FieldValueRequired');
    assert.equal(only(errorsOf('Event', (o) => delete o.involvedObject), 'involvedObject').reason, 'FieldValueRequired');
  });
  it('bad enum: FieldValueNotSupported listing the allowed values', () => {
    const e = only(errorsOf('BackingImage', (o) => (o.spec.sourceType = 'ftp')), 'spec.sourceType');
    assert.equal(e.reason, 'FieldValueNotSupported');
    assert.equal(e.message,
      'Unsupported value: "ftp": supported values: "download", "upload", "export-from-volume", "restore", "clone"');
    const f = only(errorsOf('Volume', (o) => (o.spec.accessMode = 'rwm')), 'spec.accessMode');
    assert.match(f.message, /"rwo", "rwop", "rwx"/);
  });
  it('bounds: FieldValueInvalid with the limit', () => {
    const e = only(errorsOf('Volume', (o) => (o.spec.rebuildConcurrentSyncLimit = 6)), 'spec.rebuildConcurrentSyncLimit');
    assert.equal(e.reason, 'FieldValueInvalid');
    assert.match(e.message, /less than or equal to 5/);
  });
  it('decimal-string sizes must be decimal', () => {
    const e = only(errorsOf('Volume', (o) => (o.spec.size = '2Gi')), 'spec.size');
    assert.equal(e.reason, 'FieldValueInvalid');
  });
  it('apiVersion and kind must be the storage version of the kind', () => {
    assert.equal(only(errorsOf('BackingImage', (o) => (o.apiVersion = 'longhorn.io/v1beta1')), 'apiVersion').reason,
      'FieldValueNotSupported');
    assert.equal(only(errorsOf('BackingImage', (o) => (o.kind = 'Volume')), 'kind').reason, 'FieldValueNotSupported');
  });
  it('a non-object is refused outright', () => {
    assert.equal(validateObject(info('Volume'), 'nope')[0]?.reason, 'FieldValueTypeInvalid');
  });
  it('does not repeat a schema error as a semantic one', () => {
    const errs = errorsOf('BackingImage', (o) => (o.spec.minNumberOfCopies = 'two'));
    assert.equal(errs.filter((e) => e.field === 'spec.minNumberOfCopies').length, 1);
  });
});

describe('semantic rules of other kinds', () => {
  it('Node disk paths must be absolute, present and distinct', () => {
    const rel = only(errorsOf('Node', (o) => (o.spec.disks.foo = { path: 'data/disk' })), 'spec.disks.foo.path');
    assert.equal(rel.reason, 'FieldValueInvalid');
    const up = only(errorsOf('Node', (o) => (o.spec.disks.foo = { path: '/var/../etc' })), 'spec.disks.foo.path');
    assert.equal(up.reason, 'FieldValueInvalid');
    assert.equal(only(errorsOf('Node', (o) => (o.spec.disks.foo = {})), 'spec.disks.foo.path').reason, 'FieldValueRequired');
    const dup = only(errorsOf('Node', (o) => (o.spec.disks.foo = { path: '/var/lib/longhorn' })), 'spec.disks.foo.path');
    assert.equal(dup.reason, 'FieldValueDuplicate');
  });
  it('Volume: backingImage, encrypted and dataEngine are immutable; size grows only while detached, never shrinks', () => {
    const old = manifest('Volume');
    assert.deepEqual(errorsOf('Volume', () => undefined, old), []);
    assert.equal(only(errorsOf('Volume', (o) => (o.spec.backingImage = 'other'), old), 'spec.backingImage').reason,
      'FieldValueInvalid');
    assert.match(only(errorsOf('Volume', (o) => delete o.spec.backingImage, old), 'spec.backingImage').message, /immutable/);
    assert.ok(errorsOf('Volume', (o) => (o.spec.encrypted = true), old).some((e) => e.field === 'spec.encrypted'));
    assert.match(only(errorsOf('Volume', (o) => (o.spec.size = '1048576'), old), 'spec.size').message, /shrinking/);
    assert.match(only(errorsOf('Volume', (o) => (o.spec.size = '1048576'), old), 'spec.size').message, /^Invalid value: "1048576": shrinking a volume is not supported \(current size \d+\)$/);
    const detached = { ...old, spec: { ...(old.spec as object), nodeID: '' }, status: { state: 'detached' } } as KubeObject;
    assert.deepEqual(errorsOf('Volume', (o) => {
      o.spec.size = '4294967296';
      o.spec.nodeID = '';
    }, detached), []);
    const attached = { ...old, spec: { ...(old.spec as object), nodeID: 'node-1' }, status: { state: 'attached', currentNodeID: 'node-1' } } as KubeObject;
    assert.equal(only(errorsOf('Volume', (o) => (o.spec.size = '4294967296'), attached), 'spec.size').message,
      'Invalid value: "4294967296": a volume is expanded offline: detach it first (it is attached to node-1)');
    const asked = { ...old, spec: { ...(old.spec as object), nodeID: 'node-2' }, status: { state: 'detached' } } as KubeObject;
    assert.match(only(errorsOf('Volume', (o) => (o.spec.size = '4294967296'), asked), 'spec.size').message, /detach it first \(an attach to node-2 is asked for\)/);
  });
  it('Volume: replica count 1..20, strict-local needs one replica, v2 refused on create only', () => {
    assert.equal(only(errorsOf('Volume', (o) => (o.spec.numberOfReplicas = 21)), 'spec.numberOfReplicas').reason,
      'FieldValueInvalid');
    assert.match(only(errorsOf('Volume', (o) => (o.spec.dataLocality = 'strict-local')), 'spec.numberOfReplicas').message,
      /strict-local/);
    assert.equal(only(errorsOf('Volume', (o) => (o.spec.dataEngine = 'v2')), 'spec.dataEngine').reason,
      'FieldValueNotSupported');
    const storedV2 = manifest('Volume');
    storedV2.spec = { ...(storedV2.spec as object), dataEngine: 'v2' };
    assert.deepEqual(errorsOf('Volume', (o) => (o.spec.dataEngine = 'v2'), storedV2), []);
  });
  it('Replica dataDirectoryName and BIM backing image names/uuids must be safe path components', () => {
    assert.equal(only(errorsOf('Replica', (o) => (o.spec.dataDirectoryName = '../etc')), 'spec.dataDirectoryName').reason,
      'FieldValueInvalid');
    assert.ok(errorsOf('BackingImageManager', (o) => (o.spec.backingImages = { parrot: 'a/b' }))
      .some((e) => e.field === 'spec.backingImages.parrot'));
    assert.ok(errorsOf('BackingImageManager', (o) => (o.spec.backingImages = { '..': 'abc' }))
      .some((e) => e.field === 'spec.backingImages'));
    assert.ok(errorsOf('BackingImageDataSource', (o) => (o.spec.uuid = '..')).some((e) => e.field === 'spec.uuid'));
  });
  it('Pod: at least one container, unique DNS-label names, nodeName fixed once set', () => {
    assert.equal(only(errorsOf('Pod', (o) => (o.spec.containers = [])), 'spec.containers').reason, 'FieldValueRequired');
    const dup = errorsOf('Pod', (o) => o.spec.containers.push({ ...o.spec.containers[0] }));
    assert.equal(only(dup, 'spec.containers[1].name').reason, 'FieldValueDuplicate');
    assert.equal(only(errorsOf('Pod', (o) => (o.spec.containers[0].name = 'Main')), 'spec.containers[0].name').reason,
      'FieldValueInvalid');
    assert.match(only(errorsOf('Pod', (o) => (o.spec.nodeName = 'node-2'), manifest('Pod')), 'spec.nodeName').message,
      /immutable/);
    assert.equal(only(errorsOf('Pod', (o) => (o.spec.restartPolicy = 'Sometimes')), 'spec.restartPolicy').reason,
      'FieldValueNotSupported');
  });
  it('Pod probe ports accept integers and names, nothing else', () => {
    assert.deepEqual(errorsOf('Pod', (o) => (o.spec.containers[0].readinessProbe = { httpGet: { port: 'api', path: '/v1' } })), []);
    const e = only(errorsOf('Pod', (o) => (o.spec.containers[0].readinessProbe = { tcpSocket: { port: true } })),
      'spec.containers[0].readinessProbe.tcpSocket.port');
    assert.equal(e.reason, 'FieldValueTypeInvalid');
    assert.match(e.message, /must be integer or string/);
  });
  it('EngineImage image is immutable; Event type is Normal or Warning; Lease duration is positive', () => {
    assert.ok(errorsOf('EngineImage', (o) => (o.spec.image = 'x:2'), manifest('EngineImage')).some((e) => e.field === 'spec.image'));
    assert.equal(only(errorsOf('Event', (o) => (o.type = 'Info')), 'type').reason, 'FieldValueNotSupported');
    assert.equal(only(errorsOf('Lease', (o) => (o.spec.leaseDurationSeconds = 0)), 'spec.leaseDurationSeconds').reason,
      'FieldValueInvalid');
  });
});
