// Tests of ImageFormatError and isImageFormatError: code, offset, cause and classification by predicate.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IMAGE_FORMAT_ERROR_CODES, ImageFormatError, isImageFormatError } from './errors.js';

test('ImageFormatError carries code, offset, cause and a name', () => {
  const cause = new Error('inflate failed');
  const err = new ImageFormatError('Corrupt', 'qcow2 compressed cluster at offset 4096: bad', { offset: 4096, cause });
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'ImageFormatError');
  assert.equal(err.code, 'Corrupt');
  assert.equal(err.offset, 4096);
  assert.equal(err.cause, cause);
  assert.match(String(err), /^ImageFormatError: qcow2 compressed cluster/);
});

test('offset and cause are optional', () => {
  const err = new ImageFormatError('BadSize', 'raw image size 1000 is not a multiple of 512 bytes');
  assert.equal(err.offset, undefined);
  assert.equal('cause' in err, false);
});

test('isImageFormatError classifies by class and code', () => {
  const err = new ImageFormatError('BackingFile', 'x');
  assert.equal(isImageFormatError(err), true);
  assert.equal(isImageFormatError(err, 'BackingFile'), true);
  assert.equal(isImageFormatError(err, 'Corrupt'), false);
  assert.equal(isImageFormatError(new Error('x')), false);
  assert.equal(isImageFormatError({ code: 'BackingFile' }), false);
  assert.equal(isImageFormatError(undefined), false);
});

test('the code list has no duplicates', () => {
  assert.equal(new Set(IMAGE_FORMAT_ERROR_CODES).size, IMAGE_FORMAT_ERROR_CODES.length);
});
