// Fuzz tests of the replica wire protocol: random request and response streams cut at random points decode exactly
// as sent; corrupted header fields fail with a `Protocol` error at the field's byte offset; random damage anywhere
// never throws anything but a `Protocol` error; payload decoders round-trip and reject truncation with offsets.
// Failures print the seed (set REPLICA_TEST_SEED to replay).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockState } from './block-map.js';
import { isReplicaError } from './errors.js';
import {
  decodeExtentData,
  decodeExtents,
  decodeInfo,
  encodeExtentData,
  encodeExtents,
  encodeInfo,
  encodeRequestHeader,
  encodeResponseHeader,
  Op,
  REQUEST_HEADER_SIZE,
  RequestParser,
  ResponseParser,
  WireStatus,
  type RequestHeader,
  type ResponseHeader,
} from './protocol.js';
import { Rng, testSeed } from './testing.js';
import type { ReplicaInfo } from './types.js';

const OPS = Object.values(Op);

function randomRequest(rng: Rng): { h: RequestHeader; payload: Uint8Array } {
  const op = OPS[rng.int(OPS.length)]!;
  const id = rng.int(2 ** 40);
  const fuaOk = op === Op.WRITE || op === Op.TRIM || op === Op.WRITE_ZEROES;
  const flags = fuaOk && rng.int(2) ? 1 : 0;
  switch (op) {
    case Op.WRITE: {
      const payload = rng.bytes(rng.int(3000));
      return { h: { op, flags, id, offset: rng.int(2 ** 50), length: payload.length, payloadLength: payload.length }, payload };
    }
    case Op.READ:
    case Op.READ_EXTENT:
    case Op.TRIM:
    case Op.WRITE_ZEROES:
      return { h: { op, flags, id, offset: rng.int(2 ** 50), length: rng.int(1 << 20), payloadLength: 0 }, payload: new Uint8Array(0) };
    case Op.LIST_EXTENTS:
      return { h: { op, flags, id, offset: rng.int(2 ** 40), length: 1 + rng.int(5000), payloadLength: 0 }, payload: new Uint8Array(0) };
    case Op.SET_REVISION:
      return { h: { op, flags, id, offset: rng.int(2 ** 52), length: 0, payloadLength: 0 }, payload: new Uint8Array(0) };
    case Op.CONTROL: {
      const json = Buffer.from(JSON.stringify({ op: 'layerWrite', layer: rng.int(100), offset: rng.int(2 ** 40) }), 'utf8');
      const payload = Buffer.concat([json, rng.bytes(rng.int(3000))]);
      return { h: { op, flags, id, offset: 0, length: json.length, payloadLength: payload.length }, payload };
    }
    case Op.OPEN: {
      const payload = Buffer.from(`replica-${rng.int(1e9)}`.slice(0, 1 + rng.int(18)), 'utf8');
      return { h: { op, flags, id, offset: 0, length: 0, payloadLength: payload.length }, payload };
    }
    default:
      return { h: { op, flags, id, offset: 0, length: 0, payloadLength: 0 }, payload: new Uint8Array(0) };
  }
}

/** Push `stream` in random pieces (including empty ones). */
function pushSplit<T>(rng: Rng, stream: Uint8Array, push: (c: Uint8Array) => T[]): T[] {
  const out: T[] = [];
  let at = 0;
  while (at < stream.length) {
    const n = rng.int(4) === 0 ? 0 : 1 + rng.int(rng.int(2) ? 40 : 2000);
    out.push(...push(stream.slice(at, at + n)));
    at += n;
  }
  return out;
}

test('request streams split at random points decode identically', () => {
  const seed = testSeed();
  const rng = new Rng(seed);
  for (let round = 0; round < 200; round++) {
    const reqs = Array.from({ length: 1 + rng.int(30) }, () => randomRequest(rng));
    const stream = Buffer.concat(reqs.flatMap((r) => [encodeRequestHeader(r.h), r.payload]));
    const parser = new RequestParser();
    const got = pushSplit(rng, stream, (c) => parser.push(c));
    assert.equal(got.length, reqs.length, `seed ${seed} round ${round}`);
    let at = 0;
    got.forEach((g, i) => {
      const want = reqs[i]!;
      const { streamOffset, payload, ...header } = g;
      assert.deepEqual(header, want.h, `seed ${seed} round ${round} request ${i}`);
      assert.equal(streamOffset, at);
      assert.deepEqual(Buffer.from(payload), Buffer.from(want.payload));
      at += REQUEST_HEADER_SIZE + want.payload.length;
    });
  }
});

