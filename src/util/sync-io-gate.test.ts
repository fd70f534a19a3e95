// SyncIoGate: small calls run synchronously, large ones never, and a run of slow sync calls sends I/O to the thread
// pool for the back-off period (one slow call does not: it may just be the thread being preempted), as does a single
// call that stalled.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SyncIoGate } from './sync-io-gate.js';

test('SyncIoGate runs small calls synchronously and backs off after slow ones in a row', () => {
  let t = 0;
  const gate = new SyncIoGate({ maxBytes: 4096, slowMs: 1, backoffMs: 100, now: () => t });
  const fast = (): number => 7;
  const slow = (): number => {
    t += 5;
    return 7;
  };
  assert.equal(gate.run(4096, fast), 7);
  assert.equal(gate.run(4097, fast), undefined, 'larger than maxBytes: async');
  assert.equal(gate.run(10, slow), 7);
  assert.equal(gate.run(10, fast), 7);
  assert.equal(gate.run(10, slow), 7, 'a fast call in between resets the count');
  assert.equal(gate.run(10, slow), 7);
  assert.equal(gate.run(10, slow), 7, 'third slow call in a row still runs');
  assert.equal(gate.run(10, fast), undefined, 'then async for the back-off period');
  t += 99;
  assert.equal(gate.run(10, fast), undefined);
  t += 2;
  assert.equal(gate.run(10, fast), 7, 'sync again once the back-off is over');
  assert.equal(new SyncIoGate({ maxBytes: 0 }).run(1, fast), undefined, 'maxBytes 0 turns sync I/O off');
});

test('SyncIoGate closes at once after a single call that stalled the event loop', () => {
  let t = 0;
  const gate = new SyncIoGate({ maxBytes: 4096, slowMs: 1, backoffMs: 100, now: () => t });
  const taking = (ms: number) => (): number => {
    t += ms;
    return 7;
  };
  assert.equal(gate.run(10, taking(20)), 7, '20 ms: slow, not a stall');
  assert.equal(gate.run(10, taking(0)), 7, 'still open');
  assert.equal(gate.run(10, taking(21)), 7, 'a stall still completes');
  assert.equal(gate.run(10, taking(0)), undefined, 'then async for the back-off period');
  t += 101;
  assert.equal(gate.run(10, taking(0)), 7);
});
