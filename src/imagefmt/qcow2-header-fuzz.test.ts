// Fuzz test of parseQcow2Header: valid headers (synthetic, and real ones from qemu-img when it is installed) with
// corrupted fields, random bytes, truncation and re-assembly at random split points. Whatever the input, the
// parser returns a consistent header or throws ImageFormatError; a prefix of a valid header parses the same or is
// `Truncated`. Replay a failure with IMAGEFMT_FUZZ_SEED=<seed>.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { IMAGE_FORMAT_ERROR_CODES, isImageFormatError } from './errors.js';
import { buildQcow2Header, featureNameEntry, fuzzSeed, QEMU_IMG_MISSING, qemuImg, Rng, tempDir } from './fixtures.js';
import { parseQcow2Header, type Qcow2Header } from './qcow2-header.js';

const CASES = 4000;

/** Header fields as [offset, width]: the mutation targets. */
const FIELDS: readonly [number, number][] = [
  [0, 4], [4, 4], [8, 8], [16, 4], [20, 4], [24, 8], [32, 4], [36, 4], [40, 8], [48, 8], [56, 4], [60, 4], [64, 8],
  [72, 8], [80, 8], [88, 8], [96, 4], [100, 4], [104, 1], [112, 4], [116, 4],
];

interface Base {
  name: string;
  buf: Uint8Array;
  parsed: Qcow2Header;
}

function syntheticBases(): Base[] {
  const names = new Uint8Array([...featureNameEntry(0, 0, 'dirty bit'), ...featureNameEntry(2, 0, 'bitmaps')]);
  const bitmaps = new Uint8Array(24);
  new DataView(bitmaps.buffer).setUint32(0, 1);
  const specs = [
    buildQcow2Header({ version: 2 }),
    buildQcow2Header({ extensions: [{ type: 0x6803f857, data: names }, { type: 0xe2792aca, data: new TextEncoder().encode('qcow2') }] }),
    buildQcow2Header({ incompatible: 1n << 4n, extensions: [{ type: 0x23852875, data: bitmaps }] }),
    buildQcow2Header({ clusterBits: 9, l1Size: 64, size: 2 * 1024 * 1024 }),
    buildQcow2Header({ clusterBits: 21, headerLength: 104 }),
  ];
  return specs.map((buf, i) => ({ name: `synthetic ${i}`, buf, parsed: parseQcow2Header(buf) }));
}

async function realBases(): Promise<Base[]> {
  if (QEMU_IMG_MISSING !== false) return [];
  const { dir, cleanup } = await tempDir();
  try {
    const variants: [string, string][] = [
      ['v2', 'compat=0.10'],
      ['v3', 'compat=1.1'],
      ['c512', 'cluster_size=512'],
      ['l2ext', 'extended_l2=on'],
      ['lazy', 'lazy_refcounts=on,cluster_size=2M'],
    ];
    const bases: Base[] = [];
    for (const [name, opts] of variants) {
      const path = join(dir, `${name}.qcow2`);
      await qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, path, '8M');
      if (name === 'v3') await qemuImg('bitmap', '--add', path, 'b0');
      const file = await readFile(path);
      const clusterSize = 2 ** new DataView(file.buffer, file.byteOffset).getUint32(20);
      const buf = new Uint8Array(file.subarray(0, Math.min(file.length, clusterSize)));
      bases.push({ name: `qemu-img ${name}`, buf, parsed: parseQcow2Header(buf) });
    }
    return bases;
  } finally {
    await cleanup();
  }
}