test('response streams split at random points decode identically', () => {
  const seed = testSeed();
  const rng = new Rng(seed);
  for (let round = 0; round < 200; round++) {
    const resps = Array.from({ length: 1 + rng.int(30) }, () => {
      const status = rng.int(3) === 0 ? (1 + rng.int(4)) as WireStatus : WireStatus.OK;
      const payload = rng.bytes(status === WireStatus.OK ? rng.int(5000) : rng.int(200));
      const h: ResponseHeader = { op: OPS[rng.int(OPS.length)]!, status, id: rng.int(2 ** 53), payloadLength: payload.length };
      return { h, payload };
    });
    const stream = Buffer.concat(resps.flatMap((r) => [encodeResponseHeader(r.h), r.payload]));
    const parser = new ResponseParser();
    const got = pushSplit(rng, stream, (c) => parser.push(c));
    assert.equal(got.length, resps.length, `seed ${seed}`);
    got.forEach((g, i) => {
      const { streamOffset: _s, payload, ...header } = g;
      assert.deepEqual(header, resps[i]!.h, `seed ${seed} round ${round} response ${i}`);
      assert.deepEqual(Buffer.from(payload), Buffer.from(resps[i]!.payload));
    });
  }
});

function expectProtocolError(fn: () => unknown, offset: number, what: string): void {
  assert.throws(fn, (err) => {
    assert.ok(isReplicaError(err, 'Protocol'), `${what}: ${String(err)}`);
    assert.equal(err.offset, offset, `${what}: ${err.message}`);
    return true;
  });
}

test('corrupted request header fields fail with the field offset', () => {
  const good = encodeRequestHeader({ op: Op.READ, flags: 0, id: 7, offset: 4096, length: 512, payloadLength: 0 });
  const prefix = Buffer.concat([encodeRequestHeader({ op: Op.PING, flags: 0, id: 1, offset: 0, length: 0, payloadLength: 0 })]);
  const base = prefix.length; // errors are absolute stream offsets: the bad header is the second one
  const cases: [string, (b: DataView) => void, number][] = [
    ['magic', (v) => v.setUint32(0, 0xdeadbeef, true), 0],
    ['unknown op', (v) => v.setUint16(4, 99, true), 4],
    ['FUA on READ', (v) => v.setUint16(6, 1, true), 6],
    ['id ≥ 2^53', (v) => v.setUint32(12, 0x0020_0000, true), 8],
    ['offset ≥ 2^53', (v) => v.setUint32(20, 0xffff_ffff, true), 16],
    ['READ too long', (v) => v.setUint32(24, 64 * 1024 * 1024, true), 24],
    ['payload on READ', (v) => v.setUint32(28, 5, true), 28],
  ];
  for (const [what, damage, field] of cases) {
    const bad = new Uint8Array(good);
    damage(new DataView(bad.buffer));
    const parser = new RequestParser();
    expectProtocolError(() => parser.push(Buffer.concat([prefix, bad])), base + field, what);
  }
  const write = new Uint8Array(encodeRequestHeader({ op: Op.WRITE, flags: 1, id: 1, offset: 0, length: 10, payloadLength: 10 }));
  new DataView(write.buffer).setUint32(28, 11, true);
  expectProtocolError(() => new RequestParser().push(write), 28, 'WRITE payload length mismatch');
  const list = new Uint8Array(encodeRequestHeader({ op: Op.LIST_EXTENTS, flags: 0, id: 1, offset: 0, length: 0, payloadLength: 0 }));
  expectProtocolError(() => new RequestParser().push(list), 24, 'empty LIST_EXTENTS page');
  const flush = new Uint8Array(encodeRequestHeader({ op: Op.FLUSH, flags: 0, id: 1, offset: 8, length: 0, payloadLength: 0 }));
  expectProtocolError(() => new RequestParser().push(flush), 16, 'FLUSH with an offset');
});

