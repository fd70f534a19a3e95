// Unit tests of the pure NBD protocol module: byte layouts checked against the specification's numbers, round
// trips of every encoder/decoder pair, the incremental parsers on hand-cut input, and device errno mapping.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ByteQueue,
  NBD_REQUEST_MAGIC,
  NbdCmd,
  NbdCmdFlag,
  NbdErrno,
  NbdFlag,
  NbdHandshakeParser,
  NbdInfo,
  NbdOpt,
  NbdRep,
  NbdRequestParser,
  type NbdRequest,
  NbdSimpleReplyParser,
  decodeExportNameReply,
  decodeGreeting,
  decodeInfoReply,
  decodeInfoRequest,
  decodeOptionReplyHeader,
  decodeRequestHeader,
  decodeServerEntry,
  decodeSimpleReplyHeader,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoRequest,
  encodeInfoText,
  encodeOption,
  encodeOptionReply,
  encodeRequestHeader,
  encodeServerEntry,
  encodeSimpleReply,
} from './protocol.js';
import { NbdError, isProtocolError } from './errors.js';
import { nbdErrnoFromError } from './device.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function assertProtocolError(fn: () => unknown, offset: number): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isProtocolError(err), `expected NbdProtocol, got ${String(err)}`);
    assert.equal(err.offset, offset);
    return true;
  });
}

test('greeting is NBDMAGIC, IHAVEOPT and the handshake flags', () => {
  const g = encodeGreeting();
  assert.equal(hex(g), '4e42444d41474943' + '49484156454f5054' + '0003');
  assert.deepEqual(decodeGreeting(g), { handshakeFlags: 3 });
  const bad = new Uint8Array(g);
  bad[9] = 0;
  assertProtocolError(() => decodeGreeting(bad, 100), 108);
});

test('options and option replies have the documented layout', () => {
  assert.equal(hex(encodeClientFlags(3)), '00000003');
  assert.equal(hex(encodeOption(NbdOpt.LIST)), '49484156454f5054' + '00000003' + '00000000');
  const reply = encodeOptionReply(NbdOpt.GO, NbdRep.ERR_UNKNOWN, new Uint8Array([0x61]));
  assert.equal(hex(reply), '0003e889045565a9' + '00000007' + '80000006' + '00000001' + '61');
  assert.deepEqual(decodeOptionReplyHeader(reply), { option: 7, replyType: 0x80000006, length: 1 });
  assertProtocolError(() => decodeOptionReplyHeader(new Uint8Array(20), 5), 5);
});

test('INFO/GO data round-trips and rejects inconsistent lengths with the offset', () => {
  const data = encodeInfoRequest('vol-1', [NbdInfo.BLOCK_SIZE, NbdInfo.NAME]);
  assert.equal(hex(data), '00000005' + Buffer.from('vol-1').toString('hex') + '0002' + '0003' + '0001');
  assert.deepEqual(decodeInfoRequest(data, 0), { name: 'vol-1', infos: [3, 1] });
  assert.deepEqual(decodeInfoRequest(encodeInfoRequest('', []), 0), { name: '', infos: [] });
  // Name length pointing past the data.
  const longName = new Uint8Array(data);
  longName[3] = 200;
  assertProtocolError(() => decodeInfoRequest(longName, 16), 16);
  // Info count that disagrees with the data length: the offset is the count field.
  const badCount = new Uint8Array(data);
  badCount[10] = 9;
  assertProtocolError(() => decodeInfoRequest(badCount, 16), 16 + 9);
  // Invalid UTF-8 in the name.
  const badUtf8 = encodeInfoRequest('ab', []);
  badUtf8[4] = 0xff;
  assertProtocolError(() => decodeInfoRequest(badUtf8, 0), 4);
  assertProtocolError(() => decodeInfoRequest(new Uint8Array(3), 40), 40);
});

test('INFO replies, server entries and the EXPORT_NAME answer round-trip', () => {
  const size = 2 ** 40 + 12345;
  const exp = encodeInfoExport(size, NbdFlag.HAS_FLAGS | NbdFlag.SEND_FLUSH);
  assert.equal(exp.byteLength, 12);
  assert.deepEqual(decodeInfoReply(exp), { type: NbdInfo.EXPORT, size, flags: 5 });
  assert.deepEqual(decodeInfoReply(encodeInfoText(NbdInfo.NAME, 'n')), { type: NbdInfo.NAME, name: 'n' });
  assert.deepEqual(decodeInfoReply(encodeInfoText(NbdInfo.DESCRIPTION, 'déjà')), {
    type: NbdInfo.DESCRIPTION,
    description: 'déjà',
  });
  const bs = encodeInfoBlockSize({ minimum: 1, preferred: 4096, maximum: 32 << 20 });
  assert.equal(hex(bs), '0003' + '00000001' + '00001000' + '02000000');
  assert.deepEqual(decodeInfoReply(bs), { type: 3, minimum: 1, preferred: 4096, maximum: 32 << 20 });
  assertProtocolError(() => decodeInfoReply(exp.subarray(0, 11), 7), 7);
  assert.deepEqual(decodeServerEntry(encodeServerEntry('a', 'desc')), { name: 'a', description: 'desc' });
  const en = encodeExportNameReply(size, 0x1ff, true);
  assert.equal(en.byteLength, 134);
  assert.equal(encodeExportNameReply(size, 1, false).byteLength, 10);
  assert.deepEqual(decodeExportNameReply(en), { size, flags: 0x1ff });
});

