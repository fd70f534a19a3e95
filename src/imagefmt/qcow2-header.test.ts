// Unit tests of parseQcow2Header and checkQcow2Layout on synthetic headers: every field it reads, every refusal,
// with the code, the byte offset and the message.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ImageFormatError, isImageFormatError, type ImageFormatErrorCode } from './errors.js';
import { buildQcow2Header, featureNameEntry, type HeaderSpec } from './fixtures.js';
import { checkQcow2Layout, parseQcow2Header } from './qcow2-header.js';

function refused(spec: HeaderSpec | Uint8Array, code: ImageFormatErrorCode, offset: number | undefined, message?: RegExp): ImageFormatError {
  const buf = spec instanceof Uint8Array ? spec : buildQcow2Header(spec);
  let caught: unknown;
  try {
    parseQcow2Header(buf);
  } catch (err) {
    caught = err;
  }
  assert.ok(isImageFormatError(caught), `expected ImageFormatError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.offset, offset, caught.message);
  if (message !== undefined) assert.match(caught.message, message);
  return caught;
}

describe('parseQcow2Header: valid headers', () => {
  test('version 2 header: fields, defaults for v3-only fields', () => {
    const h = parseQcow2Header(buildQcow2Header({ version: 2, clusterBits: 12, size: 10 * 1024 * 1024, l1Size: 20 }));
    assert.equal(h.version, 2);
    assert.equal(h.clusterSize, 4096);
    assert.equal(h.virtualSize, 10 * 1024 * 1024);
    assert.equal(h.l1Size, 20);
    assert.equal(h.l1TableOffset, 3 * 4096);
    assert.equal(h.refcountOrder, 4);
    assert.equal(h.headerLength, 72);
    assert.equal(h.l2Entries, 512);
    assert.equal(h.incompatibleFeatures, 0n);
    assert.equal(h.compressionType, 'zlib');
  });

  test('version 3 header with extensions: backing format, feature names, bitmaps, unknown ones recorded', () => {
    const bitmaps = new Uint8Array(24);
    const bv = new DataView(bitmaps.buffer);
    bv.setUint32(0, 2);
    bv.setBigUint64(8, 96n);
    bv.setBigUint64(16, 0x50000n);
    const names = new Uint8Array([...featureNameEntry(0, 0, 'dirty bit'), ...featureNameEntry(1, 0, 'lazy refcounts')]);
    const h = parseQcow2Header(buildQcow2Header({
      incompatible: 1n, // dirty: refcounts stale, irrelevant for reading
      compatible: 1n,
      extensions: [
        { type: 0xe2792aca, data: new TextEncoder().encode('raw') },
        { type: 0x6803f857, data: names },
        { type: 0x23852875, data: bitmaps },
        { type: 0x12345678, data: new Uint8Array(5) },
      ],
    }));
    assert.equal(h.version, 3);
    assert.equal(h.dirty, true);
    assert.equal(h.lazyRefcounts, true);
    assert.equal(h.backingFormat, 'raw');
    assert.deepEqual(h.featureNames, [
      { type: 'incompatible', bit: 0, name: 'dirty bit' },
      { type: 'compatible', bit: 0, name: 'lazy refcounts' },
    ]);
    assert.deepEqual(h.bitmaps, { count: 2, directorySize: 96, directoryOffset: 0x50000 });
    assert.deepEqual(h.extensions.map((e) => [e.type, e.offset, e.length]), [
      [0xe2792aca, 112, 3], [0x6803f857, 128, 96], [0x23852875, 232, 24], [0x12345678, 264, 5],
    ]);
  });

  test('extended L2 entries: 16-byte entries', () => {
    const h = parseQcow2Header(buildQcow2Header({ incompatible: 1n << 4n }));
    assert.equal(h.extendedL2, true);
    assert.equal(h.l2EntrySize, 16);
    assert.equal(h.l2Entries, 4096);
  });

  test('header_length 104 (no compression_type field) and 2 MiB clusters', () => {
    const h = parseQcow2Header(buildQcow2Header({ headerLength: 104, clusterBits: 21 }));
    assert.equal(h.headerLength, 104);
    assert.equal(h.clusterSize, 2 * 1024 * 1024);
  });

  test('a header inside a larger buffer (non-zero byteOffset) parses the same', () => {
    const plain = buildQcow2Header();
    const big = new Uint8Array(plain.length + 13);
    big.set(plain, 13);
    assert.deepEqual(parseQcow2Header(big.subarray(13)), parseQcow2Header(plain));
  });
});

describe('parseQcow2Header: refusals', () => {
  test('bad magic', () => {
    const buf = buildQcow2Header();
    buf[3] = 0xfa;
    refused(buf, 'BadMagic', 0, /magic is 0x514649fa/);
  });

  test('version 4 and version 1', () => {
    const e = refused({ version: 4 }, 'UnsupportedVersion', 4);
    assert.equal(e.message, 'qcow2 header at offset 4: version 4 is not supported (2 or 3)');
    refused({ version: 1 }, 'UnsupportedVersion', 4, /original qcow/);
  });

  test('cluster_bits outside 9..21', () => {
    refused({ clusterBits: 8 }, 'Corrupt', 20, /cluster_bits 8 is below the minimum/);
    refused({ clusterBits: 22 }, 'UnsupportedFeature', 20, /at most 21/);
  });

  test('backing file reference, with its name in the message', () => {
    refused({ backing: { offset: 400, name: 'base.qcow2' } }, 'BackingFile', 8, /backing file "base.qcow2"; a backing image must be self-contained/);
  });

  test('encryption', () => {
    refused({ cryptMethod: 1 }, 'Encrypted', 32, /AES/);
    refused({ cryptMethod: 2 }, 'Encrypted', 32, /LUKS/);
  });

  test('virtual size not a multiple of 512, or beyond 2^53', () => {
    refused({ size: 1024 * 1024 + 100 }, 'BadSize', 24, /1048676 is not a multiple of 512/);
    refused({ size: 2 ** 60 }, 'BadSize', 24, /beyond 2\^53/);
  });

  test('corrupt bit, external data file bit and extension', () => {
    refused({ incompatible: 2n }, 'Corrupt', 72, /marked corrupt/);
    refused({ incompatible: 4n }, 'ExternalDataFile', 72);
    refused({ extensions: [{ type: 0x44415441, data: new TextEncoder().encode('data.raw') }] }, 'ExternalDataFile', 112, /"data.raw"/);
  });

  test('unknown incompatible feature bits, named from the feature name table', () => {
    refused({ incompatible: 1n << 40n }, 'UnsupportedFeature', 72, /unknown incompatible feature bit 40 is set/);
    const table = featureNameEntry(0, 5, 'shiny new thing');
    refused({ incompatible: 1n << 5n, extensions: [{ type: 0x6803f857, data: table }] }, 'UnsupportedFeature', 72, /bit 5 \("shiny new thing"\)/);
  });

  test('compression type: zstd refused clearly, inconsistent fields are corrupt', () => {
    refused({ incompatible: 8n, compressionType: 1 }, 'UnsupportedFeature', 104, /zstd.*Node\.js 20's zlib has no zstd decoder/);
    refused({ incompatible: 8n, compressionType: 7 }, 'UnsupportedFeature', 104, /compression_type 7 is unknown/);
    refused({ incompatible: 8n, compressionType: 0 }, 'Corrupt', 104);
    refused({ incompatible: 8n, headerLength: 104 }, 'Corrupt', 72);
    refused({ compressionType: 1 }, 'Corrupt', 104, /feature bit \(3\) is not set/);
  });

  test('header_length, refcount_order, extended L2 with small clusters', () => {
    refused({ headerLength: 100 }, 'Corrupt', 100);
    refused({ headerLength: 108 }, 'Corrupt', 100);
    refused({ refcountOrder: 7 }, 'Corrupt', 96);
    refused({ incompatible: 1n << 4n, clusterBits: 12, l1Size: 4 }, 'Corrupt', 20, /at least 16 KiB/);
  });

  test('L1 table: too small for the size, too large, misaligned, at offset 0', () => {
    refused({ size: 1024 ** 3, l1Size: 1 }, 'Corrupt', 36, /needs 2 entries/);
    refused({ l1Size: 5_000_000 }, 'BadSize', 36, /32 MiB/);
    refused({ l1Offset: 3 * 65536 + 512 }, 'Corrupt', 40, /not aligned/);
    refused({ l1Offset: 0 }, 'Corrupt', 40, /overlap the header/);
  });

  test('truncated input: the fixed header and the extension area', () => {
    refused(buildQcow2Header().subarray(0, 50), 'Truncated', 48, /refcount_table_offset needs 8 bytes/);
    refused(buildQcow2Header().subarray(0, 2), 'Truncated', 0);
    const withExt = buildQcow2Header({ extensions: [{ type: 0xe2792aca, data: new Uint8Array(40) }] });
    refused(withExt.subarray(0, 130), 'Truncated', 112, /header extension 0xe2792aca/);
  });

  test('an extension running past the first cluster is corrupt', () => {
    const buf = buildQcow2Header({ clusterBits: 9, l1Size: 4096, size: 64 * 1024 * 1024 });
    new DataView(buf.buffer).setUint32(112, 0xe2792aca);
    new DataView(buf.buffer).setUint32(116, 1000);
    refused(buf, 'Corrupt', 112, /past the end of the first cluster/);
  });
});

describe('checkQcow2Layout', () => {
  test('an L1 table past the end of the file is corrupt', () => {
    const h = parseQcow2Header(buildQcow2Header({ l1Size: 1, l1Offset: 3 * 65536 }));
    checkQcow2Layout(h, 4 * 65536);
    assert.throws(() => checkQcow2Layout(h, 3 * 65536 + 4), (err) => isImageFormatError(err, 'Corrupt') && err.offset === 40);
  });
});
