// Tests of snapshots in a replica (layered.ts) on the in-memory CrashDir over a real backing file: a chain of
// snapshots checked against a model (reads, revert to each, delete and purge into a snapshot and into the head),
// and crashes at every storage operation of a snapshot, a revert and a purge, both as a process crash (every
// acknowledged write must read back, unflushed) and as a power loss after a flush: the reopened replica has the old
// chain or the new one and the model's content either way.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { LayeredReplica } from './layered.js';
import { CrashDir, randomBackingFile, randomMutation, Rng, testSeed } from './testing.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const KiB = 1024;
const SIZE = 256 * KiB;
const BS = 4096;
const BOOT = 'boot-of-the-test';

const backingFile = (seed: number) => randomBackingFile(seed, SIZE - 16 * KiB, dirs);

function create(dir: CrashDir, path: string): Promise<LayeredReplica> {
  return LayeredReplica.create(dir.location, { name: 'r', size: SIZE, blockSize: BS, backing: { name: 'bi', uuid: 'u', path }, storage: dir, pending: { bootId: BOOT } });
}

/** A power loss is a reboot: the pending map log of the earlier boot is ignored then (pending-log.ts). */
function open(dir: CrashDir, bootId = BOOT): Promise<LayeredReplica> {
  return LayeredReplica.open(dir.location, { storage: dir, pending: { bootId } });
}

const mutate = (r: LayeredReplica, model: Uint8Array, rng: Rng) => randomMutation(r, model, rng, SIZE);

async function content(r: LayeredReplica): Promise<Uint8Array> {
  return new Uint8Array(await r.read(0, SIZE));
}

test('a chain of snapshots: reads, revert to each, delete and purge match the model', async () => {
  const seed = testSeed();
  const rng = new Rng(seed);
  const { backing, path } = await backingFile(seed);
  const dir = new CrashDir('/layered-model');
  const r = await create(dir, path);
  const model = new Uint8Array(SIZE);
  model.set(backing);
  const at: Record<string, Uint8Array> = {};
  for (const name of ['s1', 's2', 's3']) {
    for (let i = 0; i < 20; i++) await mutate(r, model, rng);
    assert.deepEqual(await content(r), model, `before ${name} (seed ${seed})`);
    assert.equal(await r.snapshot(name), name);
    at[name] = model.slice();
    assert.deepEqual(await content(r), model, `after ${name}`);
  }
  for (let i = 0; i < 20; i++) await mutate(r, model, rng);
  const list = r.listSnapshots();
  assert.deepEqual(list.map((s) => [s.name, s.parent, s.children]), [['s1', '', ['s2']], ['s2', 's1', ['s3']], ['s3', 's2', ['volume-head']], ['volume-head', 's3', []]]);
  assert.ok(list[0]!.size > 0);
  await assert.rejects(r.snapshot('s1'), { code: 'AlreadyExists' });
  // CONTROL reads are bounded like READ and stay inside the volume; a snapshot reads as the model did then.
  await assert.rejects(r.control({ op: 'readSnapshot', name: 's1', offset: 0, length: SIZE + BS }, new Uint8Array(0)), { code: 'OutOfRange' });
  const s2 = await r.control({ op: 'readSnapshot', name: 's2', offset: 0, length: SIZE }, new Uint8Array(0));
  assert.deepEqual(new Uint8Array(s2.data!), at['s2']);

  // Reopened: the same chain and content.
  await r.close();
  let o = await open(dir);
  assert.deepEqual(await content(o), model);
  assert.equal(o.listSnapshots().length, 4);

  // Revert to each snapshot, newest first; the content is the snapshot's, and the chain keeps every snapshot.
  for (const name of ['s3', 's2', 's1']) {
    await o.revert(name);
    assert.deepEqual(await content(o), at[name], `revert to ${name}`);
  }
  assert.deepEqual(o.listSnapshots().map((s) => s.name), ['s1', 's2', 's3', 'volume-head']);
  // Back on s3 for the purge checks; write on top.
  await o.revert('s3');
  const live = at['s3']!.slice();
  for (let i = 0; i < 10; i++) await mutate(o, live, rng);

  // s3 has the head on it, s2 has s3, s1 has s2: all are only marked removed.
  await o.deleteSnapshot('s2');
  assert.equal(o.listSnapshots().find((s) => s.name === 's2')!.removed, true);
  assert.deepEqual(await content(o), live);
  const merged = await o.purge();
  assert.deepEqual(merged, ['s2']);
  assert.deepEqual(o.listSnapshots().map((s) => [s.name, s.parent]), [['s1', ''], ['s3', 's1'], ['volume-head', 's3']]);
  assert.deepEqual(await content(o), live, 'after purging s2 into s3');
  await o.revert('s3');
  assert.deepEqual(await content(o), at['s3'], 's3 still reads as it was after s2 merged into it');
  await o.revert('s1');
  assert.deepEqual(await content(o), at['s1']);

  // Into the head: the head sits on s1 now, and so does s3 (two children: s1 cannot be merged).
  const head = at['s1']!.slice();
  for (let i = 0; i < 10; i++) await mutate(o, head, rng);
  await o.deleteSnapshot('s1');
  assert.deepEqual(await o.purge(), []);
  // A snapshot without children goes at once; then s1 has one child, the head, and merges into it.
  await o.deleteSnapshot('s3');
  assert.deepEqual(o.listSnapshots().map((s) => s.name), ['s1', 'volume-head']);
  assert.deepEqual(await o.purge(), ['s1']);
  assert.deepEqual(o.listSnapshots().map((s) => [s.name, s.parent]), [['volume-head', '']]);
  assert.deepEqual(await content(o), head, 'after purging s1 into the head');
  await o.close();
  o = await open(dir);
  assert.deepEqual(await content(o), head);
  await o.close();
});

