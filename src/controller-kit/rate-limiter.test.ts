// Per-key exponential backoff: growth, cap, independence of keys, and reset by forget.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExponentialRateLimiter } from './rate-limiter.js';

describe('ExponentialRateLimiter', () => {
  it('doubles per failure up to the cap', () => {
    const rl = new ExponentialRateLimiter({ baseMs: 5, maxMs: 100 });
    const delays = Array.from({ length: 7 }, () => rl.when('ns/a'));
    assert.deepEqual(delays, [5, 10, 20, 40, 80, 100, 100]);
    assert.equal(rl.retries('ns/a'), 7);
  });

  it('keeps keys independent and forget resets one key', () => {
    const rl = new ExponentialRateLimiter({ baseMs: 1, maxMs: 1000 });
    rl.when('ns/a');
    rl.when('ns/a');
    assert.equal(rl.when('ns/b'), 1);
    rl.forget('ns/a');
    assert.equal(rl.retries('ns/a'), 0);
    assert.equal(rl.when('ns/a'), 1);
    assert.equal(rl.retries('ns/b'), 1);
  });

  it('stays at the cap after very many failures', () => {
    const rl = new ExponentialRateLimiter({ baseMs: 5, maxMs: 1_000_000 });
    let last = 0;
    for (let i = 0; i < 2000; i++) last = rl.when('k');
    assert.equal(last, 1_000_000);
  });

  it('defaults to 5 ms … 1000 s like client-go', () => {
    const rl = new ExponentialRateLimiter();
    assert.equal(rl.when('k'), 5);
    for (let i = 0; i < 40; i++) rl.when('k');
    assert.equal(rl.when('k'), 1_000_000);
  });

  it('refuses a nonsensical configuration', () => {
    assert.throws(() => new ExponentialRateLimiter({ baseMs: 0 }), RangeError);
    assert.throws(() => new ExponentialRateLimiter({ baseMs: 10, maxMs: 5 }), RangeError);
  });
});
