// The swappable device: requests made during a swap wait and then go to the new device, in order; in-flight ones
// finish on the old device before the swap's change runs; a failed change keeps what it served.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwappableDevice } from './swappable.js';
import { ScriptedDevice } from './testing.js';

test('a swap waits for in-flight requests, holds new ones, and sends them to the new device in order', async () => {
  const a = new ScriptedDevice(4096);
  const b = new ScriptedDevice(4096);
  const s = new SwappableDevice(a);
  const releaseA = a.hold();
  const inflight = s.write(0, new Uint8Array([1]), { fua: false });
  const steps: string[] = [];
  const swapped = s.swap(async (current, serve) => {
    steps.push(`change (old device done: ${current === a && a.active === 0})`);
    b.bytes.set(a.bytes);
    serve(b);
  });
  // Made while the swap waits: held, not sent to the old device.
  const held = [s.write(1, new Uint8Array([2]), { fua: false }), s.read(0, 2, {})];
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(s.holding, true);
  assert.equal(a.calls.length, 1, 'nothing new reached the old device');
  assert.deepEqual(steps, []);
  releaseA();
  await inflight;
  await swapped;
  const [, read] = await Promise.all(held);
  assert.deepEqual(steps, ['change (old device done: true)']);
  assert.deepEqual([...(read as Uint8Array)], [1, 2], 'the held write ran before the held read, on the new device');
  assert.deepEqual(b.calls.map((c) => c.op), ['write', 'read']);
  assert.equal(s.current, b);
  assert.equal(s.holding, false);
});

test('a failed change opens the gate with the device it served; a second concurrent swap is refused', async () => {
  const a = new ScriptedDevice(4096);
  const s = new SwappableDevice(a);
  await assert.rejects(s.swap(async () => {
    await assert.rejects(s.swap(async () => undefined), /already in progress/);
    throw new Error('new engine failed');
  }), /new engine failed/);
  assert.equal(s.current, a);
  await s.write(0, new Uint8Array([9]), { fua: false });
  assert.equal(a.bytes[0], 9);
  await assert.rejects(s.swap(async (_c, serve) => serve(new ScriptedDevice(8192))), /keep the size 4096/);
});
