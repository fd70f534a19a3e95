// In-process tests of the NBD server's handshake and lifecycle: option haggling (GO, INFO, LIST, EXPORT_NAME,
// unsupported and oversized options, bad client flags), the handshake timeout, export management, graceful
// close (in-flight requests finish, newer ones get ESHUTDOWN), abrupt destroy and removeExport.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from './client.js';
import { NbdCmd, NbdErrno, NbdOpt, NbdRep } from './constants.js';
import { NbdError, isNbdError } from './errors.js';
import { encodeClientFlags, encodeOption } from './protocol.js';
import { NbdServer } from './server.js';
import { optionReply, rawClient, ScriptedDevice, sleep, startServer } from './testing.js';

test('option haggling: unsupported, invalid and oversized options are refused, LIST and INFO answer', async () => {
  const { server, port } = await startServer();
  server.addExport('a', new ScriptedDevice(4096), { description: 'first' });
  server.addExport('b', new ScriptedDevice(8192));
  try {
    const { socket, read } = await rawClient(port);
    socket.write(encodeClientFlags(3));
    const { STARTTLS, SET_META_CONTEXT, EXTENDED_HEADERS } = NbdOpt;
    for (const opt of [STARTTLS, SET_META_CONTEXT, EXTENDED_HEADERS, 77]) {
      socket.write(encodeOption(opt));
      assert.equal((await optionReply(read)).replyType, NbdRep.ERR_UNSUP, `option ${opt}`);
    }
    socket.write(encodeOption(NbdOpt.STRUCTURED_REPLY, new Uint8Array(1)));
    assert.equal((await optionReply(read)).replyType, NbdRep.ERR_INVALID);
    socket.write(encodeOption(NbdOpt.STRUCTURED_REPLY));
    assert.equal((await optionReply(read)).replyType, NbdRep.ACK);
    socket.write(encodeOption(NbdOpt.LIST, new Uint8Array(1)));
    assert.equal((await optionReply(read)).replyType, NbdRep.ERR_INVALID);
    socket.write(encodeOption(NbdOpt.INFO, new Uint8Array(3)));
    assert.equal((await optionReply(read)).replyType, NbdRep.ERR_INVALID);
    socket.write(encodeOption(NbdOpt.INFO, new Uint8Array(100_000)));
    assert.equal((await optionReply(read)).replyType, NbdRep.ERR_TOO_BIG);
    socket.write(encodeOption(NbdOpt.ABORT));
    assert.equal((await optionReply(read)).replyType, NbdRep.ACK);
    await new Promise((r) => socket.once('close', r));

    assert.deepEqual(await NbdClient.list({ port }), [
      { name: 'a', description: 'first' },
      { name: 'b', description: '' },
    ]);
    const unknown = (e: unknown): boolean => isNbdError(e, 'NbdExportUnknown');
    await assert.rejects(NbdClient.connect({ port }, { exportName: 'nope' }), unknown);
  } finally {
    await server.close();
  }
});

test('NBD_OPT_EXPORT_NAME works, and an unknown name closes the connection', async () => {
  const { server, port } = await startServer();
  server.addExport('', new ScriptedDevice(4096)); // the default export
  server.addExport('named', new ScriptedDevice(8192));
  try {
    const c = await NbdClient.connect({ port }, { exportName: 'named', useExportName: true });
    assert.equal(c.size, 8192);
    await c.write(0, new Uint8Array([5]));
    await c.disconnect();
    const d = await NbdClient.connect({ port });
    assert.equal(d.size, 4096);
    await d.disconnect();
    await assert.rejects(
      NbdClient.connect({ port }, { exportName: 'missing', useExportName: true }),
      (e) => isNbdError(e, 'NbdConnectionClosed'),
    );
  } finally {
    await server.close();
  }
});

test('unknown client flags and silent clients are dropped', async () => {
  const errors: NbdError[] = [];
  const { server, port } = await startServer({ handshakeTimeoutMs: 150, onError: (e) => errors.push(e) });
  try {
    const bad = await rawClient(port);
    bad.socket.write(encodeClientFlags(0x80));
    await new Promise((r) => bad.socket.once('close', r));
    assert.equal(errors[0]?.code, 'NbdProtocol');
    assert.equal(errors[0]?.offset, 0);

    const started = Date.now();
    const silent = await rawClient(port);
    await new Promise((r) => silent.socket.once('close', r));
    const waited = Date.now() - started;
    assert.ok(waited >= 100 && waited < 2000, `closed after ${waited} ms`);
    assert.equal(errors[1]?.code, 'NbdHandshakeTimeout');
  } finally {
    await server.close();
  }
});

