// Structured replies: a READ comes back as data and hole chunks that reassemble to the device's bytes (zeros never
// travel), a failed READ as an error chunk, other commands keep simple replies; and nbdcopy (libnbd, which
// negotiates structured replies) copies the export exactly.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NbdCmd, NbdErrno, NbdOpt, NbdRep } from './constants.js';
import { decodeOptionReplyHeader, decodeSimpleReplyHeader, encodeClientFlags, encodeInfoRequest, encodeOption, encodeRequestHeader } from './protocol.js';
import { encodeReadChunks, HOLE_GRAIN, NBD_REPLY_FLAG_DONE, NBD_STRUCTURED_REPLY_MAGIC, NbdReplyType, zeroRuns } from './structured.js';
import { optionReply, rawClient, ScriptedDevice, startServer } from './testing.js';

const KiB = 1024;

/** 64 KiB: data, 16 KiB of zeros, data, a zero tail of 20 KiB. */
function patterned(): ScriptedDevice {
  const d = new ScriptedDevice(64 * KiB);
  for (let i = 0; i < 8 * KiB; i++) d.bytes[i] = (i % 251) + 1;
  for (let i = 24 * KiB; i < 44 * KiB; i++) d.bytes[i] = (i % 13) + 1;
  return d;
}

test('zero runs are found on 4 KiB steps; a read reply is header, offset and a view of the bytes', () => {
  const d = patterned();
  assert.deepEqual(zeroRuns(d.bytes), [
    { zero: false, start: 0, end: 8 * KiB },
    { zero: true, start: 8 * KiB, end: 24 * KiB },
    { zero: false, start: 24 * KiB, end: 44 * KiB },
    { zero: true, start: 44 * KiB, end: 64 * KiB },
  ]);
  // A zero run shorter than the grain, or a short tail, stays data.
  assert.deepEqual(zeroRuns(new Uint8Array(HOLE_GRAIN - 1)), [{ zero: false, start: 0, end: HOLE_GRAIN - 1 }]);
  const parts = encodeReadChunks(7n, 1 << 20, d.bytes.subarray(0, 12 * KiB));
  assert.equal(parts.length, 3, 'data header, data view, hole chunk');
  assert.equal(parts[1]!.buffer, d.bytes.buffer, 'the data is not copied');
  const hole = Buffer.from(parts[2]!);
  assert.equal(hole.readUInt32BE(0), NBD_STRUCTURED_REPLY_MAGIC);
  assert.equal(hole.readUInt16BE(4), NBD_REPLY_FLAG_DONE);
  assert.equal(hole.readUInt16BE(6), NbdReplyType.OFFSET_HOLE);
  assert.equal(hole.readBigUInt64BE(8), 7n);
  assert.equal(hole.readUInt32BE(16), 12);
  assert.equal(Number(hole.readBigUInt64BE(20)), (1 << 20) + 8 * KiB);
  assert.equal(hole.readUInt32BE(28), 4 * KiB);
});

interface Chunk {
  flags: number;
  type: number;
  handle: bigint;
  payload: Buffer;
}

test('after NBD_OPT_STRUCTURED_REPLY a READ is data and hole chunks, an error is an error chunk, a write a simple reply', async () => {
  const { server, port } = await startServer();
  const device = patterned();
  server.addExport('a', device);
  const { socket, read } = await rawClient(port);
  try {
    socket.write(encodeClientFlags(3));
    socket.write(encodeOption(NbdOpt.STRUCTURED_REPLY));
    assert.equal((await optionReply(read)).replyType, NbdRep.ACK);
    socket.write(encodeOption(NbdOpt.GO, encodeInfoRequest('a', [])));
    for (;;) {
      const h = decodeOptionReplyHeader(await read(20));
      await read(h.length);
      if (h.replyType === NbdRep.ACK) break;
    }
    const chunk = async (): Promise<Chunk> => {
      const h = Buffer.from(await read(20));
      assert.equal(h.readUInt32BE(0), NBD_STRUCTURED_REPLY_MAGIC);
      return { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), handle: h.readBigUInt64BE(8), payload: Buffer.from(await read(h.readUInt32BE(16))) };
    };
    socket.write(encodeRequestHeader({ flags: 0, type: NbdCmd.READ, handle: 1n, offset: 4 * KiB, length: 56 * KiB }));
    const got = Buffer.alloc(56 * KiB, 0xff);
    const kinds: string[] = [];
    for (let done = false; !done; ) {
      const c = await chunk();
      assert.equal(c.handle, 1n);
      done = (c.flags & NBD_REPLY_FLAG_DONE) !== 0;
      const at = Number(c.payload.readBigUInt64BE(0)) - 4 * KiB;
      if (c.type === NbdReplyType.OFFSET_DATA) {
        c.payload.copy(got, at, 8);
        kinds.push(`data ${c.payload.length - 8}`);
      } else {
        assert.equal(c.type, NbdReplyType.OFFSET_HOLE);
        got.fill(0, at, at + c.payload.readUInt32BE(8));
        kinds.push(`hole ${c.payload.readUInt32BE(8)}`);
      }
    }
    assert.deepEqual(kinds, ['data 4096', 'hole 16384', 'data 20480', 'hole 16384']);
    assert.ok(got.equals(device.bytes.subarray(4 * KiB, 60 * KiB)), 'the chunks reassemble to the device bytes');

    device.failures.push(Object.assign(new Error('disk gone'), { code: 'EIO' }));
    socket.write(encodeRequestHeader({ flags: 0, type: NbdCmd.READ, handle: 2n, offset: 0, length: 4 * KiB }));
    const err = await chunk();
    assert.deepEqual([err.type, err.flags, err.handle, err.payload.readUInt32BE(0)], [NbdReplyType.ERROR, NBD_REPLY_FLAG_DONE, 2n, NbdErrno.EIO]);

    socket.write(encodeRequestHeader({ flags: 0, type: NbdCmd.WRITE, handle: 3n, offset: 0, length: 4 }));
    socket.write(Buffer.from([9, 9, 9, 9]));
    const simple = decodeSimpleReplyHeader(await read(16));
    assert.deepEqual([simple.handle, simple.error], [3n, 0]);
  } finally {
    socket.destroy();
    await server.close();
  }
});

test('nbdcopy (libnbd, structured replies) copies a sparse export exactly', { skip: spawnSync('sh', ['-c', 'command -v nbdcopy'], { stdio: 'ignore' }).status === 0 ? false : 'nbdcopy is not installed' }, async () => {
  const { server, port } = await startServer();
  const device = patterned();
  server.addExport('a', device);
  const dir = mkdtempSync(join(tmpdir(), 'nbd-structured-'));
  try {
    const out = join(dir, 'copy.raw');
    const { spawn } = await import('node:child_process');
    const code = await new Promise<number | null>((resolve) => {
      const p = spawn('nbdcopy', [`nbd://127.0.0.1:${port}/a`, out], { stdio: 'ignore' });
      p.on('close', resolve);
    });
    assert.equal(code, 0);
    assert.ok(readFileSync(out).equals(Buffer.from(device.bytes)));
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