test('corrupted response header fields fail with the field offset', () => {
  const good = encodeResponseHeader({ op: Op.READ, status: WireStatus.OK, id: 3, payloadLength: 0 });
  const cases: [string, (v: DataView) => void, number][] = [
    ['magic', (v) => v.setUint32(0, 0, true), 0],
    ['op', (v) => v.setUint16(4, 0, true), 4],
    ['status', (v) => v.setUint16(6, 77, true), 6],
    ['id', (v) => v.setUint32(12, 0xffff_ffff, true), 8],
    ['payload too long', (v) => v.setUint32(16, 0xffff_ffff, true), 16],
    ['reserved', (v) => v.setUint32(20, 1, true), 20],
  ];
  for (const [what, damage, field] of cases) {
    const bad = new Uint8Array(good);
    damage(new DataView(bad.buffer));
    expectProtocolError(() => new ResponseParser().push(bad), field, what);
  }
  const err = new Uint8Array(encodeResponseHeader({ op: Op.WRITE, status: WireStatus.EIO, id: 3, payloadLength: 5000 }));
  expectProtocolError(() => new ResponseParser().push(err), 16, 'error message over 4 KiB');
});

test('random damage to a stream only ever yields `Protocol` errors with an offset inside the stream', () => {
  const seed = testSeed();
  const rng = new Rng(seed);
  let errors = 0;
  for (let round = 0; round < 2000; round++) {
    const reqs = Array.from({ length: 1 + rng.int(8) }, () => randomRequest(rng));
    const stream = Buffer.concat(reqs.flatMap((r) => [encodeRequestHeader(r.h), r.payload]));
    for (let k = 1 + rng.int(3); k > 0; k--) stream[rng.int(stream.length)] = rng.int(256);
    const parser = new RequestParser();
    try {
      pushSplit(rng, stream, (c) => parser.push(c));
    } catch (err) {
      assert.ok(isReplicaError(err, 'Protocol'), `seed ${seed} round ${round}: ${String(err)}`);
      assert.ok(err.offset! >= 0 && err.offset! < stream.length, `seed ${seed} round ${round}: offset ${err.offset}`);
      errors++;
    }
  }
  assert.ok(errors > 500, `seed ${seed}: only ${errors} damaged streams were refused`);
});

test('payload codecs round-trip and refuse truncation with offsets', () => {
  const info: ReplicaInfo = { name: 'pvc-1-r-abc', size: 10 * 2 ** 30, blockSize: 4096, revision: 2 ** 40 + 5, generation: 12, backing: { name: 'bi-ü', uuid: 'uuid-1', format: 'qcow2', virtualSize: 2 ** 33 } };
  const encoded = encodeInfo(info);
  assert.deepEqual(decodeInfo(encoded), info);
  const blank = { ...info, backing: null };
  assert.deepEqual(decodeInfo(encodeInfo(blank)), blank);
  for (let cut = 0; cut < encoded.length; cut++) {
    assert.throws(() => decodeInfo(encoded.subarray(0, cut), 1000), (err) => isReplicaError(err, 'Protocol') && err.offset! >= 1000 && err.offset! <= 1000 + cut);
  }

  const page = { extents: [{ offset: 0, length: 8192, state: 'data' as const }, { offset: 2 ** 45, length: 4096, state: 'zero' as const }], nextOffset: 2 ** 46 };
  assert.deepEqual(decodeExtents(encodeExtents(page)), page);
  const last = { extents: [], nextOffset: undefined };
  assert.deepEqual(decodeExtents(encodeExtents(last)), last);
  const badState = encodeExtents(page);
  badState[16 + 16] = 0;
  assert.throws(() => decodeExtents(badState, 500), (err) => isReplicaError(err, 'Protocol') && err.offset === 500 + 32);

  const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const ext = { runs: [{ length: 4096, state: BlockState.UNWRITTEN }, { length: 8, state: BlockState.DATA }, { length: 4096, state: BlockState.ZERO }], data };
  const wire = Buffer.concat(encodeExtentData(ext));
  const back = decodeExtentData(wire);
  assert.deepEqual(back.runs, ext.runs);
  assert.deepEqual([...back.data], [...data]);
  assert.throws(() => decodeExtentData(wire.subarray(0, wire.length - 1), 0), (err) => isReplicaError(err, 'Protocol') && err.offset === 8 + 3 * 16);
});
