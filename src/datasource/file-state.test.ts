// The state machine's timeouts, driven by a fake clock.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../controller-kit/clock.js';
import { StateMachine, type TimedState } from './file-state.js';

const timeouts = { pending: 1000, starting: 2000, 'in-progress': 3000, 'ready-for-transfer': 4000 };

function machine(): { m: StateMachine; clock: FakeClock; fired: [TimedState, number][] } {
  const clock = new FakeClock();
  const fired: [TimedState, number][] = [];
  const m = new StateMachine(clock, timeouts, (s, ms) => {
    fired.push([s, ms]);
    m.set('failed', `timed out in ${s}`);
  });
  return { m, clock, fired };
}

test('each non-terminal state times out after its own limit', () => {
  const { m, clock, fired } = machine();
  clock.advance(999);
  assert.equal(fired.length, 0);
  m.set('starting');
  clock.advance(1999);
  assert.equal(fired.length, 0, 'entering a state restarts the clock');
  clock.advance(1);
  assert.deepEqual(fired, [['starting', 2000]]);
  assert.equal(m.state, 'failed');
});

test('in-progress measures idleness: touch() re-arms it', () => {
  const { m, clock, fired } = machine();
  m.set('in-progress');
  for (let i = 0; i < 5; i++) {
    clock.advance(2500);
    m.touch();
  }
  assert.equal(fired.length, 0);
  clock.advance(3000);
  assert.deepEqual(fired, [['in-progress', 3000]]);
});

test('terminal states are final and have no timer; a message change alone notifies', () => {
  const { m, clock, fired } = machine();
  let changes = 0;
  m.onChange(() => changes++);
  m.set('ready-for-transfer');
  m.set('ready-for-transfer', 'still here');
  m.set('ready');
  assert.equal(changes, 3);
  assert.equal(m.set('failed', 'late'), false);
  assert.equal(m.state, 'ready');
  clock.advance(100_000);
  assert.deepEqual(fired, []);
  assert.equal(clock.pendingTimers(), 0);
});
