// Fuzz tests of the incremental NBD parsers. Random request and handshake streams are fed in pieces split at
// random points and must decode exactly as when fed whole; corrupted streams must fail with an NBD protocol error
// that names a byte offset inside the stream, never with any other exception. The PRNG is seeded: set
// NBD_FUZZ_SEED to replay a failure, whose message always includes the seed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NbdCmd,
  NbdHandshakeParser,
  NbdOpt,
  NbdRequestParser,
  type NbdClientMessage,
  type NbdRequest,
  encodeClientFlags,
  decodeInfoRequest,
  encodeInfoRequest,
  encodeOption,
  encodeRequestHeader,
} from './protocol.js';
import { isProtocolError } from './errors.js';
import { mulberry32 as prng } from '../../util/prng.js';


const baseSeed = process.env['NBD_FUZZ_SEED'] ? Number(process.env['NBD_FUZZ_SEED']) : (Date.now() ^ 0x5bd1e995) >>> 0;
const CASES = 2500;
const MAX_PAYLOAD = 4096;

function withSeed(seed: number, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`fuzz case failed with NBD_FUZZ_SEED=${seed}: ${message}`, { cause: err });
  }
}

function int(rand: () => number, below: number): number {
  return Math.floor(rand() * below);
}

/** Random well-formed request stream, including writes above the payload limit. */
function randomRequests(rand: () => number): { stream: Uint8Array; requests: number } {
  const parts: Uint8Array[] = [];
  const n = 1 + int(rand, 12);
  const { READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE } = NbdCmd;
  const types = [READ, WRITE, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE, 42];
  for (let i = 0; i < n; i++) {
    const type = types[int(rand, types.length)]!;
    const oversized = type === NbdCmd.WRITE && rand() < 0.1;
    const length = oversized
      ? MAX_PAYLOAD + 1 + int(rand, 3000)
      : int(rand, type === NbdCmd.WRITE ? MAX_PAYLOAD : 2 ** 32);
    const handle = (BigInt(int(rand, 2 ** 32)) << 32n) | BigInt(int(rand, 2 ** 32));
    const offset = int(rand, 2 ** 21) * 2 ** 32 + int(rand, 2 ** 32); // any value below 2^53
    parts.push(encodeRequestHeader({ flags: int(rand, 1 << 16), type, handle, offset, length }));
    if (type === NbdCmd.WRITE) parts.push(new Uint8Array(length).map(() => int(rand, 256)));
  }
  return { stream: Buffer.concat(parts), requests: n };
}

function splitPoints(rand: () => number, length: number): number[] {
  const cuts = new Set<number>();
  const count = int(rand, 8) + (rand() < 0.05 ? length : 0); // now and then: every byte on its own
  for (let i = 0; i < count; i++) cuts.add(int(rand, length + 1));
  return [...cuts].sort((a, b) => a - b);
}

function feed<T>(stream: Uint8Array, cuts: number[], push: (chunk: Uint8Array) => T[]): T[] {
  const out: T[] = [];
  let from = 0;
  for (const cut of [...cuts, stream.byteLength]) {
    out.push(...push(stream.subarray(from, cut)));
    from = cut;
  }
  return out;
}

function normalise(r: NbdRequest): unknown {
  return { ...r, data: r.data ? Buffer.from(r.data).toString('base64') : undefined };
}

test(`request parser: ${CASES} random streams split at random points decode identically (seed ${baseSeed})`, () => {
  for (let i = 0; i < CASES; i++) {
    const seed = (baseSeed + i) >>> 0;
    withSeed(seed, () => {
      const rand = prng(seed);
      const { stream, requests } = randomRequests(rand);
      const start = int(rand, 1000);
      const whole = new NbdRequestParser({ maxPayload: MAX_PAYLOAD, startOffset: start }).push(stream);
      assert.equal(whole.length, requests);
      const parser = new NbdRequestParser({ maxPayload: MAX_PAYLOAD, startOffset: start });
      const split = feed(stream, splitPoints(rand, stream.byteLength), (c) => parser.push(c));
      assert.deepEqual(split.map(normalise), whole.map(normalise));
      assert.equal(parser.buffered, 0);
      for (const r of whole) {
        if (r.type === NbdCmd.WRITE) assert.equal(r.oversized === true, r.length > MAX_PAYLOAD);
        assert.ok(r.streamOffset >= start && r.streamOffset < start + stream.byteLength);
      }
    });
  }
});

