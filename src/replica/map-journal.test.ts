// Crash-consistency tests of the written-block map. A random workload runs on a replica whose directory is a
// CrashDir; at arbitrary storage operations the test takes crash images (durable bytes plus any subset of the
// unsynced writes, some torn), opens each one, and checks every 512-byte sector: it must hold either what it held
// at the last completed flush or something written after it — never the sparse head's zeros behind a map entry, and
// never lose a flushed write. Then: the journal truncated at every sector and inside batches, damage in the middle
// of the journal, a stale journal next to a newer checkpoint, and checkpoint corruption.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockState } from './block-map.js';
import { isReplicaError } from './errors.js';
import { CHECKPOINT_FILE, decodeCheckpoint, encodeBatch, encodeJournalHeader, JOURNAL_FILE } from './map-format.js';
import { ReplicaStore } from './store.js';
import { CrashDir, Rng, testSeed } from './testing.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const KiB = 1024;
const SIZE = 128 * KiB;
const BS = 4096;
/**
 * A crash image here models a power cut, after which the machine boots with another boot id: the pending map log
 * (pending-log.ts, which only covers process crashes) must be ignored, so these tests see the journal alone.
 */
const BEFORE = { bootId: 'boot-before-the-crash' };
const AFTER = { bootId: 'boot-after-the-crash' };

async function setup(seed: number): Promise<{ backing: Uint8Array; backingPath: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-replica-crash-'));
  dirs.push(dir);
  const backing = new Rng(seed ^ 0x5eed).bytes(SIZE - 8 * KiB); // random, so zeros are never a valid old value
  const backingPath = join(dir, 'backing.raw');
  await writeFile(backingPath, backing);
  return { backing, backingPath };
}

function initialContent(backing: Uint8Array): Uint8Array {
  const m = new Uint8Array(SIZE);
  m.set(backing);
  return m;
}

/** Sector s of `got` must equal sector s of one of `allowed`. Returns the first bad sector, or -1. */
function badSector(got: Uint8Array, allowed: readonly Uint8Array[]): number {
  for (let s = 0; s < SIZE; s += 512) {
    const g = got.subarray(s, s + 512);
    if (!allowed.some((a) => Buffer.compare(g, a.subarray(s, s + 512)) === 0)) return s;
  }
  return -1;
}

async function contentOf(storage: CrashDir): Promise<{ bytes: Uint8Array; store: ReplicaStore }> {
  const store = await ReplicaStore.open(storage.location, { storage, pending: AFTER });
  return { bytes: await store.read(0, SIZE), store };
}

test('crash at arbitrary points: the map never claims unwritten data and flushed writes survive', async (t) => {
  const seed = testSeed();
  const { backing, backingPath } = await setup(seed);
  const rng = new Rng(seed);
  const dir = new CrashDir('/replica-under-test');
  // A tiny compaction threshold so crashes also land inside checkpoint/journal replacement.
  const store = await ReplicaStore.create(dir.location, { name: 'r', size: SIZE, blockSize: BS, backing: { name: 'bi', uuid: 'u', path: backingPath }, storage: dir, journal: { compactBytes: 8 * KiB }, pending: BEFORE });
  let model = initialContent(backing);
  /** Content after each op since the last completed flush (index 0: as of that flush). */
  let since: Uint8Array[] = [model];
  let pendingImages: CrashDir[] = [];
  dir.beforeOp = () => {
    if (rng.next() < 0.15) pendingImages.push(dir.crashImage(rng));
  };
  let checked = 0;
  let torn = 0;
  let replayedBatches = 0;
  const check = async (allowed: Uint8Array[]): Promise<void> => {
    const images = pendingImages;
    pendingImages = [];
    const saved = dir.beforeOp;
    dir.beforeOp = undefined;
    for (const image of images) {
      const { bytes, store: s } = await contentOf(image);
      if (s.recovery.tornBytes > 0) torn++;
      replayedBatches += s.recovery.batches;
      await s.close();
      const bad = badSector(bytes, allowed);
      assert.equal(bad, -1, `seed ${seed}: sector at ${bad} holds bytes that were never its content after the last flush`);
      checked++;
    }
    dir.beforeOp = saved;
  };
  for (let i = 0; i < 1500; i++) {
    const kind = rng.int(10);
    const off = rng.int(SIZE - 1);
    const len = 1 + rng.int(Math.min(12 * KiB, SIZE - off));
    let flushed = false;
    model = new Uint8Array(model);
    if (kind < 6) {
      const data = rng.bytes(len);
      const fua = kind === 0;
      await store.write(off, data, { fua });
      model.set(data, off);
      flushed = fua;
    } else if (kind < 8) {
      await (kind === 6 ? store.trim(off, len, { fua: false }) : store.writeZeroes(off, len, { fua: false }));
      model.fill(0, off, off + len);
    } else {
      await store.flush();
      flushed = true;
    }
    since.push(model);
    await check(since); // images taken during this op may hold anything from the last flush up to its result
    if (flushed) since = [model];
  }
  await store.flush();
  const final = await contentOf(dir.crashImage(rng));
  await final.store.close();
  assert.equal(badSector(final.bytes, [model]), -1, `seed ${seed}: after the last flush the content is exact`);
  await store.close();
  assert.ok(checked >= 200, `seed ${seed}: only ${checked} crash images checked`);
  assert.ok(replayedBatches > 0, `seed ${seed}: no crash image replayed a journal batch`);
  // Torn tails are rare here (the window is one storage operation); the truncation test below covers them all.
  t.diagnostic(`seed ${seed}: ${checked} crash images, ${replayedBatches} batches replayed, ${torn} torn journal tails`);
});

