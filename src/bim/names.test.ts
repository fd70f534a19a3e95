// Tests of the path-safety checks: every way out of backing-images/ is refused, naming the field.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isBimError } from './errors.js';
import { checkChunkSize, checkPathComponent, checkPeerUrl, checkSha512, DiskLayout, fileDirName, isInside } from './names.js';

test('refuses separators, "..", NUL, control characters and empty values, naming the field', () => {
  const bad: Array<[unknown, string]> = [
    ['', 'non-empty'],
    [undefined, 'non-empty'],
    [42, 'non-empty'],
    ['a/b', '"/"'],
    ['/abs', '"/"'],
    ['a\\b', '"\\"'],
    ['..', '".."'],
    ['x..y', '".."'],
    ['a\0b', 'NUL'],
    ['a\nb', 'control'],
    ['x'.repeat(201), 'bytes long'],
  ];
  for (const [value, why] of bad) {
    assert.throws(
      () => checkPathComponent('uuid', value),
      (err: unknown) => isBimError(err, 'InvalidArgument') && err.message.startsWith('uuid') && err.message.includes(why),
      `value ${JSON.stringify(value)}`,
    );
  }
  assert.equal(checkPathComponent('name', 'bi-1.qcow2'), 'bi-1.qcow2');
  assert.equal(checkPathComponent('name', '.hidden'), '.hidden');
});

test('fileDirName checks both parts and names the bad one', () => {
  assert.equal(fileDirName('bi-1', 'u-1'), 'bi-1-u-1');
  assert.throws(() => fileDirName('ok', '../x'), /^BimError: uuid/);
  assert.throws(() => fileDirName('a/b', 'u'), /^BimError: name/);
});

test('isInside does not take "..x" siblings or parents for children', () => {
  assert.equal(isInside('/d', '/d'), true);
  assert.equal(isInside('/d', '/d/x/y'), true);
  assert.equal(isInside('/d', '/d/..x'), true);
  assert.equal(isInside('/d', '/d/../x'), false);
  assert.equal(isInside('/d', '/dx'), false);
  assert.equal(isInside('/d/e', '/d'), false);
});

test('DiskLayout paths stay inside backing-images', () => {
  const l = new DiskLayout('/disk/');
  assert.equal(l.images, '/disk/backing-images');
  assert.equal(l.path('bi-1-u', 'backing'), '/disk/backing-images/bi-1-u/backing');
  assert.throws(() => l.dirOf('..'), /must not contain/);
});

test('chunk sizes, checksums and peer URLs are checked', () => {
  assert.equal(checkChunkSize('4194304'), 4194304);
  for (const v of [0, 1000, 32768, 3 * 1024 * 1024, 128 * 1024 * 1024, 'x']) assert.throws(() => checkChunkSize(v), /power of two/);
  assert.equal(checkSha512('s', 'A'.repeat(128)), 'a'.repeat(128));
  assert.throws(() => checkSha512('expectedChecksum', 'abc'), /^BimError: expectedChecksum/);
  assert.equal(checkPeerUrl('sources[0]', 'http://10.0.0.1:8000/'), 'http://10.0.0.1:8000');
  assert.throws(() => checkPeerUrl('sources[1]', 'file:///etc/passwd'), /sources\[1\].*http:\/\//);
  assert.throws(() => checkPeerUrl('sources[0]', 'https://peer:8000'), /must be an http:\/\/ URL/);
  assert.throws(() => checkPeerUrl('sources[0]', 'http://h/?q=1'), /query/);
});
