// Tests of v1beta1 → v1beta2 BackingImage conversion, including the ten documents of the seed scalability
// test plan (step 3), embedded verbatim: they must convert, lose nothing to pruning, default and validate.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';

import { backingImageInfo, type BackingImage } from './backing-image.js';
import { isUnsupportedVersion } from './errors.js';
import type { DefaultingContext } from './kind.js';
import type { KubeObject } from './meta.js';
import { pruneUnknownFields } from './prune.js';
import { convertToStorage, findKind, kindForObject } from './registry.js';
import { validateObject } from './validate.js';

const SEED_STEP_3 = `
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test1
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test2
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test3
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test4
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test5
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test6
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test7
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test8
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test9
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
---
apiVersion: longhorn.io/v1beta1
kind: BackingImage
metadata:
  name: bi-test10
  namespace: longhorn-system
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
`;

let nextId = 0;
const ctx: DefaultingContext = {
  setting: () => undefined,
  randomId: () => (nextId++).toString(16).padStart(8, '0'),
  now: () => new Date('2024-05-01T10:00:00Z'),
};

function parse(text: string): KubeObject[] {
  return parseAllDocuments(text).map((d) => {
    assert.deepEqual(d.errors, []);
    return d.toJS() as KubeObject;
  });
}

describe('seed scalability test plan, step 3', () => {
  const docs = parse(SEED_STEP_3);

  it('has ten v1beta1 BackingImages', () => {
    assert.equal(docs.length, 10);
    for (const d of docs) {
      assert.equal(d.apiVersion, 'longhorn.io/v1beta1');
      assert.equal(kindForObject(d.apiVersion, d.kind), backingImageInfo);
    }
  });

  it('each converts to v1beta2, keeps its source, and validates after defaulting', () => {
    const uuids = new Set<string>();
    docs.forEach((doc, i) => {
      const info = findKind(doc.kind);
      assert.ok(info);
      const bi = convertToStorage(info, doc) as BackingImage;
      assert.equal(bi.apiVersion, 'longhorn.io/v1beta2');
      assert.equal(bi.metadata.name, `bi-test${i + 1}`);
      assert.equal(bi.metadata.namespace, 'longhorn-system');
      assert.equal(bi.spec?.sourceType, 'download');
      assert.equal(bi.spec?.sourceParameters?.['url'], 'https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2');
      assert.deepEqual(pruneUnknownFields(info, bi), []);
      info.defaultOnCreate?.(bi, ctx);
      assert.deepEqual(validateObject(info, bi), []);
      assert.equal(bi.spec?.minNumberOfCopies, 1);
      uuids.add(bi.status?.uuid ?? '');
    });
    assert.equal(uuids.size, 10, 'every image gets its own uuid');
  });

  it('conversion does not modify its input', () => {
    const before = structuredClone(docs[0]);
    convertToStorage(backingImageInfo, docs[0]!);
    assert.deepEqual(docs[0], before);
  });
});

describe('v1beta1 fields', () => {
  const v1beta1 = (spec: Record<string, unknown>, status?: Record<string, unknown>): KubeObject => ({
    apiVersion: 'longhorn.io/v1beta1',
    kind: 'BackingImage',
    metadata: { name: 'old', namespace: 'longhorn-system' },
    spec,
    ...(status !== undefined ? { status } : {}),
  });

  it('spec.disks becomes spec.diskFileSpecMap with empty entries', () => {
    const bi = convertToStorage(backingImageInfo, v1beta1({ disks: { 'disk-a': {}, 'disk-b': '' }, sourceType: 'upload' })) as BackingImage;
    assert.deepEqual(bi.spec?.diskFileSpecMap, { 'disk-a': {}, 'disk-b': {} });
    assert.equal((bi.spec as Record<string, unknown>)['disks'], undefined);
  });

  it('deprecated imageURL becomes a download source; an explicit url wins', () => {
    const a = convertToStorage(backingImageInfo, v1beta1({ imageURL: 'https://e.com/a.img' })) as BackingImage;
    assert.equal(a.spec?.sourceType, 'download');
    assert.deepEqual(a.spec?.sourceParameters, { url: 'https://e.com/a.img' });
    assert.equal((a.spec as Record<string, unknown>)['imageURL'], undefined);
    const b = convertToStorage(backingImageInfo, v1beta1({ imageURL: 'https://e.com/a.img', sourceType: 'download', sourceParameters: { url: 'https://e.com/b.img' } })) as BackingImage;
    assert.equal(b.spec?.sourceParameters?.['url'], 'https://e.com/b.img');
  });

  it('checksum, sourceType and sourceParameters carry over', () => {
    const sum = 'ab'.repeat(64);
    const bi = convertToStorage(backingImageInfo, v1beta1({ checksum: sum, sourceType: 'export-from-volume', sourceParameters: { 'volume-name': 'v1', 'export-type': 'qcow2' } })) as BackingImage;
    assert.equal(bi.spec?.checksum, sum);
    assert.equal(bi.spec?.sourceType, 'export-from-volume');
    assert.deepEqual(bi.spec?.sourceParameters, { 'volume-name': 'v1', 'export-type': 'qcow2' });
  });

  it('status download maps are dropped, the rest kept', () => {
    const bi = convertToStorage(backingImageInfo, v1beta1({ sourceType: 'upload' }, {
      ownerID: 'n1', uuid: 'u1', size: 10, checksum: '',
      diskFileStatusMap: { 'disk-a': { state: 'ready', progress: 100 } },
      diskLastRefAtMap: {}, diskDownloadStateMap: { 'disk-a': 'downloaded' }, diskDownloadProgressMap: { 'disk-a': 100 },
    })) as BackingImage;
    assert.deepEqual(bi.status, {
      ownerID: 'n1', uuid: 'u1', size: 10, checksum: '',
      diskFileStatusMap: { 'disk-a': { state: 'ready', progress: 100 } }, diskLastRefAtMap: {},
    });
    assert.deepEqual(pruneUnknownFields(backingImageInfo, bi), []);
  });

  it('an apiVersion that is not served is refused with UnsupportedVersion', () => {
    const o = v1beta1({});
    o.apiVersion = 'longhorn.io/v1alpha1';
    assert.throws(() => convertToStorage(backingImageInfo, o), (err: unknown) => isUnsupportedVersion(err));
    assert.equal(kindForObject('longhorn.io/v1alpha1', 'BackingImage'), undefined);
    assert.equal(kindForObject('longhorn.io/v1beta1', 'Volume'), undefined);
  });

  it('a v1beta2 object is returned unchanged', () => {
    const o: KubeObject = { apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name: 'x' }, spec: {} };
    assert.equal(convertToStorage(backingImageInfo, o), o);
  });
});
