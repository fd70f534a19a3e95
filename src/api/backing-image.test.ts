// Tests of BackingImage defaulting and its semantic rules (checksum, sources, copies, immutability, path safety).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { backingImageInfo, type BackingImage } from './backing-image.js';
import type { DefaultingContext, FieldError } from './kind.js';
import { FIXTURE_SHA512, manifest } from './manifests.fixture.js';
import type { KubeObject } from './meta.js';
import { validateObject } from './validate.js';

function ctx(settings: Record<string, string> = {}, ids: string[] = ['9f8e7d6c']): DefaultingContext {
  return {
    setting: (n) => settings[n],
    randomId: () => {
      const id = ids.shift();
      assert.ok(id !== undefined, 'randomId called more often than expected');
      return id;
    },
    now: () => new Date('2024-05-01T10:00:00Z'),
  };
}

function created(spec: Record<string, unknown>, settings: Record<string, string> = {}): BackingImage {
  const bi: BackingImage = {
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImage',
    metadata: { name: 'bi-1', namespace: 'longhorn-system' },
    spec,
  };
  backingImageInfo.defaultOnCreate?.(bi, ctx(settings));
  return bi;
}

function errors(o: KubeObject, old?: KubeObject): FieldError[] {
  return validateObject(backingImageInfo, o, old);
}

function fieldsOf(errs: FieldError[]): string[] {
  return errs.map((e) => `${e.field}:${e.reason}`);
}

const URL = 'https://example.com/parrot.qcow2';

describe('BackingImage defaults', () => {
  it('fill uuid, maps, data engine and min copies from the setting', () => {
    const bi = created({ sourceType: 'download', sourceParameters: { url: URL } }, {
      'default-min-number-of-backing-image-copies': '2',
    });
    assert.equal(bi.status?.uuid, '9f8e7d6c');
    assert.deepEqual(bi.spec?.diskFileSpecMap, {});
    assert.equal(bi.spec?.dataEngine, 'v1');
    assert.equal(bi.spec?.minNumberOfCopies, 2);
    assert.deepEqual(errors(bi), []);
  });
  it('fall back to the catalogue default (1) when the setting is unset or invalid', () => {
    assert.equal(created({ sourceType: 'upload' }).spec?.minNumberOfCopies, 1);
    assert.equal(created({ sourceType: 'upload' }, { 'default-min-number-of-backing-image-copies': '0' }).spec?.minNumberOfCopies, 1);
  });
  it('keep what the user gave: uuid, non-zero minNumberOfCopies, export-type', () => {
    const bi: BackingImage = {
      apiVersion: 'longhorn.io/v1beta2',
      kind: 'BackingImage',
      metadata: { name: 'bi-2' },
      spec: { sourceType: 'export-from-volume', sourceParameters: { 'volume-name': 'v', 'export-type': 'qcow2' }, minNumberOfCopies: 3 },
      status: { uuid: 'keepme' },
    };
    backingImageInfo.defaultOnCreate?.(bi, ctx({}, []));
    assert.equal(bi.status?.uuid, 'keepme');
    assert.equal(bi.spec?.minNumberOfCopies, 3);
    assert.equal(bi.spec?.sourceParameters?.['export-type'], 'qcow2');
  });
  it('default export-type to raw, clone encryption to ignore, restore concurrent-limit from its setting', () => {
    assert.equal(created({ sourceType: 'export-from-volume', sourceParameters: { 'volume-name': 'v' } }).spec?.sourceParameters?.['export-type'], 'raw');
    assert.equal(created({ sourceType: 'clone', sourceParameters: { 'backing-image': 'a' } }).spec?.sourceParameters?.['encryption'], 'ignore');
    assert.equal(created({ sourceType: 'restore', sourceParameters: { 'backup-url': 's3://b' } }, { 'backup-concurrent-limit': '7' })
      .spec?.sourceParameters?.['concurrent-limit'], '7');
    assert.deepEqual(created({ sourceType: 'upload' }).spec?.sourceParameters, {});
  });
  it('trim the checksum (and store it lower-case)', () => {
    const bi = created({ sourceType: 'upload', checksum: `  ${FIXTURE_SHA512.toUpperCase()}\n` });
    assert.equal(bi.spec?.checksum, FIXTURE_SHA512);
    assert.deepEqual(errors(bi), []);
  });
});

