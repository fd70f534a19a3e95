// Unit tests of the volume size parser of the /v1 API.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSize } from './quantity.js';

test('numbers, decimal strings and Kubernetes quantities become exact byte strings', () => {
  assert.deepEqual(parseSize(1073741824), { bytes: '1073741824' });
  assert.deepEqual(parseSize('2147483648'), { bytes: '2147483648' });
  assert.deepEqual(parseSize('2Gi'), { bytes: '2147483648' });
  assert.deepEqual(parseSize('1.5Gi'), { bytes: '1610612736' });
  assert.deepEqual(parseSize('512Mi'), { bytes: '536870912' });
  assert.deepEqual(parseSize('10G'), { bytes: '10000000000' });
  assert.deepEqual(parseSize('4k'), { bytes: '4000' });
  assert.deepEqual(parseSize('8Ei'), { problem: `must be at most ${(1n << 63n) - 1n} bytes` });
  assert.deepEqual(parseSize('7Ei'), { bytes: (7n << 60n).toString() });
});

test('anything else is refused with a message that says what is accepted', () => {
  for (const bad of ['', 'abc', '-1', '2GB', '2 gi', '1e9', 'Gi', null, true, {}, -5, 1.5, 0]) {
    const r = parseSize(bad);
    assert.ok('problem' in r, JSON.stringify(bad));
  }
  assert.match((parseSize('2GB') as { problem: string }).problem, /2Gi/);
  assert.deepEqual(parseSize('0.5'), { problem: 'is not a whole number of bytes' });
  assert.deepEqual(parseSize('0Gi'), { problem: 'must be greater than 0' });
});
