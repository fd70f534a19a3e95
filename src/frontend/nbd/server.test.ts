// In-process tests of the NBD server's transmission phase, driven by this folder's NbdClient against scripted
// and file devices: data round trips, pipelining and out-of-order replies, the durability contract (replies only
// after the device resolved, FUA and FLUSH passed through), bounded in-flight work, and every error reply.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdClient } from './client.js';
import { NbdCmd, NbdCmdFlag, NbdErrno, NbdFlag } from './constants.js';
import { NbdError, isNbdError } from './errors.js';
import { FileBlockDevice } from './file-device.js';
import { ScriptedDevice, sleep, startServer } from './testing.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function serve(device: ScriptedDevice | FileBlockDevice, options: Parameters<typeof startServer>[0] = {}) {
  const errors: NbdError[] = [];
  const { server, port } = await startServer({ onError: (e) => errors.push(e), ...options });
  server.addExport('disk', device, { description: 'test disk' });
  const client = await NbdClient.connect({ port }, { exportName: 'disk' });
  return { server, port, client, errors };
}

test('data written through NBD reads back, from a file device', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-nbd-'));
  dirs.push(dir);
  const device = await FileBlockDevice.open(join(dir, 'disk.img'), { size: 8 << 20, create: true });
  const { server, client } = await serve(device);
  try {
    assert.equal(client.size, 8 << 20);
    assert.equal(client.description, 'test disk');
    assert.deepEqual(client.blockSize, { minimum: 1, preferred: 4096, maximum: 32 << 20 });
    const data = randomBytes(1 << 20);
    await client.write(12345, data, { fua: true });
    assert.ok(Buffer.from(await client.read(12345, data.byteLength)).equals(data));
    await client.flush();
    await client.trim(12345, 1000);
    await client.writeZeroes(20000, 4096, { noHole: true });
    const back = Buffer.from(await client.read(12345, data.byteLength));
    assert.ok(back.subarray(0, 1000).equals(Buffer.alloc(1000)));
    assert.ok(back.subarray(1000, 20000 - 12345).equals(data.subarray(1000, 20000 - 12345)));
    assert.ok(back.subarray(20000 - 12345, 20000 - 12345 + 4096).equals(Buffer.alloc(4096)));
    const stats = server.stats('disk')!;
    assert.equal(stats.writes, 1);
    assert.equal(stats.reads, 2);
    assert.equal(stats.bytesWritten, 1 << 20);
    assert.equal(stats.flushes, 1);
    assert.equal(stats.trims, 1);
    assert.equal(stats.writeZeroes, 1);
    assert.equal(stats.connections, 1);
    assert.equal(stats.errors, 0);
    await client.disconnect();
  } finally {
    await server.close();
    await device.close();
  }
});

test('transmission flags follow the device', async () => {
  const rw = await serve(new ScriptedDevice(4096, { multiConn: true }));
  const f = rw.client.flags;
  const { HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, CAN_MULTI_CONN } = NbdFlag;
  for (const flag of [HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, CAN_MULTI_CONN]) {
    assert.ok(f & flag, `flag ${flag} missing from 0x${f.toString(16)}`);
  }
  assert.equal(f & NbdFlag.READ_ONLY, 0);
  await rw.client.disconnect();
  await rw.server.close();
  const ro = await serve(new ScriptedDevice(4096, { readOnly: true }));
  assert.ok(ro.client.flags & NbdFlag.READ_ONLY);
  assert.equal(ro.client.flags & (NbdFlag.CAN_MULTI_CONN | NbdFlag.SEND_TRIM | NbdFlag.SEND_FUA), 0);
  await ro.client.disconnect();
  await ro.server.close();
});

test('requests run concurrently and replies come back out of order, matched by handle', async () => {
  const device = new ScriptedDevice(1 << 20);
  device.bytes.fill(7, 0, 4096);
  device.bytes.fill(9, 4096, 8192);
  device.delay = (c) => (c.offset === 0 ? 100 : 0);
  const { server, client } = await serve(device);
  try {
    const order: number[] = [];
    const slow = client.read(0, 4096).then((d) => (order.push(0), d));
    const fast = client.read(4096, 4096).then((d) => (order.push(1), d));
    const [a, b] = await Promise.all([slow, fast]);
    assert.deepEqual(order, [1, 0]);
    assert.ok(a.every((x) => x === 7));
    assert.ok(b.every((x) => x === 9));
    assert.equal(device.peakActive, 2);
  } finally {
    await client.disconnect();
    await server.close();
  }
});

