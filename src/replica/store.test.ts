// Tests of ReplicaStore on real files: reads through to raw and qcow2 backing images (compressed clusters
// included), zeros past the backing image and without one, partial-block writes merged with backing content,
// TRIM/WRITE_ZEROES hiding the backing image, persistence across close/open, extents for rebuild, concurrent
// overlapping I/O applied in call order, and refusal of a swapped backing file.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isReplicaError } from './errors.js';
import { ReplicaStore } from './store.js';
import { Rng, testSeed } from './testing.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stratum-replica-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const QEMU_IMG_MISSING = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'qemu-img is not installed (package qemu-utils); test skipped';

const KiB = 1024;
const MiB = 1024 * KiB;

async function backingFile(dir: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, 'backing.raw');
  await writeFile(path, bytes);
  return path;
}

/** The bytes the volume should read: backing content, zero-padded to the volume size. */
function modelOf(backing: Uint8Array, size: number): Uint8Array {
  const m = new Uint8Array(size);
  m.set(backing.subarray(0, size));
  return m;
}

async function assertContent(store: ReplicaStore, model: Uint8Array, what: string): Promise<void> {
  const got = await store.read(0, model.length);
  const at = Buffer.from(got).findIndex((b, i) => b !== model[i]);
  assert.equal(at, -1, `${what}: first difference at byte ${at}`);
}

test('unwritten blocks read from a raw backing image, zeros past its end; writes never touch it', async () => {
  const dir = await tempDir();
  const rng = new Rng(1);
  const backing = rng.bytes(3 * MiB + 512);
  const path = await backingFile(dir, backing);
  const store = await ReplicaStore.create(join(dir, 'r1'), { name: 'r1', size: 4 * MiB, backing: { name: 'bi', uuid: 'u1', path } });
  try {
    const model = modelOf(backing, 4 * MiB);
    await assertContent(store, model, 'fresh replica');
    assert.deepEqual(Buffer.from(await store.read(3 * MiB, 1024)), Buffer.from(model.subarray(3 * MiB, 3 * MiB + 1024)));
    const data = rng.bytes(10_000);
    await store.write(3 * MiB - 5000, data, { fua: false });
    model.set(data, 3 * MiB - 5000);
    await assertContent(store, model, 'after a write across the end of the backing image');
    assert.deepEqual(store.info().backing, { name: 'bi', uuid: 'u1', format: 'raw', virtualSize: backing.length });
  } finally {
    await store.close();
  }
  assert.ok((await readFile(path)).equals(backing), 'backing file unchanged');
});

test('a replica without a backing image reads zeros; a backing image larger than the volume is refused', async () => {
  const dir = await tempDir();
  const store = await ReplicaStore.create(join(dir, 'blank'), { name: 'blank', size: 1 * MiB });
  try {
    assert.ok(Buffer.from(await store.read(0, MiB)).equals(Buffer.alloc(MiB)));
    assert.equal(store.info().backing, null);
  } finally {
    await store.close();
  }
  const path = await backingFile(dir, new Uint8Array(2 * MiB));
  await assert.rejects(
    ReplicaStore.create(join(dir, 'small'), { name: 'small', size: 1 * MiB, backing: { name: 'bi', uuid: 'u', path } }),
    (err) => isReplicaError(err, 'BackingMismatch'),
  );
  await assert.rejects(ReplicaStore.create(join(dir, 'odd'), { name: 'odd', size: 1000 }), (err) => isReplicaError(err, 'InvalidArgument'));
});

test('partial-block writes merge with backing content; TRIM and WRITE_ZEROES hide it', async () => {
  const dir = await tempDir();
  const rng = new Rng(2);
  const backing = rng.bytes(256 * KiB);
  const path = await backingFile(dir, backing);
  const store = await ReplicaStore.create(join(dir, 'r'), { name: 'r', size: 256 * KiB, backing: { name: 'bi', uuid: 'u', path } });
  const model = modelOf(backing, 256 * KiB);
  try {
    await store.write(4096 + 100, new Uint8Array([1, 2, 3]), { fua: false }); // inside one unwritten block
    model.set([1, 2, 3], 4096 + 100);
    await store.write(8192 - 1, new Uint8Array([7, 7]), { fua: true }); // across two unwritten blocks
    model.set([7, 7], 8192 - 1);
    await store.trim(16 * KiB, 8 * KiB, { fua: false }); // whole blocks: ZERO, no head I/O
    model.fill(0, 16 * KiB, 24 * KiB);
    await store.writeZeroes(32 * KiB + 10, 5000, { fua: false }); // partial edges merge
    model.fill(0, 32 * KiB + 10, 32 * KiB + 5010);
    await store.write(16 * KiB + 3, new Uint8Array([5]), { fua: false }); // partial write over a ZERO block
    model[16 * KiB + 3] = 5;
    await assertContent(store, model, 'after mixed writes');
    const stats = store.stats();
    assert.equal(stats.zeroBytes, 4096, 'only block 5 stays ZERO: block 4 took a write, the zeroed edges merged');
    const { extents } = store.writtenExtents();
    assert.deepEqual(extents.map((e) => [e.offset / 4096, e.length / 4096, e.state]), [
      [1, 2, 'data'],
      [4, 1, 'data'],
      [5, 1, 'zero'],
      [8, 2, 'data'],
    ]);
  } finally {
    await store.close();
  }
  const again = await ReplicaStore.open(join(dir, 'r'));
  try {
    await assertContent(again, model, 'after close and reopen');
    assert.ok(again.info().revision === 5, `revision ${again.info().revision}`);
  } finally {
    await again.close();
  }
});

