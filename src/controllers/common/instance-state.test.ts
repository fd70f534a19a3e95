import assert from 'node:assert/strict';
import test from 'node:test';
import { isBehind, stateWhileUnreachable } from './instance-state.js';

test('a report is stale only for the incarnation the status recorded, and only when it is behind', () => {
  const running = { currentState: 'running', uuid: 'a' };
  assert.equal(isBehind(running, { uid: 'a', state: 'starting' }), true);
  assert.equal(isBehind(running, { uid: 'a', state: 'running' }), false);
  assert.equal(isBehind(running, { uid: 'a', state: 'error' }), false, 'a failure is news');
  assert.equal(isBehind(running, { uid: 'b', state: 'starting' }), false, 'another incarnation is a restart');
  assert.equal(isBehind({ currentState: 'stopped', uuid: 'a' }, { uid: 'a', state: 'running' }), true, 'a stopped incarnation does not run again');
  assert.equal(isBehind({ currentState: 'unknown', uuid: 'a' }, { uid: 'a', state: 'starting' }), false);
  assert.equal(isBehind(undefined, { uid: 'a', state: 'starting' }), false);
  assert.equal(isBehind(running, { uid: '', state: 'starting' }), false, 'an instance manager without uids is taken at its word');
});

test('an instance that was up stays unknown while its manager cannot be asked, and is not behind when seen running again', () => {
  for (const s of ['running', 'starting', 'unknown']) assert.equal(stateWhileUnreachable(s), 'unknown', s);
  for (const s of ['stopped', 'error', '', undefined]) assert.equal(stateWhileUnreachable(s), 'stopped', String(s));
  // Two passes while the node is down, then the same incarnation reported running: accepted.
  const recorded = { uuid: 'u1', currentState: stateWhileUnreachable(stateWhileUnreachable('running')) };
  assert.equal(isBehind(recorded, { uid: 'u1', state: 'running' }), false);
});
