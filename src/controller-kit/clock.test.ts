// FakeClock ordering and sleep cancellation; realClock sleep sanity.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock, realClock } from './clock.js';

describe('FakeClock', () => {
  it('fires due timers in due-time order with now() at each due time', () => {
    const clock = new FakeClock(1000);
    const fired: [string, number][] = [];
    clock.setTimeout(() => fired.push(['b', clock.now()]), 20);
    clock.setTimeout(() => fired.push(['a', clock.now()]), 10);
    clock.setTimeout(() => fired.push(['a2', clock.now()]), 10);
    clock.setTimeout(() => fired.push(['late', clock.now()]), 100);
    clock.advance(50);
    assert.deepEqual(fired, [['a', 1010], ['a2', 1010], ['b', 1020]]);
    assert.equal(clock.now(), 1050);
    assert.equal(clock.pendingTimers(), 1);
  });

  it('fires timers scheduled by a timer when they fall inside the window', () => {
    const clock = new FakeClock(0);
    const fired: number[] = [];
    clock.setTimeout(() => {
      fired.push(clock.now());
      clock.setTimeout(() => fired.push(clock.now()), 5);
    }, 5);
    clock.advance(10);
    assert.deepEqual(fired, [5, 10]);
  });

  it('clearTimeout prevents firing', () => {
    const clock = new FakeClock(0);
    let fired = false;
    const h = clock.setTimeout(() => (fired = true), 5);
    clock.clearTimeout(h);
    clock.advance(10);
    assert.equal(fired, false);
  });

  it('sleep resolves at the fake time and rejects on abort', async () => {
    const clock = new FakeClock(0);
    const done = clock.sleep(30);
    let resolved = false;
    void done.then(() => (resolved = true));
    await clock.advanceAndSettle(29);
    assert.equal(resolved, false);
    await clock.advanceAndSettle(1);
    assert.equal(resolved, true);

    const ac = new AbortController();
    const aborted = clock.sleep(30, ac.signal);
    ac.abort(new Error('stop'));
    await assert.rejects(aborted, /stop/);
    assert.equal(clock.pendingTimers(), 0, 'abort clears the timer');
    await assert.rejects(clock.sleep(1, ac.signal), /stop/);
  });
});

describe('realClock', () => {
  it('sleeps for roughly the asked time', async () => {
    const start = performance.now();
    await realClock.sleep(20);
    assert.ok(performance.now() - start >= 15);
  });
});