test('qcow2 backing (compressed clusters): reads through, partial writes merge', { skip: QEMU_IMG_MISSING }, async () => {
  const dir = await tempDir();
  const rng = new Rng(3);
  const raw = new Uint8Array(2 * MiB);
  for (let i = 0; i < 40; i++) raw.set(rng.bytes(8 * KiB), rng.int(250) * 8 * KiB); // scattered data, zero gaps
  const rawPath = await backingFile(dir, raw);
  const qcow = join(dir, 'backing.qcow2');
  execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', rawPath, qcow]);
  const store = await ReplicaStore.create(join(dir, 'r'), { name: 'r', size: 3 * MiB, blockSize: 16 * KiB, backing: { name: 'bi', uuid: 'u', path: qcow } });
  const model = modelOf(raw, 3 * MiB);
  try {
    assert.equal(store.info().backing?.format, 'qcow2');
    await assertContent(store, model, 'qcow2 read-through');
    for (let i = 0; i < 200; i++) {
      const off = rng.int(3 * MiB - 70_000);
      const data = rng.bytes(1 + rng.int(70_000));
      await store.write(off, data, { fua: false });
      model.set(data, off);
    }
    await assertContent(store, model, 'after random partial writes over qcow2');
  } finally {
    await store.close();
  }
});

test('concurrent overlapping operations apply in call order; readExtent returns states and DATA bytes', async () => {
  const seed = testSeed();
  const dir = await tempDir();
  const rng = new Rng(seed);
  const size = 512 * KiB;
  const backing = rng.bytes(size);
  const path = await backingFile(dir, backing);
  const store = await ReplicaStore.create(join(dir, 'r'), { name: 'r', size, blockSize: 4096, backing: { name: 'bi', uuid: 'u', path } });
  const model = modelOf(backing, size);
  try {
    const ops: Promise<void>[] = [];
    for (let i = 0; i < 400; i++) {
      const off = rng.int(size - 20_000);
      const len = 1 + rng.int(20_000);
      const kind = rng.int(10);
      // Not awaited: the store must apply overlapping requests in the order they were made.
      if (kind < 7) {
        const data = rng.bytes(len);
        ops.push(store.write(off, data, { fua: kind === 0 }));
        model.set(data, off);
      } else if (kind < 9) {
        ops.push(store.writeZeroes(off, len, { fua: false }));
        model.fill(0, off, off + len);
      } else ops.push(store.flush());
    }
    await Promise.all(ops);
    await assertContent(store, model, `seed ${seed}`);
    const e = await store.readExtent(0, size);
    assert.equal(e.runs.reduce((n, r) => n + r.length, 0), size);
    let at = 0;
    let dataAt = 0;
    for (const r of e.runs) {
      if (r.state === 1) {
        assert.deepEqual(Buffer.from(e.data.subarray(dataAt, dataAt + r.length)), Buffer.from(model.subarray(at, at + r.length)), `seed ${seed}`);
        dataAt += r.length;
      } else if (r.state === 2) assert.ok(model.subarray(at, at + r.length).every((b) => b === 0), `seed ${seed}: ZERO run`);
      at += r.length;
    }
    await assert.rejects(store.readExtent(100, 4096), (err) => isReplicaError(err, 'OutOfRange'));
    await assert.rejects(store.read(size - 10, 11), (err) => isReplicaError(err, 'OutOfRange'));
  } finally {
    await store.close();
  }
  await assert.rejects(store.read(0, 1), (err) => isReplicaError(err, 'Closed'));
});

test('open refuses a swapped backing file, a missing replica and a second create', async () => {
  const dir = await tempDir();
  const path = await backingFile(dir, new Uint8Array(64 * KiB));
  const rdir = join(dir, 'r');
  const store = await ReplicaStore.create(rdir, { name: 'r', size: 128 * KiB, backing: { name: 'bi', uuid: 'u', path } });
  await store.close();
  await assert.rejects(ReplicaStore.create(rdir, { name: 'r', size: 128 * KiB }), (err) => isReplicaError(err, 'AlreadyExists'));
  await writeFile(path, new Uint8Array(32 * KiB));
  await assert.rejects(ReplicaStore.open(rdir), (err) => isReplicaError(err, 'BackingMismatch'));
  await assert.rejects(ReplicaStore.open(join(dir, 'none')), (err) => isReplicaError(err, 'NotFound'));
});
