// Tests of the state machine: allowed transitions, and every non-terminal state failing after its deadline with a
// message a person can act on. Time comes from an injected clock; nothing sleeps.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canTransition, expiredMessage, percent, type DeadlineView, type Timeouts } from './states.js';
import { FileRecord, FileTable } from './table.js';

const T: Timeouts = { pendingMs: 60_000, startingMs: 30_000, stallMs: 60_000 };

function view(over: Partial<DeadlineView>): DeadlineView {
  return { name: 'bi-1', state: 'pending', enteredAt: 0, lastProgressAt: 0, activity: undefined, lastError: undefined, waitingFor: undefined, running: true, ...over };
}

test('ready is only left for re-verification; failed only for a new request', () => {
  assert.equal(canTransition('ready', 'failed'), false);
  assert.equal(canTransition('ready', 'pending'), false);
  assert.equal(canTransition('ready', 'unknown'), true);
  assert.equal(canTransition('failed', 'pending'), true);
  assert.equal(canTransition('failed', 'ready'), false);
  assert.equal(canTransition('in-progress', 'pending'), false);
});

test('stall in progress: measured from the last byte, message names the activity and the last error', () => {
  const v = view({ state: 'in-progress', enteredAt: 0, lastProgressAt: 100_000, activity: 'sync of bi-1 from http://a:1', lastError: 'http://a:1 is unreachable: ECONNREFUSED' });
  assert.equal(expiredMessage(v, 159_999, T), undefined);
  assert.equal(expiredMessage(v, 160_000, T), 'sync of bi-1 from http://a:1 stalled: no bytes for 60 s (last error: http://a:1 is unreachable: ECONNREFUSED)');
});

test('starting: the deadline restarts when a peer shows progress', () => {
  const v = view({ state: 'starting', enteredAt: 0, lastProgressAt: 0, activity: 'sync of bi-1 from http://a:1' });
  assert.match(expiredMessage(v, 30_000, T) ?? '', /did not start moving data within 30 s/);
  assert.equal(expiredMessage({ ...v, lastProgressAt: 20_000 }, 30_000, T), undefined);
});

test('pending: a running request and a partial file left by a restart both time out', () => {
  assert.equal(expiredMessage(view({}), 59_000, T), undefined);
  assert.match(expiredMessage(view({ waitingFor: 'a send slot' }), 60_000, T) ?? '', /did not start within 60 s: waiting for a send slot/);
  assert.match(expiredMessage(view({ running: false, waitingFor: 'a restart' }), 60_000, T) ?? '', /waited 60 s for a new sync or fetch request after a restart; partial data is kept/);
});

test('terminal states and unknown never expire', () => {
  for (const state of ['ready', 'failed', 'unknown'] as const) assert.equal(expiredMessage(view({ state }), 1e12, T), undefined);
  assert.equal(expiredMessage(view({ state: 'ready', jobKind: 'verify' }), 1e12, T), undefined);
});

test('a scrub of a ready file that reads nothing for the stall time expires, saying the disk may be hung', () => {
  const v = view({ state: 'ready', enteredAt: 0, lastProgressAt: 100_000, jobKind: 'scrub', activity: 'scrub of bi-1' });
  assert.equal(expiredMessage(v, 159_999, T), undefined);
  assert.equal(expiredMessage(v, 160_000, T), 'scrub of bi-1 stalled: nothing read for 60 s; the disk may be hung, and the volumes reading this copy with it');
});

test('FileTable.expired uses the injected clock and pushes transitions to watchers at once', () => {
  let now = 1000;
  const table = new FileTable({ clock: { now: () => now } });
  const events: string[] = [];
  table.subscribe((ev) => events.push(ev.type === 'SNAPSHOT' ? 'SNAPSHOT' : `${ev.type}:${ev.file.state}`));
  const rec = new FileRecord('bi-1-u', 'bi-1', 'u', now);
  table.add(rec);
  table.transition(rec, 'starting');
  table.transition(rec, 'in-progress');
  rec.activity = 'sync of bi-1 from http://a:1';
  rec.job = { kind: 'sync', abort: new AbortController(), done: Promise.resolve() };
  now += 59_000;
  assert.deepEqual(table.expired(T), []);
  table.touch(rec);
  now += 59_000;
  assert.deepEqual(table.expired(T), []);
  now += 1000;
  const exp = table.expired(T);
  assert.equal(exp.length, 1);
  assert.match(exp[0]![1], /stalled: no bytes for 60 s/);
  assert.deepEqual(events, ['SNAPSHOT', 'ADDED:pending', 'MODIFIED:starting', 'MODIFIED:in-progress']);
  assert.throws(() => table.transition(rec, 'pending'), /cannot go from in-progress to pending/);
  table.close();
});

test('find() by name is unambiguous or says which uuids exist', () => {
  const table = new FileTable({ clock: { now: () => 0 } });
  table.add(new FileRecord('bi-1-a', 'bi-1', 'a', 0));
  table.add(new FileRecord('bi-1-b', 'bi-1', 'b', 0));
  assert.throws(() => table.find('bi-1'), /2 files are named "bi-1" \(uuids a, b\)/);
  assert.equal(table.find('bi-1', 'b').key, 'bi-1-b');
  assert.throws(() => table.find('bi-2'), /no file "bi-2"/);
  table.close();
});

test('percent is whole, bounded and 0 for unknown size', () => {
  assert.equal(percent(1, 3), 33);
  assert.equal(percent(5, 0), 0);
  assert.equal(percent(7, 5), 100);
});
