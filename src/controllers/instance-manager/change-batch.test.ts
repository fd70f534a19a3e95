// The batch of instance changes behind an instance manager's status: one write per burst, and a refused write is
// retried with its changes (newer ones win), never dropped; a whole list (the stream's SNAPSHOT) replaces what was
// pending, changes after it go on top; a stopped stream's batch is discarded.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChangeBatch } from './change-batch.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the first change is written at once, the rest of a burst in one write', async () => {
  const writes: [string, string | null][][] = [];
  const b = new ChangeBatch<string>(async (_m, c) => void writes.push([...c]), { minIntervalMs: 20 });
  b.add('im-1', 'r1', 'starting');
  b.add('im-1', 'r1', 'running');
  b.add('im-1', 'r2', null);
  await tick(60);
  assert.deepEqual(writes, [[['r1', 'starting']], [['r1', 'running'], ['r2', null]]]);
  b.stop();
});

test('a refused write keeps its changes, behind newer ones, and is retried until it lands', async () => {
  const written: [string, string | null][][] = [];
  let refusals = 2;
  const b = new ChangeBatch<string>(async (_m, c) => {
    if (refusals-- > 0) {
      b.add('im-1', 'r2', 'running'); // the stream moves on while the store refuses
      throw new Error('the etcd cluster cannot serve this now');
    }
    written.push([...c]);
  }, { minIntervalMs: 5, retryMs: 20 });
  b.add('im-1', 'r1', 'running');
  b.add('im-1', 'r2', 'starting');
  for (let i = 0; i < 50 && written.length === 0; i++) await tick(10);
  assert.deepEqual(written, [[['r1', 'running'], ['r2', 'running']]], 'nothing dropped, the newest view of r2 wins');
  assert.equal(b.pendingFor('im-1'), undefined);
  b.stop();
});

test('a write refused after its stream stopped (the batch discarded) does not come back', async () => {
  let release: (() => void) | undefined;
  const b = new ChangeBatch<string>(async () => {
    await new Promise<void>((r) => (release = r));
    throw new Error('refused');
  }, { minIntervalMs: 1, retryMs: 5 });
  b.add('im-1', 'r1', 'starting');
  for (let i = 0; i < 50 && !release; i++) await tick(2);
  b.discard('im-1');
  release?.();
  await tick(30);
  assert.equal(b.pendingFor('im-1'), undefined);
  b.stop();
});

test('a whole list replaces what was pending and is written as one; changes after it go on top', async () => {
  const writes: { full: boolean; changes: [string, string | null][] }[] = [];
  const b = new ChangeBatch<string>(async (_m, c, full) => void writes.push({ full, changes: [...c] }), { minIntervalMs: 20 });
  b.add('im-1', 'r1', 'starting'); // written at once
  b.add('im-1', 'r1', 'running');
  b.replace('im-1', new Map([['r2', 'running']]));
  b.add('im-1', 'r3', 'starting');
  await tick(80);
  assert.deepEqual(writes, [
    { full: false, changes: [['r1', 'starting']] },
    { full: true, changes: [['r2', 'running'], ['r3', 'starting']] },
  ]);
  b.stop();
});

test('a refused change batch does not come back over a whole list that came meanwhile; a refused list is retried as a list', async () => {
  const writes: { full: boolean; changes: [string, string | null][] }[] = [];
  let refusals = 2;
  const b = new ChangeBatch<string>(async (_m, c, full) => {
    if (refusals-- > 0) {
      // The stream reconnected while the store refused: its SNAPSHOT, then a change.
      if (!full) b.replace('im-1', new Map([['r1', 'running']]));
      else b.add('im-1', 'r2', 'starting');
      throw new Error('the etcd cluster cannot serve this now');
    }
    writes.push({ full, changes: [...c] });
  }, { minIntervalMs: 5, retryMs: 20 });
  b.add('im-1', 'r1', 'starting');
  for (let i = 0; i < 50 && writes.length === 0; i++) await tick(10);
  assert.deepEqual(writes, [{ full: true, changes: [['r1', 'running'], ['r2', 'starting']] }]);
  assert.equal(b.pendingFor('im-1'), undefined);
  b.stop();
});

test('settled waits out a write already under way, so a status written after it is the last word', async () => {
  let release: () => void = () => undefined;
  const order: string[] = [];
  const b = new ChangeBatch<string>(async () => {
    await new Promise<void>((r) => (release = r));
    order.push('batch write landed');
  }, { minIntervalMs: 1 });
  b.add('im-1', 'r1', 'running');
  await tick(20); // the write has started and waits in the store
  b.discard('im-1');
  const settled = b.settled('im-1').then(() => order.push('settled'));
  await tick(20);
  assert.deepEqual(order, [], 'not settled while the write is under way');
  release();
  await settled;
  assert.deepEqual(order, ['batch write landed', 'settled']);
  await b.settled('im-1'); // nothing under way: at once
  b.stop();
});