test('a write is answered only after the device resolved it, with FUA passed through', async () => {
  const device = new ScriptedDevice(1 << 20);
  const { server, client } = await serve(device);
  try {
    const release = device.hold();
    let answered = false;
    const write = client.write(0, new Uint8Array(512).fill(1), { fua: true }).then(() => (answered = true));
    await sleep(50);
    assert.equal(answered, false, 'write answered before the device finished');
    assert.equal(device.calls[0]?.fua, true);
    release();
    await write;
    await client.flush();
    assert.deepEqual(device.calls.map((c) => c.op), ['write', 'flush']);
    await client.writeZeroes(0, 512, { fua: true, noHole: true });
    assert.equal(device.calls[2]?.noHole, true);
    assert.equal(device.calls[2]?.fua, true);
  } finally {
    await client.disconnect();
    await server.close();
  }
});

test('in-flight requests and bytes per connection stay bounded while a client floods the server', async () => {
  const device = new ScriptedDevice(8 << 20);
  const { server, client } = await serve(device, { maxInFlightRequests: 8, maxInFlightBytes: 64 * 1024 });
  try {
    const release = device.hold();
    const small = Array.from({ length: 300 }, (_, i) => client.read((i % 64) * 4096, 4096));
    await sleep(100);
    assert.equal(device.active, 8, 'device should see exactly the request bound while held');
    assert.equal(server.stats('disk')!.inFlight, 8);
    release();
    await Promise.all(small);
    assert.equal(device.peakActive, 8);

    // Byte bound: 32 KiB reads against a 64 KiB budget run two at a time.
    device.peakActive = 0;
    const release2 = device.hold();
    const big = Array.from({ length: 20 }, (_, i) => client.read(i * 32768, 32768));
    await sleep(100);
    assert.equal(device.active, 2);
    release2();
    await Promise.all(big);
    assert.equal(device.peakActive, 2);
    assert.ok(server.stats('disk')!.peakInFlight <= 8);
  } finally {
    await client.disconnect();
    await server.close();
  }
});

test('a client flooding writes is held back at the socket: the server stops reading', async () => {
  const device = new ScriptedDevice(64 << 20);
  const { server, client } = await serve(device, { maxInFlightRequests: 16, maxInFlightBytes: 4 << 20 });
  try {
    const release = device.hold();
    const payload = new Uint8Array(1 << 20).fill(0x42);
    const writes = Array.from({ length: 64 }, (_, i) => client.write(i << 20, payload));
    await sleep(200);
    // 4 MiB may be in flight; the rest sits in socket buffers and, above all, in the client's own queue.
    assert.ok(device.active <= 4, `${device.active} writes reached the device`);
    assert.ok(client.bufferedBytes > 32 << 20, `client still holds only ${client.bufferedBytes} bytes`);
    release();
    await Promise.all(writes);
    assert.equal(client.bufferedBytes, 0);
    assert.ok(device.peakActive <= 4);
    assert.equal(device.bytes[63 << 20], 0x42);
  } finally {
    await client.disconnect();
    await server.close();
  }
});

async function expectErrno(client: NbdClient, req: Parameters<NbdClient['request']>[0], errno: number): Promise<void> {
  const reply = await client.request(req);
  assert.equal(reply.error, errno, `request ${JSON.stringify({ ...req, data: undefined })}`);
  assert.equal(reply.data, undefined);
}

