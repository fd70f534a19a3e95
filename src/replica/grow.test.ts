// Tests of growing a replica (grow.ts), on the in-memory CrashDir over a real backing file: the old content, the
// snapshots and the unflushed acknowledged writes of a process that died are all there after the growth, the new
// blocks read as zeros and take writes, snapshots, purges and reverts that span the old end; a growth cut short at
// any storage operation (process crash, or power loss after a flush) leaves the old size or the new one, with the
// same content, and a second growing open finishes it. A replica never shrinks.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { LayeredReplica } from './layered.js';
import { decodeCheckpoint, decodeJournalHeader, encodeCheckpoint, encodeJournalHeader } from './map-format.js';
import { CrashDir, randomBackingFile, randomMutation, Rng, testSeed } from './testing.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const KiB = 1024;
const SIZE = 128 * KiB;
const BIG = 3 * SIZE;
const BS = 4096;
const BOOT = 'boot-of-the-test';

const backingFile = (seed: number) => randomBackingFile(seed, SIZE - 12 * KiB, dirs);

function open(dir: CrashDir, size?: number, bootId = BOOT): Promise<LayeredReplica> {
  return LayeredReplica.open(dir.location, { storage: dir, pending: { bootId }, ...(size === undefined ? {} : { size }) });
}

const mutate = randomMutation;

async function content(r: LayeredReplica): Promise<Uint8Array> {
  return new Uint8Array(await r.read(0, r.size));
}

/** A replica of SIZE bytes with writes, a snapshot `a` and more writes on top; `model` is BIG bytes, zero past SIZE. */
async function history(dir: CrashDir, path: string, backing: Uint8Array, rng: Rng): Promise<{ r: LayeredReplica; model: Uint8Array; atA: Uint8Array }> {
  const r = await LayeredReplica.create(dir.location, { name: 'r', size: SIZE, blockSize: BS, backing: { name: 'bi', uuid: 'u', path }, storage: dir, pending: { bootId: BOOT } });
  const model = new Uint8Array(BIG);
  model.set(backing);
  for (let i = 0; i < 15; i++) await mutate(r, model, rng, SIZE);
  await r.snapshot('a');
  const atA = model.slice();
  for (let i = 0; i < 15; i++) await mutate(r, model, rng, SIZE);
  return { r, model, atA };
}

test('a grown replica keeps its content, snapshots and unflushed writes; the new blocks read zeros and take writes', async () => {
  const seed = testSeed();
  const rng = new Rng(seed);
  const { backing, path } = await backingFile(seed);
  const dir = new CrashDir('/grow-model');
  const { r, model, atA } = await history(dir, path, backing, rng);
  // The process dies with writes acknowledged and not flushed: the growing open must keep them (pending log).
  const crashed = dir.processCrashImage();
  await r.close(); // the original, not the image
  const g = await open(crashed, BIG);
  assert.equal(g.size, BIG);
  assert.equal(g.info().size, BIG);
  assert.equal(g.grownFrom, SIZE);
  assert.deepEqual(await content(g), model, `grown (seed ${seed})`);
  const a = await g.control({ op: 'readSnapshot', name: 'a', offset: 0, length: BIG }, new Uint8Array(0));
  assert.deepEqual(new Uint8Array(a.data!), atA.subarray(0, BIG), 'the snapshot from before the growth reads as it was, zeros past its end');

  // Writes anywhere, across the old end too; a snapshot of the grown head; a purge and reverts across sizes.
  for (let i = 0; i < 40; i++) await mutate(g, model, rng, BIG);
  const edge = rng.bytes(3 * BS);
  await g.write(SIZE - BS - 100, edge, { fua: false });
  model.set(edge, SIZE - BS - 100);
  assert.deepEqual(await content(g), model, 'after writes past the old end');
  await g.snapshot('b');
  const atB = model.slice();
  for (let i = 0; i < 10; i++) await mutate(g, model, rng, BIG);
  await g.deleteSnapshot('a');
  assert.deepEqual(await g.purge(), ['a']);
  assert.deepEqual(await content(g), model, 'after purging the small snapshot into the grown one');
  await g.revert('b');
  assert.deepEqual(await content(g), atB, 'revert to the snapshot taken after the growth');
  for (let i = 0; i < 10; i++) await mutate(g, atB, rng, BIG);
  await g.close();

  // Reopened without a size: the grown size; asked to shrink: refused, and the replica is untouched.
  const again = await open(crashed);
  assert.equal(again.size, BIG);
  assert.deepEqual(await content(again), atB);
  await again.close();
  await assert.rejects(open(crashed, SIZE), (err: Error & { code?: string }) => err.code === 'InvalidArgument' && /never shrinks/.test(err.message));
  const same = await open(crashed, BIG);
  assert.deepEqual(await content(same), atB);
  await same.close();
});

