// Shared backing readers follow the file at their path: when the backing-image manager repairs a copy in place or
// syncs it again, the replicas' reader (and a qcow2 reader's cached tables) moves to what is there now, without a
// replica reopening. A missing path or a file of another size keeps the reader it has.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SyncIoGate } from '../util/sync-io-gate.js';
import { SharedBackingReaders } from './shared-backing.js';
import { openBacking } from './store.js';

const dir = mkdtempSync(join(tmpdir(), 'shared-backing-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const hasQemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const KiB = 1024;

async function readAt(reader: { read(buf: Uint8Array, offset: number): Promise<void> }, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  await reader.read(buf, offset);
  return buf;
}

/** Reads until `want` comes back (the check runs in the background of a read), or fails after `ms`. */
async function until(reader: { read(buf: Uint8Array, offset: number): Promise<void> }, offset: number, want: Buffer, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if ((await readAt(reader, offset, want.length)).equals(want)) return;
    if (Date.now() > deadline) assert.fail(`never read ${want.subarray(0, 8).toString('hex')}… at ${offset}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a raw file replaced at its path (synced again) is read from then on; a missing path keeps the old file', async () => {
  const path = join(dir, 'raw');
  writeFileSync(path, Buffer.alloc(64 * KiB, 1));
  const shared = new SharedBackingReaders({ checkMs: 50 });
  const reader = await openBacking(path, new SyncIoGate(), undefined, shared);
  try {
    assert.ok((await readAt(reader, 0, 16)).equals(Buffer.alloc(16, 1)));
    rmSync(path); // the copy failed and is synced again: for a while nothing is there
    await new Promise((r) => setTimeout(r, 120));
    assert.ok((await readAt(reader, 0, 16)).equals(Buffer.alloc(16, 1)), 'the open file is still read');
    writeFileSync(`${path}.partial`, Buffer.alloc(64 * KiB, 2));
    renameSync(`${path}.partial`, path);
    await until(reader, 0, Buffer.alloc(16, 2));
    assert.equal(shared.openCount, 1);
  } finally {
    await reader.close();
  }
  assert.equal(shared.openCount, 0);
});

test('a file of another size at the path is not taken over', async () => {
  const path = join(dir, 'sized');
  writeFileSync(path, Buffer.alloc(64 * KiB, 3));
  const shared = new SharedBackingReaders({ checkMs: 50 });
  const reader = await openBacking(path, new SyncIoGate(), undefined, shared);
  try {
    writeFileSync(`${path}.new`, Buffer.alloc(128 * KiB, 4));
    renameSync(`${path}.new`, path);
    for (let i = 0; i < 10; i++) {
      assert.ok((await readAt(reader, 0, 16)).equals(Buffer.alloc(16, 3)));
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await reader.close();
  }
});

test('a qcow2 file repaired in place: the cached tables are read again', { skip: hasQemuImg ? false : 'qemu-img is not installed' }, async () => {
  // Two qcow2 images of one virtual size whose data clusters sit at different file offsets: once the reader has
  // cached the first one's tables, only reading them again finds the second one's data.
  const make = (name: string, fill: number, pad: boolean): string => {
    const raw = join(dir, `${name}.raw`);
    writeFileSync(raw, Buffer.concat([pad ? Buffer.alloc(64 * KiB, 9) : Buffer.alloc(64 * KiB), Buffer.alloc(64 * KiB, fill)]));
    const out = join(dir, `${name}.qcow2`);
    const r = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, out]);
    assert.equal(r.status, 0, String(r.stderr));
    return out;
  };
  const first = make('first', 5, false);
  const second = make('second', 6, true);
  const path = join(dir, 'image.qcow2');
  renameSync(first, path);
  const shared = new SharedBackingReaders({ checkMs: 50 });
  const reader = await openBacking(path, new SyncIoGate(), undefined, shared);
  try {
    assert.ok((await readAt(reader, 64 * KiB, 16)).equals(Buffer.alloc(16, 5)));
    writeFileSync(path, readFileSync(second)); // in place: the same inode, rewritten
    await until(reader, 64 * KiB, Buffer.alloc(16, 6));
    assert.ok((await readAt(reader, 0, 16)).equals(Buffer.alloc(16, 9)), 'the new tables map the cluster the old ones had as a hole');
  } finally {
    await reader.close();
  }
});