test('invalid requests get EINVAL/ENOSPC and the connection stays usable', async () => {
  const device = new ScriptedDevice(1 << 20);
  const { server, client } = await serve(device, { maxPayload: 64 * 1024 });
  try {
    await expectErrno(client, { type: NbdCmd.READ, offset: (1 << 20) - 10, length: 11 }, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.READ, offset: 2 ** 52, length: 1 }, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.TRIM, offset: 1 << 20, length: 1 }, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.CACHE, offset: 1 << 20, length: 1 }, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.WRITE, offset: (1 << 20) - 1, data: new Uint8Array(2) }, NbdErrno.ENOSPC);
    await expectErrno(client, { type: NbdCmd.WRITE_ZEROES, offset: 1 << 20, length: 1 }, NbdErrno.ENOSPC);
    await expectErrno(client, { type: NbdCmd.READ, offset: 0, length: 64 * 1024 + 1 }, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.WRITE, offset: 0, data: new Uint8Array(64 * 1024 + 1) }, NbdErrno.EINVAL);
    await expectErrno(client, { type: 42, offset: 0, length: 0 }, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.BLOCK_STATUS, offset: 0, length: 4096 }, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.READ, flags: NbdCmdFlag.DF, offset: 0, length: 1 }, NbdErrno.EINVAL);
    const noHoleWrite = { type: NbdCmd.WRITE, flags: NbdCmdFlag.NO_HOLE, offset: 0, data: new Uint8Array(1) };
    await expectErrno(client, noHoleWrite, NbdErrno.EINVAL);
    await expectErrno(client, { type: NbdCmd.FLUSH, offset: 0, length: 1 }, NbdErrno.EINVAL);
    assert.equal(device.calls.length, 0, 'no invalid request may reach the device');
    // The skipped oversized payload kept the stream in step.
    await client.write(0, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...(await client.read(0, 3))], [1, 2, 3]);
    await expectErrno(client, { type: NbdCmd.CACHE, offset: 0, length: 4096 }, NbdErrno.OK);
    assert.equal((await client.request({ type: NbdCmd.READ, offset: 5, length: 0 })).error, NbdErrno.OK);
    assert.equal(server.stats('disk')!.errors, 13);
  } finally {
    await client.disconnect();
    await server.close();
  }
});

test('a read-only export refuses every write-type request with EPERM', async () => {
  const device = new ScriptedDevice(65536, { readOnly: true });
  const { server, client } = await serve(device);
  try {
    await expectErrno(client, { type: NbdCmd.WRITE, offset: 0, data: new Uint8Array(512) }, NbdErrno.EPERM);
    await expectErrno(client, { type: NbdCmd.TRIM, offset: 0, length: 512 }, NbdErrno.EPERM);
    await expectErrno(client, { type: NbdCmd.WRITE_ZEROES, offset: 0, length: 512 }, NbdErrno.EPERM);
    await client.flush();
    assert.equal((await client.read(0, 512)).byteLength, 512);
    assert.deepEqual(device.calls.map((c) => c.op), ['read']);
  } finally {
    await client.disconnect();
    await server.close();
  }
});

test('device failures become EIO, or the errno the error carries', async () => {
  const device = new ScriptedDevice(65536);
  const { server, client } = await serve(device);
  try {
    const cases: [unknown, number][] = [
      [new Error('disk on fire'), NbdErrno.EIO],
      [Object.assign(new Error('full'), { code: 'ENOSPC' }), NbdErrno.ENOSPC],
      [Object.assign(new Error('no'), { nbdErrno: NbdErrno.ENOTSUP }), NbdErrno.ENOTSUP],
      [new NbdError('NbdDeviceReadOnly', 'ro', { nbdErrno: NbdErrno.EPERM }), NbdErrno.EPERM],
    ];
    for (const [failure, errno] of cases) {
      device.failures.push(failure);
      await expectErrno(client, { type: NbdCmd.READ, offset: 0, length: 16 }, errno);
    }
    device.failures.push(new Error('flush failed'));
    await assert.rejects(client.flush(), (e) => isNbdError(e, 'NbdRequestFailed') && e.nbdErrno === NbdErrno.EIO);
    assert.equal((await client.read(0, 16)).byteLength, 16);
  } finally {
    await client.disconnect();
    await server.close();
  }
});

test('bad request magic drops the connection and reports the byte offset', async () => {
  const device = new ScriptedDevice(65536);
  const { server, client, errors } = await serve(device);
  try {
    await client.read(0, 16); // one good 28-byte request first
    client.sendRaw(new Uint8Array(28).fill(0xaa));
    await client.closed;
    await assert.rejects(client.read(0, 16), (e: NbdError) => e.code === 'NbdConnectionClosed');
    // Handshake: 4 bytes of client flags + NBD_OPT_GO (16-byte header + 4 + "disk" + 2 + 3 info requests × 2).
    const handshake = 4 + 16 + 4 + 4 + 2 + 6;
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'NbdProtocol');
    assert.equal(errors[0]!.offset, handshake + 28);
  } finally {
    await server.close();
  }
});