/** Crash the growing open at every storage operation; the image opens at the old or new size with the model's content. */
async function crashEverywhere(flush: boolean): Promise<{ total: number; small: number; big: number }> {
  const seed = testSeed();
  const { backing, path } = await backingFile(seed);
  let total = -1;
  let small = 0;
  let big = 0;
  for (let cut = 0; total < 0 || cut <= total; cut++) {
    const rng = new Rng(seed);
    const dir = new CrashDir('/grow-crash');
    const { r, model } = await history(dir, path, backing, rng);
    if (flush) await r.flush();
    const crashed = dir.processCrashImage();
    await r.close(); // the original, not the image
    const from = crashed.ops;
    let image: CrashDir | undefined;
    crashed.beforeOp = (n) => {
      if (n - from === cut && !image) image = flush ? crashed.crashImage(rng) : crashed.processCrashImage();
    };
    const g = await open(crashed, BIG);
    crashed.beforeOp = undefined;
    if (total < 0) total = crashed.ops - from;
    image ??= flush ? crashed.crashImage(rng) : crashed.processCrashImage();
    await g.close();
    // A power loss is a reboot: the pending log of the earlier boot is ignored then (and everything was flushed).
    const boot = flush ? 'the-next-boot' : BOOT;
    const o = await open(image, undefined, boot);
    assert.ok(o.size === SIZE || o.size === BIG, `crash at ${cut}: size ${o.size}`);
    if (o.size === SIZE) small++;
    else big++;
    assert.deepEqual(await content(o), model.subarray(0, o.size), `crash at operation ${cut} of ${total} (seed ${seed})`);
    await o.close();
    const finished = await open(image, BIG, boot);
    assert.equal(finished.size, BIG);
    assert.deepEqual(await content(finished), model, `crash at ${cut}, growth finished`);
    await finished.close();
  }
  return { total, small, big };
}

test('a growth cut short by a process crash at any operation: old or new size, every acknowledged write', async () => {
  const { total, small, big } = await crashEverywhere(false);
  assert.ok(total >= 3, `the growing open did ${total} storage operations`);
  assert.ok(small > 0 && big > 0, `both outcomes seen: ${small} old size, ${big} new size`);
});

test('a growth cut short by a power loss after a flush: old or new size, the flushed content', async () => {
  const { small, big } = await crashEverywhere(true);
  assert.ok(small > 0 && big > 0, `both outcomes seen: ${small} old size, ${big} new size`);
});

test('a map written for fewer blocks reads as padded with UNWRITTEN; one for more blocks is corrupt', () => {
  const states = new Uint8Array([1, 2, 0, 1, 2]);
  const bytes = encodeCheckpoint({ blockSize: BS, blockCount: states.length, generation: 3, nextSeq: 4, revision: 5, states });
  const padded = decodeCheckpoint(bytes, { blockSize: BS, blockCount: 9 });
  assert.equal(padded.blockCount, 9);
  assert.deepEqual([...padded.states], [1, 2, 0, 1, 2, 0, 0, 0, 0]);
  assert.throws(() => decodeCheckpoint(bytes, { blockSize: BS, blockCount: 4 }), (err: Error & { code?: string }) => err.code === 'Corrupt' && /block count 5, the replica has 4/.test(err.message));
  const header = encodeJournalHeader({ blockSize: BS, blockCount: 5, generation: 1 });
  assert.equal(decodeJournalHeader(header, { blockSize: BS, blockCount: 9 }).generation, 1);
  assert.throws(() => decodeJournalHeader(header, { blockSize: BS, blockCount: 4 }), { code: 'Corrupt' });
});