function check(buf: Uint8Array): Qcow2Header | undefined {
  try {
    const h = parseQcow2Header(buf);
    assert.ok(h.version === 2 || h.version === 3);
    assert.ok(h.clusterBits >= 9 && h.clusterBits <= 21);
    assert.equal(h.virtualSize % 512, 0);
    assert.ok(h.l1Size * h.l2Entries * h.clusterSize >= h.virtualSize, 'L1 table covers the virtual size');
    assert.equal(h.l1TableOffset % h.clusterSize, 0);
    return h;
  } catch (err) {
    if (!isImageFormatError(err)) throw new Error(`threw a non-ImageFormatError: ${String(err)}`, { cause: err });
    assert.ok(IMAGE_FORMAT_ERROR_CODES.includes(err.code));
    assert.ok(err.offset === undefined || (Number.isSafeInteger(err.offset) && err.offset >= 0), `bad offset ${err.offset}`);
    if (err.code === 'Truncated') assert.ok(err.offset !== undefined && err.offset < buf.length + 8);
    return undefined;
  }
}

/** A prefix of a valid header either parses to the same header or is `Truncated`. */
function checkPrefix(base: Base, cut: number): void {
  const prefix = base.buf.subarray(0, cut);
  try {
    assert.deepEqual(parseQcow2Header(prefix), base.parsed, `prefix of ${cut} bytes parsed differently`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.ok(isImageFormatError(err, 'Truncated'), `prefix of ${cut} bytes: ${String(err)}`);
  }
}

function mutate(rng: Rng, base: Base): Uint8Array {
  const buf = new Uint8Array(base.buf);
  const view = new DataView(buf.buffer);
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    if (rng.int(3) > 0) {
      const [offset, width] = rng.pick(FIELDS);
      if (offset + width > buf.length) continue;
      const choice = rng.int(5);
      if (choice === 4) {
        const at = offset + rng.int(width); // flip one bit
        buf[at] = (buf[at] ?? 0) ^ (1 << rng.int(8));
        continue;
      }
      for (let i = 0; i < width; i++) {
        // 0: zero, 1: all ones, 2: a small number, 3: random
        const small = i === width - 1 ? rng.u32() & 0xff : 0;
        view.setUint8(offset + i, choice === 0 ? 0 : choice === 1 ? 0xff : choice === 2 ? small : rng.u32() & 0xff);
      }
    } else {
      const at = rng.int(Math.min(buf.length, 1024));
      buf[at] = rng.u32() & 0xff;
    }
  }
  return buf;
}

test(`parseQcow2Header fuzz: ${CASES} corrupted, truncated and split headers throw only ImageFormatError`, async (t) => {
  const seed = fuzzSeed();
  const bases = [...syntheticBases(), ...(await realBases())];
  if (QEMU_IMG_MISSING !== false) t.diagnostic(`real qemu-img headers left out: ${QEMU_IMG_MISSING}`);
  const rng = new Rng(seed);
  const outcomes = { parsed: 0, refused: 0 };
  for (let i = 0; i < CASES; i++) {
    const base = rng.pick(bases);
    try {
      switch (i % 4) {
        case 0:
        case 1: {
          const h = check(mutate(rng, base));
          outcomes[h === undefined ? 'refused' : 'parsed']++;
          break;
        }
        case 2:
          checkPrefix(base, rng.int(Math.min(base.buf.length, 2048) + 1));
          break;
        case 3: {
          // Re-assemble the two halves of a split into a buffer at an odd byte offset: DataView misuse shows here.
          const cut = rng.int(base.buf.length + 1);
          const pad = 1 + rng.int(15);
          const joined = new Uint8Array(pad + base.buf.length);
          joined.set(base.buf.subarray(0, cut), pad);
          joined.set(base.buf.subarray(cut), pad + cut);
          assert.deepEqual(parseQcow2Header(joined.subarray(pad)), base.parsed);
          checkPrefix(base, cut);
          break;
        }
      }
    } catch (err) {
      assert.fail(`fuzz seed ${seed} case ${i} (base ${base.name}) failed; replay with IMAGEFMT_FUZZ_SEED=${seed}: ${err instanceof Error ? err.stack : String(err)}`);
    }
  }
  // Both outcomes must occur, or the mutations are not reaching the checks.
  assert.ok(outcomes.parsed > 0 && outcomes.refused > 0, `seed ${seed}: ${JSON.stringify(outcomes)}`);
  t.diagnostic(`seed ${seed}: ${bases.length} base headers, ${JSON.stringify(outcomes)}`);
});