/** The map as a string of state digits, from the store's extent listing. */
function mapString(store: ReplicaStore): string {
  const states = new Array<number>(SIZE / BS).fill(BlockState.UNWRITTEN);
  for (const e of store.writtenExtents({ maxExtents: 1 << 16 }).extents) {
    for (let b = e.offset / BS; b < (e.offset + e.length) / BS; b++) states[b] = e.state === 'data' ? 1 : 2;
  }
  return states.join('');
}

async function journaledWorkload(seed: number): Promise<{ dir: CrashDir; byLength: Map<number, string>; journal: Uint8Array }> {
  const { backingPath } = await setup(seed);
  const rng = new Rng(seed);
  const dir = new CrashDir('/replica-journal');
  const store = await ReplicaStore.create(dir.location, { name: 'r', size: SIZE, blockSize: BS, backing: { name: 'bi', uuid: 'u', path: backingPath }, storage: dir, pending: BEFORE });
  const byLength = new Map<number, string>([[512, mapString(store)]]);
  for (let i = 0; i < 60; i++) {
    const off = rng.int(SIZE - 1);
    const len = 1 + rng.int(Math.min(16 * KiB, SIZE - off));
    if (rng.int(3) === 0) await store.trim(off, len, { fua: false });
    else await store.write(off, rng.bytes(len), { fua: false });
    if (rng.int(3) === 0) {
      await store.flush();
      byLength.set((await dir.readFile(JOURNAL_FILE))!.length, mapString(store));
    }
  }
  await store.flush();
  byLength.set((await dir.readFile(JOURNAL_FILE))!.length, mapString(store));
  const journal = (await dir.readFile(JOURNAL_FILE))!;
  // Leave the files as they are at this point (close would compact them away).
  const frozen = dir.crashImage(new Rng(0));
  for (const name of [JOURNAL_FILE, CHECKPOINT_FILE, 'head.img', 'replica.json']) frozen.setFile(name, (await dir.readFile(name))!);
  await store.close();
  return { dir: frozen, byLength, journal };
}

async function openWithJournal(base: CrashDir, journal: Uint8Array): Promise<ReplicaStore> {
  const copy = base.crashImage(new Rng(0)); // all files durable: an exact copy
  copy.setFile(JOURNAL_FILE, journal);
  return ReplicaStore.open(copy.location, { storage: copy, pending: AFTER });
}

test('a journal truncated anywhere replays exactly the whole batches before the cut', async () => {
  const seed = testSeed();
  const { dir, byLength, journal } = await journaledWorkload(seed);
  const lengths = [...byLength.keys()].sort((a, b) => a - b);
  assert.ok(lengths.length >= 5, `seed ${seed}: only ${lengths.length} batches`);
  const rng = new Rng(seed);
  const cuts = new Set<number>();
  for (let t = 512; t <= journal.length; t += 512) cuts.add(t);
  for (let i = 0; i < 40; i++) cuts.add(512 + rng.int(journal.length - 512));
  for (const t of cuts) {
    const store = await openWithJournal(dir, journal.subarray(0, t));
    const whole = lengths.filter((l) => l <= t).pop()!;
    assert.equal(mapString(store), byLength.get(whole), `seed ${seed}: cut at ${t}`);
    assert.equal(store.recovery.tornBytes, t - whole, `seed ${seed}: cut at ${t}`);
    await store.close();
  }
});

test('damage inside the journal before a later valid batch is refused with its byte offset', async () => {
  const { dir, byLength, journal } = await journaledWorkload(testSeed());
  const lengths = [...byLength.keys()].sort((a, b) => a - b);
  const secondBatch = lengths[1]!; // start of the second batch
  const damaged = new Uint8Array(journal);
  // Inside its revision field: covered by the checksum in every batch, also one with no entries (a flush that only
  // advanced the revision), where an entry offset would land in uncovered padding.
  damaged[secondBatch + 16]! ^= 0xff;
  await assert.rejects(openWithJournal(dir, damaged), (err) => {
    assert.ok(isReplicaError(err, 'Corrupt'), String(err));
    assert.equal(err.file, JOURNAL_FILE);
    assert.equal(err.offset, secondBatch + 28, 'points at the batch checksum');
    return true;
  });
});

test('a journal from an older generation is ignored; a damaged checkpoint is refused', async () => {
  const { dir, journal } = await journaledWorkload(testSeed());
  const ckpt = decodeCheckpoint((await dir.readFile(CHECKPOINT_FILE))!, { blockSize: BS, blockCount: SIZE / BS });
  const before = await openWithJournal(dir, encodeJournalHeader({ blockSize: BS, blockCount: SIZE / BS, generation: ckpt.generation }));
  const checkpointOnly = mapString(before);
  await before.close();
  // Batches that claim the whole volume, in a journal of the previous generation: must not be replayed.
  const stale = Buffer.concat([
    encodeJournalHeader({ blockSize: BS, blockCount: SIZE / BS, generation: ckpt.generation - 1 }),
    encodeBatch({ seq: ckpt.nextSeq, revision: 99, runs: [{ start: 0, count: SIZE / BS, state: BlockState.ZERO }] }),
  ]);
  const store = await openWithJournal(dir, stale);
  assert.equal(store.recovery.staleJournal, true);
  assert.equal(mapString(store), checkpointOnly);
  await store.close();
  assert.ok(journal.length > 512);

  const bad = (await dir.readFile(CHECKPOINT_FILE))!;
  bad[70]! ^= 1;
  const copy = dir.crashImage(new Rng(0));
  copy.setFile(CHECKPOINT_FILE, bad);
  await assert.rejects(ReplicaStore.open(copy.location, { storage: copy, pending: AFTER }), (err) => isReplicaError(err, 'Corrupt') && err.file === CHECKPOINT_FILE && err.offset === 60);
});
