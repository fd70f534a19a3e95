// Tests of FileBlockDevice on real temp files: sizing and creation, reads past the end of a short file, zeroing
// across chunk boundaries, read-only refusal with EPERM, and cancellation.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdErrno } from './constants.js';
import { isNbdError } from './errors.js';
import { FileBlockDevice } from './file-device.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stratum-nbd-file-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('create extends the file sparsely to the size; writes and reads round-trip', async () => {
  const path = join(await tempDir(), 'a.img');
  const dev = await FileBlockDevice.open(path, { size: 10 << 20, create: true });
  try {
    assert.equal(dev.size, 10 << 20);
    assert.equal((await stat(path)).size, 10 << 20);
    assert.equal(dev.multiConn, true);
    const data = randomBytes(300_000);
    await dev.write(777, data, { fua: true });
    await dev.flush({});
    assert.ok(Buffer.from(await dev.read(777, data.byteLength, {})).equals(data));
    assert.ok(Buffer.from(await dev.read(5 << 20, 4096, {})).equals(Buffer.alloc(4096)));
  } finally {
    await dev.close();
  }
});

test('zeroing spans several internal chunks and leaves the neighbours alone', async () => {
  const path = join(await tempDir(), 'z.img');
  await writeFile(path, Buffer.alloc(4 << 20, 0xee));
  const dev = await FileBlockDevice.open(path);
  try {
    await dev.writeZeroes(100, (2 << 20) + 5000, { fua: false, noHole: true });
    await dev.trim(3 << 20, 10, { fua: true });
    const bytes = await readFile(path);
    assert.equal(bytes[99], 0xee);
    assert.ok(bytes.subarray(100, 100 + (2 << 20) + 5000).every((b) => b === 0));
    assert.equal(bytes[100 + (2 << 20) + 5000], 0xee);
    assert.ok(bytes.subarray(3 << 20, (3 << 20) + 10).every((b) => b === 0));
    assert.equal(bytes[(3 << 20) + 10], 0xee);
  } finally {
    await dev.close();
  }
});

test('a read-only device larger than its file reads zeros past the end and refuses writes with EPERM', async () => {
  const path = join(await tempDir(), 'ro.img');
  await writeFile(path, Buffer.alloc(1000, 0x11));
  const dev = await FileBlockDevice.open(path, { readOnly: true, size: 4096 });
  try {
    const data = Buffer.from(await dev.read(900, 200, {}));
    assert.ok(data.subarray(0, 100).every((b) => b === 0x11));
    assert.ok(data.subarray(100).every((b) => b === 0));
    for (const op of [
      () => dev.write(0, new Uint8Array(1), { fua: false }),
      () => dev.trim(0, 1, { fua: false }),
      () => dev.writeZeroes(0, 1, { fua: false, noHole: false }),
    ]) {
      await assert.rejects(op(), (e) => isNbdError(e, 'NbdDeviceReadOnly') && e.nbdErrno === NbdErrno.EPERM);
    }
    await dev.flush({});
    assert.equal((await stat(path)).size, 1000);
  } finally {
    await dev.close();
  }
});

test('invalid options and aborted signals are refused', async () => {
  const dir = await tempDir();
  const invalid = (e: unknown): boolean => isNbdError(e, 'NbdInvalidArgument');
  await assert.rejects(FileBlockDevice.open(join(dir, 'x.img'), { create: true }), invalid);
  await assert.rejects(FileBlockDevice.open(join(dir, 'x.img'), { size: -1 }), invalid);
  await assert.rejects(FileBlockDevice.open(join(dir, 'missing.img')), { code: 'ENOENT' });
  const dev = await FileBlockDevice.open(join(dir, 'x.img'), { size: 8 << 20, create: true });
  try {
    const aborted = AbortSignal.abort(new Error('stop'));
    await assert.rejects(dev.read(0, 1, { signal: aborted }), /stop/);
    await assert.rejects(dev.writeZeroes(0, 8 << 20, { fua: false, noHole: false, signal: aborted }), /stop/);
  } finally {
    await dev.close();
  }
});