test('request header layout matches the spec and round-trips', () => {
  const handle = 0x0102030405060708n;
  const req = { flags: NbdCmdFlag.FUA, type: NbdCmd.WRITE, handle, offset: 2 ** 33 + 7, length: 4096 };
  const h = encodeRequestHeader(req);
  assert.equal(hex(h), '25609513' + '0001' + '0001' + '0102030405060708' + '0000000200000007' + '00001000');
  assert.deepEqual(decodeRequestHeader(h), req);
  const bad = new Uint8Array(h);
  bad[0] = 0x26;
  assertProtocolError(() => decodeRequestHeader(bad, 1000), 1000);
  // Offsets beyond 2^53 stay beyond 2^53, so they still fail range checks.
  const huge = new Uint8Array(h);
  huge.fill(0xff, 16, 24);
  assert.ok(decodeRequestHeader(huge).offset >= 2 ** 64 - 2 ** 12);
});

test('request parser returns writes with their payload, one byte at a time or all at once', () => {
  const payload = new Uint8Array(1000).map((_, i) => i & 0xff);
  const stream = Buffer.concat([
    encodeRequestHeader({ flags: 0, type: NbdCmd.READ, handle: 1n, offset: 0, length: 512 }),
    encodeRequestHeader({ flags: 0, type: NbdCmd.WRITE, handle: 2n, offset: 4096, length: payload.byteLength }),
    payload,
    encodeRequestHeader({ flags: 0, type: NbdCmd.FLUSH, handle: 3n, offset: 0, length: 0 }),
  ]);
  const whole = new NbdRequestParser({ startOffset: 50 }).push(stream);
  assert.deepEqual(
    whole.map((r) => [r.type, r.handle, r.streamOffset]),
    [
      [NbdCmd.READ, 1n, 50],
      [NbdCmd.WRITE, 2n, 78],
      [NbdCmd.FLUSH, 3n, 78 + 28 + 1000],
    ],
  );
  assert.equal(hex(whole[1]!.data!), hex(payload));
  // A payload that arrived in one chunk is a view of that chunk, not a copy.
  assert.equal(whole[1]!.data!.buffer, stream.buffer);
  const p = new NbdRequestParser({ startOffset: 50 });
  const bytewise = [];
  for (let i = 0; i < stream.byteLength; i++) bytewise.push(...p.push(stream.subarray(i, i + 1)));
  const plain = (r: NbdRequest): unknown => ({ ...r, data: r.data && hex(r.data) });
  assert.deepEqual(bytewise.map(plain), whole.map(plain));
});

test('request parser skips oversized write payloads and stays in step', () => {
  const p = new NbdRequestParser({ maxPayload: 16 });
  const big = encodeRequestHeader({ flags: 0, type: NbdCmd.WRITE, handle: 9n, offset: 0, length: 40 });
  const after = encodeRequestHeader({ flags: 0, type: NbdCmd.READ, handle: 10n, offset: 0, length: 1 });
  const out = [...p.push(big), ...p.push(new Uint8Array(30)), ...p.push(Buffer.concat([new Uint8Array(10), after]))];
  assert.equal(out.length, 2);
  assert.equal(out[0]!.oversized, true);
  assert.equal(out[0]!.data, undefined);
  assert.equal(out[1]!.handle, 10n);
  assert.equal(p.buffered, 0);
});

test('request parser reports bad magic at its stream offset and stays failed', () => {
  const p = new NbdRequestParser({ startOffset: 100 });
  const good = encodeRequestHeader({ flags: 0, type: NbdCmd.READ, handle: 1n, offset: 0, length: 1 });
  const bad = new Uint8Array(good);
  bad[3] = 0;
  assert.equal(p.push(good).length, 1);
  assertProtocolError(() => p.push(bad), 128);
  assertProtocolError(() => p.push(good), 128);
  assert.equal(NBD_REQUEST_MAGIC, 0x25609513);
});

