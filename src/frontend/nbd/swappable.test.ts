// The swappable device: requests made during a swap wait and then go to the new device, in order; in-flight ones
// finish on the old device before the swap's change runs; a failed change keeps what it served; the write payload
// held during a swap is bounded over all connections, beyond which the NBD connections stop reading (backpressure).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NbdClient } from './client.js';
import { SwappableDevice } from './swappable.js';
import { ScriptedDevice, sleep, startServer } from './testing.js';

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

test('while a swap holds requests, at most maxHeldBytes of write payload waits in memory; the connections stop being read', async () => {
  const a = new ScriptedDevice(64 << 20);
  const b = new ScriptedDevice(64 << 20);
  const s = new SwappableDevice(a, { maxHeldBytes: 4 << 20 });
  // Per connection the server would take 64 MiB in flight: the swap's bound, over both connections, is what holds.
  const { server, port } = await startServer({ maxInFlightRequests: 256, maxInFlightBytes: 64 << 20 });
  server.addExport('disk', s, { description: 'swappable' });
  const clients = await Promise.all([0, 1].map(() => NbdClient.connect({ port }, { exportName: 'disk' })));
  // Also called on a failed assertion: the held requests must finish for the clients to disconnect.
  let finish = (): void => undefined;
  const opened = new Promise<void>((r) => (finish = r));
  try {
    const swapped = s.swap(async (_current, serve) => {
      await opened;
      b.bytes.set(a.bytes);
      serve(b);
    });
    const payload = (i: number) => new Uint8Array(1 << 20).fill(i + 1);
    // 2 × 24 MiB of writes while the gate is closed.
    const writes = clients.flatMap((c, ci) => Array.from({ length: 24 }, (_, i) => c.write((ci * 24 + i) << 20, payload(ci * 24 + i))));
    await sleep(300);
    assert.ok(s.heldBytes.now <= 4 << 20, `held ${s.heldBytes.now} bytes`);
    assert.ok(s.heldBytes.now >= 2 << 20, `the gate holds writes (${s.heldBytes.now} bytes)`);
    // The rest was not taken off the sockets: no more requests started than fit, and what the kernel's socket
    // buffers could not absorb still waits in the clients.
    assert.ok(server.stats('disk')!.inFlight <= 4, `${server.stats('disk')!.inFlight} requests started`);
    const waiting = clients.reduce((n, c) => n + c.bufferedBytes, 0);
    assert.ok(waiting > 0, 'the clients still hold writes the server did not read');
    assert.equal(a.calls.length, 0, 'nothing reached the old device');
    finish();
    await swapped;
    await Promise.all(writes);
    assert.ok(s.heldBytes.peak <= 4 << 20, `peak held ${s.heldBytes.peak} bytes`);
    assert.equal(s.heldBytes.now, 0);
    for (let i = 0; i < 48; i++) assert.equal(b.bytes[(i << 20) + 5], i + 1, `write ${i} reached the new device`);
  } finally {
    finish();
    await Promise.all(clients.map((c) => c.disconnect()));
    await server.close();
  }
});