type Step = (r: LayeredReplica) => Promise<unknown>;

/**
 * Crash the replica at every storage operation of `step` (run after `setup`), as a process crash and, after a
 * flush, as a power loss; every image must open with the content of the model either before or after the step
 * (`before` and `after` give them; the head's content never changes in snapshot and purge).
 */
async function crashEverywhere(name: string, setup: (r: LayeredReplica, model: Uint8Array, rng: Rng) => Promise<void>, step: Step, expect: { before: (m: Uint8Array) => Uint8Array; after: (m: Uint8Array) => Uint8Array; flush: boolean }): Promise<number> {
  const seed = testSeed();
  const { backing, path } = await backingFile(seed);
  // A dry run counts the operations of the step.
  let total = 0;
  {
    const dir = new CrashDir(`/layered-${name}`);
    const r = await create(dir, path);
    const model = new Uint8Array(SIZE);
    model.set(backing);
    await setup(r, model, new Rng(seed));
    if (expect.flush) await r.flush();
    const from = dir.ops;
    await step(r);
    total = dir.ops - from;
    await r.close();
  }
  for (let cut = 0; cut <= total; cut++) {
    const rng = new Rng(seed);
    const dir = new CrashDir(`/layered-${name}`);
    const r = await create(dir, path);
    const model = new Uint8Array(SIZE);
    model.set(backing);
    await setup(r, model, rng);
    if (expect.flush) await r.flush();
    const from = dir.ops;
    let image: CrashDir | undefined;
    dir.beforeOp = (n) => {
      if (n - from === cut && !image) image = expect.flush ? dir.crashImage(rng) : dir.processCrashImage();
    };
    await step(r);
    image ??= expect.flush ? dir.crashImage(rng) : dir.processCrashImage();
    await r.close();
    const o = await open(image, expect.flush ? 'boot-after-a-power-loss' : BOOT);
    const got = await content(o);
    const ok = Buffer.from(got).equals(Buffer.from(expect.before(model))) || Buffer.from(got).equals(Buffer.from(expect.after(model)));
    assert.ok(ok, `${name}: crash at operation ${cut} of ${total} reads neither the content before nor after (seed ${seed})`);
    // The chain is whole: every snapshot listed reads (revert to it works) and the head takes writes.
    await o.write(0, new Uint8Array(BS).fill(7), { fua: true });
    await o.close();
  }
  return total;
}

async function history(r: LayeredReplica, model: Uint8Array, rng: Rng): Promise<void> {
  for (const s of ['a', 'b']) {
    for (let i = 0; i < 12; i++) await mutate(r, model, rng);
    await r.snapshot(s);
  }
  for (let i = 0; i < 12; i++) await mutate(r, model, rng);
}

test('crash at every operation of a snapshot: acknowledged unflushed writes survive a process crash', async () => {
  const n = await crashEverywhere('snapshot', history, (r) => r.snapshot('c'), { before: (m) => m, after: (m) => m, flush: false });
  assert.ok(n > 3);
});

test('crash at every operation of a purge into a snapshot and into the head (power loss after a flush)', async () => {
  const setup = async (r: LayeredReplica, m: Uint8Array, rng: Rng) => {
    await history(r, m, rng);
    await r.deleteSnapshot('a');
    await r.deleteSnapshot('b');
  };
  const n = await crashEverywhere('purge', setup, (r) => r.purge(), { before: (m) => m, after: (m) => m, flush: true });
  assert.ok(n > 3);
});

test('crash at every operation of a revert: the old head or the snapshot, nothing else', async () => {
  let atA: Uint8Array | undefined;
  const setup = async (r: LayeredReplica, m: Uint8Array, rng: Rng) => {
    for (let i = 0; i < 12; i++) await mutate(r, m, rng);
    await r.snapshot('a');
    atA = m.slice();
    for (let i = 0; i < 12; i++) await mutate(r, m, rng);
  };
  const n = await crashEverywhere('revert', setup, (r) => r.revert('a'), { before: (m) => m, after: () => atA!, flush: true });
  assert.ok(n > 3);
});