test('simple replies round-trip; the reply parser attaches read data by handle', () => {
  const r = encodeSimpleReply(NbdErrno.EINVAL, 0xffffffffffffffffn);
  assert.equal(hex(r), '67446698' + '00000016' + 'ffffffffffffffff');
  assert.deepEqual(decodeSimpleReplyHeader(r), { error: 22, handle: 2n ** 64n - 1n });
  const lengths = new Map<bigint, number>([
    [1n, 3],
    [2n, 0],
    [3n, 5],
  ]);
  const parser = new NbdSimpleReplyParser((h) => lengths.get(h));
  const stream = Buffer.concat([
    encodeSimpleReply(0, 1n),
    Buffer.from([1, 2, 3]),
    encodeSimpleReply(0, 2n),
    encodeSimpleReply(NbdErrno.EIO, 3n), // an error reply carries no data even for a read
  ]);
  const replies = [];
  for (let i = 0; i < stream.byteLength; i += 5) replies.push(...parser.push(stream.subarray(i, i + 5)));
  assert.deepEqual(
    replies.map((x) => [x.handle, x.error, x.data ? [...x.data] : undefined]),
    [
      [1n, 0, [1, 2, 3]],
      [2n, 0, undefined],
      [3n, 5, undefined],
    ],
  );
  assertProtocolError(() => new NbdSimpleReplyParser(() => undefined).push(encodeSimpleReply(0, 7n)), 8);
});

test('handshake parser yields client flags, options, then hands over the rest', () => {
  const p = new NbdHandshakeParser({ maxOptionLength: 64 });
  const go = encodeOption(NbdOpt.GO, encodeInfoRequest('x', []));
  const stream = Buffer.concat([
    encodeClientFlags(3),
    encodeOption(NbdOpt.STRUCTURED_REPLY),
    encodeOption(99, new Uint8Array(100)), // too long: skipped, reported
    go,
    Buffer.from('transmission bytes'),
  ]);
  for (let i = 0; i < stream.byteLength; i += 7) p.push(stream.subarray(i, i + 7));
  const msgs = [];
  for (let m = p.next(); m; m = p.next()) {
    msgs.push(m);
    if (m.kind === 'option' && m.option === NbdOpt.GO) break;
  }
  assert.deepEqual(
    msgs.map((m) => [m.kind, m.offset]),
    [
      ['clientFlags', 0],
      ['option', 4],
      ['oversizedOption', 20],
      ['option', 136],
    ],
  );
  const rest = p.takeRemaining();
  assert.equal(rest.offset, 136 + go.byteLength);
  assert.equal(Buffer.concat(rest.chunks).toString(), 'transmission bytes');
  const bad = new NbdHandshakeParser();
  bad.push(Buffer.concat([encodeClientFlags(1), Buffer.from('IHAVEOPX'), new Uint8Array(8)]));
  bad.next();
  assertProtocolError(() => bad.next(), 4);
});

test('byte queue copies only across chunk boundaries and tracks the offset', () => {
  const q = new ByteQueue(10);
  const a = new Uint8Array([1, 2, 3]);
  q.push(a);
  q.push(new Uint8Array([4, 5]));
  const first = q.take(2);
  assert.equal(first.buffer, a.buffer);
  assert.deepEqual([...q.take(2)], [3, 4]);
  assert.equal(q.offset, 14);
  assert.equal(q.skip(10), 1);
  assert.equal(q.length, 0);
  assert.throws(() => q.take(1), RangeError);
});

test('device errors map to NBD error values', () => {
  assert.equal(nbdErrnoFromError(new Error('x')), NbdErrno.EIO);
  assert.equal(nbdErrnoFromError(Object.assign(new Error('x'), { code: 'ENOSPC' })), NbdErrno.ENOSPC);
  assert.equal(nbdErrnoFromError(Object.assign(new Error('x'), { code: 'EDQUOT' })), NbdErrno.ENOSPC);
  assert.equal(nbdErrnoFromError(Object.assign(new Error('x'), { code: 'EROFS' })), NbdErrno.EPERM);
  assert.equal(nbdErrnoFromError(new NbdError('NbdDeviceReadOnly', 'ro', { nbdErrno: NbdErrno.EPERM })), 1);
  assert.equal(nbdErrnoFromError({ nbdErrno: NbdErrno.ENOTSUP }), NbdErrno.ENOTSUP);
  assert.equal(nbdErrnoFromError({ nbdErrno: NbdErrno.ENOMEM }), NbdErrno.EIO);
  assert.equal(nbdErrnoFromError({ nbdErrno: 4242 }), NbdErrno.EIO);
  assert.equal(nbdErrnoFromError('string'), NbdErrno.EIO);
});
