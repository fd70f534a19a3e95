// Unit tests of restart policy and crash-loop backoff (kubelet's numbers, scaled by the base).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffPolicy, failuresAfterExit, restartDelayMs, shouldRestart, volumeRecheckMs } from './backoff.js';

test('kubelet defaults: 10 s doubling to 5 min, reset after 10 min of running', () => {
  const p = backoffPolicy();
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 50].map((n) => restartDelayMs(n, p)), [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
  assert.equal(restartDelayMs(0, p), 0);
  assert.equal(p.resetAfterMs, 600_000);
  assert.equal(failuresAfterExit(4, 1000, p), 5);
  assert.equal(failuresAfterExit(4, 600_000, p), 1);
});

test('a small base scales the whole curve (how tests run fast)', () => {
  const p = backoffPolicy(100);
  assert.deepEqual([1, 2, 3].map((n) => restartDelayMs(n, p)), [100, 200, 400]);
  assert.equal(p.maxMs, 3000);
  assert.equal(restartDelayMs(1000, p), 3000);
  assert.throws(() => backoffPolicy(0), RangeError);
  assert.throws(() => backoffPolicy(100, 50), RangeError);
});

test('restart policies', () => {
  assert.equal(shouldRestart('Always', 0), true);
  assert.equal(shouldRestart(undefined, 1), true);
  assert.equal(shouldRestart('OnFailure', 0), false);
  assert.equal(shouldRestart('OnFailure', 2), true);
  assert.equal(shouldRestart('Never', 2), false);
});

test('a pod waiting for its volumes checks again after 250 ms, doubling to 2 s', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 100].map(volumeRecheckMs), [250, 500, 1000, 2000, 2000, 2000]);
  assert.equal(volumeRecheckMs(0), 250);
});
