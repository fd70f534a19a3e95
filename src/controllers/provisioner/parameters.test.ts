// Tests of the class-parameter rules: what a class asks for, and when its data source differs from an image's.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseClassParameters, sourceMismatch, volumeSpecFor } from './parameters.js';

describe('parseClassParameters', () => {
  it("reads the seed's class as Longhorn does", () => {
    const p = parseClassParameters({ numberOfReplicas: '3', staleReplicaTimeout: '2880', fromBackup: '', fsType: 'ext4', backingImage: 'bi-test1' });
    assert.deepEqual(p, { numberOfReplicas: 3, staleReplicaTimeout: 2880, fsType: 'ext4', backingImage: 'bi-test1', diskSelector: [], nodeSelector: [] });
    assert.deepEqual(volumeSpecFor(p, 33554432), { size: '33554432', frontend: 'blockdev', numberOfReplicas: 3, staleReplicaTimeout: 2880, backingImage: 'bi-test1' });
  });

  it('reads a data source, a checksum and selectors', () => {
    const p = parseClassParameters({
      backingImage: 'img',
      backingImageDataSourceType: 'download',
      backingImageDataSourceParameters: '{"url": "http://h/x.qcow2"}',
      backingImageChecksum: 'ABC',
      diskSelector: 'ssd, fast',
      nodeSelector: 'storage',
    });
    assert.deepEqual(p.source, { type: 'download', parameters: { url: 'http://h/x.qcow2' }, checksum: 'abc' });
    assert.deepEqual(p.diskSelector, ['ssd', 'fast']);
    assert.deepEqual(p.nodeSelector, ['storage']);
  });

  it('refuses values it cannot use, naming the parameter', () => {
    assert.throws(() => parseClassParameters({ numberOfReplicas: 'three' }), /numberOfReplicas/);
    assert.throws(() => parseClassParameters({ fsType: 'btrfs' }), /fsType/);
    assert.throws(() => parseClassParameters({ backingImageDataSourceType: 'download' }), /backingImage is not/);
    assert.throws(() => parseClassParameters({ backingImage: 'i', backingImageDataSourceType: 'ftp' }), /backingImageDataSourceType/);
    assert.throws(() => parseClassParameters({ backingImage: 'i', backingImageDataSourceType: 'download', backingImageDataSourceParameters: '{url' }), /not JSON/);
  });
});

describe('sourceMismatch', () => {
  const image = { spec: { sourceType: 'download', sourceParameters: { url: 'http://h/a.qcow2' }, checksum: 'abc' } };
  const source = (url: string, checksum?: string) =>
    parseClassParameters({ backingImage: 'i', backingImageDataSourceType: 'download', backingImageDataSourceParameters: JSON.stringify({ url }), ...(checksum ? { backingImageChecksum: checksum } : {}) }).source;

  it('is undefined for a matching source or a class without one', () => {
    assert.equal(sourceMismatch(source('http://h/a.qcow2', 'abc'), image), undefined);
    assert.equal(sourceMismatch(source('http://h/a.qcow2'), image), undefined);
    assert.equal(sourceMismatch(undefined, image), undefined);
  });

  it('names the first differing field with both values', () => {
    assert.deepEqual(sourceMismatch(source('http://h/b.qcow2'), image), { field: 'backingImageDataSourceParameters.url', class: 'http://h/b.qcow2', image: 'http://h/a.qcow2' });
    assert.deepEqual(sourceMismatch(source('http://h/a.qcow2', 'def'), image), { field: 'backingImageChecksum', class: 'def', image: 'abc' });
    const upload = parseClassParameters({ backingImage: 'i', backingImageDataSourceType: 'upload' }).source;
    assert.equal(sourceMismatch(upload, image)?.field, 'backingImageDataSourceType');
  });
});
