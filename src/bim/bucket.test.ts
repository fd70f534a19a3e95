// Tests of the bandwidth cap's token bucket with a fake clock: the burst goes at once, the rest at `rate`, waiters
// in order, and an abort ends a wait.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket, type BucketTime } from './bucket.js';

function fakeTime(): BucketTime & { t: number; slept: number[] } {
  const time = {
    t: 0,
    slept: [] as number[],
    now: () => time.t,
    sleep: async (ms: number, signal?: AbortSignal) => {
      signal?.throwIfAborted();
      time.slept.push(ms);
      time.t += ms;
    },
  };
  return time;
}

test('sends the burst at once, then paces at the rate', async () => {
  const time = fakeTime();
  const b = new TokenBucket(1_000_000, { burst: 100_000, time });
  await b.take(100_000);
  assert.equal(time.t, 0);
  await b.take(1_000_000);
  // 1 MB at 1 MB/s: one second, in burst-sized steps.
  assert.ok(Math.abs(time.t - 1000) <= 10, `took ${time.t} ms`);
  assert.ok(time.slept.every((ms) => ms <= 100), 'never waits longer than one burst');
});

test('refill never exceeds the burst', async () => {
  const time = fakeTime();
  const b = new TokenBucket(1000, { burst: 2000, time });
  time.t += 1e9;
  assert.equal(b.delayFor(2000), 0);
  assert.equal(b.delayFor(2001) > 0, true);
});

test('waiters are served in order and total time follows the rate', async () => {
  const time = fakeTime();
  const b = new TokenBucket(10_000, { burst: 1000, time });
  const order: number[] = [];
  await Promise.all([1, 2, 3].map((i) => b.take(5000).then(() => order.push(i))));
  assert.deepEqual(order, [1, 2, 3]);
  assert.ok(Math.abs(time.t - 1400) <= 20, `15000 bytes at 10000/s with a 1000 burst took ${time.t} ms`);
});

test('an aborted wait rejects and does not block the next waiter', async () => {
  const time = fakeTime();
  const b = new TokenBucket(1000, { burst: 1000, time });
  await b.take(1000);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(b.take(500, ac.signal));
  await b.take(500);
});