test('export and listener management validates its arguments', async () => {
  const { server, port } = await startServer();
  try {
    server.addExport('x', new ScriptedDevice(512));
    assert.throws(() => server.addExport('x', new ScriptedDevice(512)), (e) => isNbdError(e, 'NbdExportExists'));
    const invalid = (e: unknown): boolean => isNbdError(e, 'NbdInvalidArgument');
    assert.throws(() => server.addExport('a\0b', new ScriptedDevice(512)), invalid);
    assert.throws(() => server.addExport('y'.repeat(5000), new ScriptedDevice(512)), invalid);
    await assert.rejects(server.listen({ port: 0 }), (e) => isNbdError(e, 'NbdAlreadyListening'));
    const other = new NbdServer();
    await assert.rejects(other.listen({ port }), (e) => isNbdError(e, 'NbdListenFailed'));
    await other.close();
    assert.match(server.uri('x'), /^nbd:\/\/127\.0\.0\.1:\d+\/x$/);
    assert.deepEqual(server.exportNames(), ['x']);
    await assert.rejects(server.removeExport('nope'), (e) => isNbdError(e, 'NbdExportUnknown'));
  } finally {
    await server.close();
  }
  assert.throws(() => server.addExport('z', new ScriptedDevice(512)), (e) => isNbdError(e, 'NbdServerClosed'));
});

test('close() lets in-flight requests finish, answers later ones ESHUTDOWN, then closes', async () => {
  const device = new ScriptedDevice(65536);
  const { server, port } = await startServer();
  server.addExport('disk', device);
  const client = await NbdClient.connect({ port }, { exportName: 'disk' });
  const release = device.hold();
  const write = client.write(0, new Uint8Array(4096).fill(3), { fua: true });
  await sleep(30);
  assert.equal(device.active, 1);
  let closed = false;
  const closing = server.close().then(() => (closed = true));
  await sleep(30);
  assert.equal(closed, false, 'close() must wait for the in-flight write');
  await assert.rejects(NbdClient.connect({ port }, { exportName: 'disk' }));
  const late = await client.request({ type: NbdCmd.READ, offset: 0, length: 16 });
  assert.equal(late.error, NbdErrno.ESHUTDOWN);
  release();
  await write; // answered successfully, not cut off
  await closing;
  await client.closed;
  assert.equal(device.calls.length, 1);
  assert.deepEqual([...device.bytes.subarray(0, 2)], [3, 3]);
});

test('close() with a deadline falls back to destroy; destroy aborts device calls', async () => {
  const device = new ScriptedDevice(65536);
  const { server, port } = await startServer();
  server.addExport('disk', device);
  const client = await NbdClient.connect({ port }, { exportName: 'disk' });
  device.hold(); // never released
  const readFails = assert.rejects(client.read(0, 16), (e) => isNbdError(e, 'NbdConnectionClosed'));
  await sleep(30);
  const started = Date.now();
  await server.close({ signal: AbortSignal.timeout(100) });
  assert.ok(Date.now() - started < 2000);
  await readFails;
  assert.equal(device.calls[0]!.signal?.aborted, true);
  assert.equal(device.active, 0, 'destroy resolved before the device call settled');
});

test('removeExport drains that export only', async () => {
  const a = new ScriptedDevice(65536);
  const b = new ScriptedDevice(65536);
  const { server, port } = await startServer();
  server.addExport('a', a);
  server.addExport('b', b);
  try {
    const ca = await NbdClient.connect({ port }, { exportName: 'a' });
    const cb = await NbdClient.connect({ port }, { exportName: 'b' });
    const release = a.hold();
    const read = ca.read(0, 512);
    await sleep(30);
    const removing = server.removeExport('a');
    await sleep(30);
    release();
    assert.equal((await read).byteLength, 512);
    await removing;
    await ca.closed;
    assert.equal(server.stats('a'), undefined);
    await assert.rejects(NbdClient.connect({ port }, { exportName: 'a' }), (e) => isNbdError(e, 'NbdExportUnknown'));
    assert.equal((await cb.read(0, 512)).byteLength, 512);
    assert.equal(server.stats('b')!.connections, 1);
    await cb.disconnect();
  } finally {
    await server.close();
  }
});

test('NBD_CMD_DISC: outstanding requests are answered before the server closes', async () => {
  const device = new ScriptedDevice(1 << 20);
  device.delay = () => 20;
  const { server, port } = await startServer();
  server.addExport('disk', device);
  try {
    const client = await NbdClient.connect({ port }, { exportName: 'disk' });
    const writes = Array.from({ length: 16 }, (_, i) => client.write(i * 4096, new Uint8Array(4096).fill(i + 1)));
    await client.disconnect();
    await Promise.all(writes);
    for (let i = 0; i < 16; i++) assert.equal(device.bytes[i * 4096], i + 1);
    await sleep(10);
    assert.equal(server.stats('disk')!.connections, 0);
  } finally {
    await server.close();
  }
});
