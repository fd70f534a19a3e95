// Tests of Range and Accept-Encoding parsing for downloads.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { acceptsGzip, parseRange } from './ranges.js';

test('single ranges: first-last, open end, suffix, clamped end', () => {
  assert.deepEqual(parseRange('bytes=0-99', 1000), { kind: 'partial', start: 0, end: 99 });
  assert.deepEqual(parseRange('bytes=900-', 1000), { kind: 'partial', start: 900, end: 999 });
  assert.deepEqual(parseRange('bytes=-100', 1000), { kind: 'partial', start: 900, end: 999 });
  assert.deepEqual(parseRange('bytes=-5000', 1000), { kind: 'partial', start: 0, end: 999 });
  assert.deepEqual(parseRange('bytes=990-5000', 1000), { kind: 'partial', start: 990, end: 999 });
});

test('unsatisfiable and ignored ranges', () => {
  assert.deepEqual(parseRange('bytes=1000-', 1000), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=-0', 1000), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
  for (const h of [undefined, '', 'items=0-1', 'bytes=5-1', 'bytes=0-1,5-6', 'bytes=abc', 'bytes=-']) {
    assert.deepEqual(parseRange(h, 1000), { kind: 'full' }, String(h));
  }
});

test('gzip only when accepted with q > 0', () => {
  assert.equal(acceptsGzip('gzip'), true);
  assert.equal(acceptsGzip('br, gzip;q=0.5'), true);
  assert.equal(acceptsGzip('gzip;q=0'), false);
  assert.equal(acceptsGzip('identity'), false);
  assert.equal(acceptsGzip('*'), false);
  assert.equal(acceptsGzip(undefined), false);
});