describe('BackingImage validation', () => {
  it('checksum must be 128 hex characters when set', () => {
    for (const bad of ['abc', FIXTURE_SHA512.slice(1), `${FIXTURE_SHA512.slice(1)}g`, `${FIXTURE_SHA512}0`]) {
      const bi = manifest('BackingImage') as BackingImage;
      bi.spec!.checksum = bad;
      const errs = errors(bi);
      assert.deepEqual(fieldsOf(errs), ['spec.checksum:FieldValueInvalid']);
      assert.match(errs[0]!.message, /SHA-512/);
    }
    const empty = manifest('BackingImage') as BackingImage;
    empty.spec!.checksum = '';
    assert.deepEqual(errors(empty), []);
  });
  it('download requires an http(s) sourceParameters.url', () => {
    const missing = created({ sourceType: 'download' });
    assert.deepEqual(fieldsOf(errors(missing)), ['spec.sourceParameters.url:FieldValueRequired']);
    const ftp = created({ sourceType: 'download', sourceParameters: { url: 'ftp://x/y' } });
    assert.deepEqual(fieldsOf(errors(ftp)), ['spec.sourceParameters.url:FieldValueInvalid']);
  });
  it('other sources require their parameters', () => {
    assert.deepEqual(fieldsOf(errors(created({ sourceType: 'export-from-volume' }))), ['spec.sourceParameters.volume-name:FieldValueRequired']);
    assert.deepEqual(fieldsOf(errors(created({ sourceType: 'export-from-volume', sourceParameters: { 'volume-name': 'v', 'export-type': 'vmdk' } }))),
      ['spec.sourceParameters.export-type:FieldValueNotSupported']);
    assert.deepEqual(fieldsOf(errors(created({ sourceType: 'restore' }))), ['spec.sourceParameters.backup-url:FieldValueRequired']);
    assert.deepEqual(fieldsOf(errors(created({ sourceType: 'clone', sourceParameters: { 'backing-image': 'a', encryption: 'encrypt' } }))),
      ['spec.sourceParameters.secret:FieldValueRequired', 'spec.sourceParameters.secret-namespace:FieldValueRequired']);
    assert.deepEqual(fieldsOf(errors(created({}))), ['spec.sourceType:FieldValueRequired']);
    assert.deepEqual(errors(created({ sourceType: 'upload' })), []);
  });
  it('minNumberOfCopies must be at least 1', () => {
    const bi = manifest('BackingImage') as BackingImage;
    bi.spec!.minNumberOfCopies = 0;
    assert.deepEqual(fieldsOf(errors(bi)), ['spec.minNumberOfCopies:FieldValueInvalid']);
    delete bi.spec!.minNumberOfCopies;
    assert.deepEqual(fieldsOf(errors(bi)), ['spec.minNumberOfCopies:FieldValueInvalid']);
  });
  it('v2 data engine is refused on create', () => {
    const bi = created({ sourceType: 'upload', dataEngine: 'v2' });
    assert.deepEqual(fieldsOf(errors(bi)), ['spec.dataEngine:FieldValueNotSupported']);
  });
  it('status.uuid is immutable once set, and must be a safe path component', () => {
    const old = manifest('BackingImage');
    const changed = manifest('BackingImage') as BackingImage;
    changed.status!.uuid = 'other';
    const e = errors(changed, old);
    assert.deepEqual(fieldsOf(e), ['status.uuid:FieldValueInvalid']);
    assert.match(e[0]!.message, /immutable/);
    const oldWithout = manifest('BackingImage') as BackingImage;
    delete oldWithout.status!.uuid;
    assert.deepEqual(errors(manifest('BackingImage'), oldWithout), [], 'setting it the first time is fine');
    for (const bad of ['../x', 'a/b', '..']) {
      const bi = manifest('BackingImage') as BackingImage;
      bi.status!.uuid = bad;
      assert.deepEqual(fieldsOf(errors(bi)), ['status.uuid:FieldValueInvalid'], bad);
    }
  });
  it('secret and secretNamespace are immutable once set', () => {
    const old = manifest('BackingImage') as BackingImage;
    old.spec!.secret = 's1';
    old.spec!.secretNamespace = 'ns1';
    const bi = structuredClone(old);
    bi.spec!.secret = 's2';
    bi.spec!.secretNamespace = '';
    assert.deepEqual(fieldsOf(errors(bi, old)), ['spec.secret:FieldValueInvalid', 'spec.secretNamespace:FieldValueInvalid']);
    const fresh = manifest('BackingImage') as BackingImage;
    const first = structuredClone(fresh);
    first.spec!.secret = 's1';
    assert.deepEqual(errors(first, fresh), [], 'setting it the first time is fine');
  });
  it('sourceType, sourceParameters and a set checksum are immutable; checksum case is not a change', () => {
    const old = manifest('BackingImage');
    const t = manifest('BackingImage') as BackingImage;
    t.spec!.sourceType = 'upload';
    assert.ok(fieldsOf(errors(t, old)).includes('spec.sourceType:FieldValueInvalid'));
    const p = manifest('BackingImage') as BackingImage;
    p.spec!.sourceParameters = { url: 'https://example.com/other.img' };
    assert.deepEqual(fieldsOf(errors(p, old)), ['spec.sourceParameters:FieldValueInvalid']);
    const c = manifest('BackingImage') as BackingImage;
    c.spec!.checksum = FIXTURE_SHA512.toUpperCase();
    assert.deepEqual(errors(c, old), []);
    const oldTwo = manifest('BackingImage') as BackingImage;
    oldTwo.spec!.sourceParameters = { url: URL, extra: 'x' };
    const reordered = manifest('BackingImage') as BackingImage;
    reordered.spec!.sourceParameters = { extra: 'x', url: URL };
    assert.deepEqual(errors(reordered, oldTwo), [], 'key order is not a change');
  });
});
