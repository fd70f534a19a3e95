// The batch of instance changes behind an instance manager's status: one write per burst, and a refused write is
// retried with its changes (newer ones win), never dropped; a full list discards what was pending.

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

test('a write refused after a full list discarded the batch does not come back over the list', async () => {
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
