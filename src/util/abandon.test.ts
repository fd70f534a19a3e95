import assert from 'node:assert/strict';
import { test } from 'node:test';
import { abandonOnAbort } from './abandon.js';

test('abandonOnAbort: passes a result or failure through, and stops waiting for work that never ends when aborted', async () => {
  assert.equal(await abandonOnAbort(Promise.resolve(7), new AbortController().signal), 7);
  await assert.rejects(abandonOnAbort(Promise.reject(new Error('boom')), new AbortController().signal), /boom/);
  const ac = new AbortController();
  const never = new Promise<number>(() => undefined);
  const waiting = abandonOnAbort(never, ac.signal);
  ac.abort(new Error('stalled'));
  await assert.rejects(waiting, /stalled/);
  await assert.rejects(abandonOnAbort(never, ac.signal), /stalled/, 'an aborted signal rejects at once');
});