test(`request parser: ${CASES} corrupted streams fail only with located protocol errors (seed ${baseSeed})`, () => {
  let failures = 0;
  for (let i = 0; i < CASES; i++) {
    const seed = (baseSeed + 1_000_003 + i) >>> 0;
    withSeed(seed, () => {
      const rand = prng(seed);
      const { stream } = randomRequests(rand);
      const bad = new Uint8Array(stream);
      // Corrupt the first header's magic or length, or any byte at random.
      const mode = int(rand, 3);
      const at = mode === 0 ? int(rand, 4) : mode === 1 ? 24 + int(rand, 4) : int(rand, bad.byteLength);
      bad[at] = (bad[at]! ^ (1 + int(rand, 255))) & 0xff;
      const parser = new NbdRequestParser({ maxPayload: MAX_PAYLOAD });
      try {
        feed(bad, splitPoints(rand, bad.byteLength), (c) => parser.push(c));
      } catch (err) {
        assert.ok(isProtocolError(err), `unexpected exception ${String(err)}`);
        assert.ok(err.offset !== undefined && err.offset >= 0 && err.offset < bad.byteLength, `offset ${err.offset}`);
        assert.ok(err.message.includes(`byte ${err.offset}`));
        if (mode === 0) assert.equal(err.offset, 0);
        failures++;
      }
    });
  }
  // Every corrupted magic fails; a third of the cases corrupt the magic, so well over a quarter must fail.
  assert.ok(failures > CASES / 4, `only ${failures} of ${CASES} corrupted streams failed`);
});

function randomHandshake(rand: () => number): Uint8Array {
  const parts: Uint8Array[] = [encodeClientFlags(int(rand, 4))];
  const n = int(rand, 6);
  for (let i = 0; i < n; i++) {
    const option = [NbdOpt.LIST, NbdOpt.INFO, NbdOpt.STRUCTURED_REPLY, NbdOpt.STARTTLS, 1234][int(rand, 5)]!;
    const data =
      option === NbdOpt.INFO
        ? encodeInfoRequest(`export-${int(rand, 100)}`, [0, 1, 2, 3].slice(0, int(rand, 5)))
        : new Uint8Array(rand() < 0.1 ? 300 + int(rand, 200) : int(rand, 40)).map(() => int(rand, 256));
    parts.push(encodeOption(option, data));
  }
  parts.push(encodeOption(NbdOpt.GO, encodeInfoRequest('disk', [3])));
  return Buffer.concat(parts);
}

function drain(parser: NbdHandshakeParser, out: NbdClientMessage[]): void {
  for (let m = parser.next(); m; m = parser.next()) out.push(m);
}

test(`handshake parser: ${CASES} random and corrupted option streams (seed ${baseSeed})`, () => {
  for (let i = 0; i < CASES; i++) {
    const seed = (baseSeed + 2_000_003 + i) >>> 0;
    withSeed(seed, () => {
      const rand = prng(seed);
      const stream = randomHandshake(rand);
      const whole: NbdClientMessage[] = [];
      const p1 = new NbdHandshakeParser({ maxOptionLength: 256 });
      p1.push(stream);
      drain(p1, whole);
      const split: NbdClientMessage[] = [];
      const p2 = new NbdHandshakeParser({ maxOptionLength: 256 });
      feed(stream, splitPoints(rand, stream.byteLength), (c) => {
        p2.push(c);
        drain(p2, split);
        return [];
      });
      const plain = (m: NbdClientMessage): unknown =>
        'data' in m ? { ...m, data: Buffer.from(m.data).toString('hex') } : m;
      assert.deepEqual(split.map(plain), whole.map(plain));
      assert.equal(whole.at(-1)?.kind, 'option');

      const bad = new Uint8Array(stream);
      const at = 4 + int(rand, bad.byteLength - 4);
      bad[at] = (bad[at]! ^ (1 + int(rand, 255))) & 0xff;
      const p3 = new NbdHandshakeParser({ maxOptionLength: 256 });
      try {
        feed(bad, splitPoints(rand, bad.byteLength), (c) => {
          p3.push(c);
          const msgs: NbdClientMessage[] = [];
          drain(p3, msgs);
          // The option data decoder must hold up to the same corruption.
          for (const m of msgs) {
            if (m.kind === 'option' && (m.option === NbdOpt.INFO || m.option === NbdOpt.GO)) {
              decodeInfoRequest(m.data, m.offset + 16);
            }
          }
          return [];
        });
      } catch (err) {
        assert.ok(isProtocolError(err), `unexpected exception ${String(err)}`);
        assert.ok(err.offset !== undefined && err.offset >= 4 && err.offset < bad.byteLength);
      }
    });
  }
});
