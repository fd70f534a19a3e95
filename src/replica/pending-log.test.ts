// Tests of the pending map log (pending-log.ts) through ReplicaStore on the in-memory CrashDir: random concurrent
// workloads without flushes, crashed at arbitrary storage operations both ways (a process crash keeps every write,
// a power loss keeps what crashImage allows), checked against a model (testing-model.ts): after a process crash in
// the same boot every acknowledged mutation reads back; after a reboot nothing reads bytes that were never its
// content. Also: a pending file cut at every byte, a damaged record, crashes inside a rotation, no record for
// rewrites of DATA blocks, and the pending log bounded by an internal flush. The real kill -9 is in
// pending-log-kill.test.ts.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PENDING_FILES, PENDING_HEADER } from './pending-format.js';
import { ReplicaStore, type ReplicaStoreOptions } from './store.js';
import { CrashDir, Rng, testSeed } from './testing.js';
import { AckTracker, issueOp, randomOp as randomModelOp, SectorModel, type ModelOp } from './testing-model.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const KiB = 1024;
const SIZE = 128 * KiB;
const BS = 4096;
const BOOT = 'boot-of-the-test';
const REBOOTED = 'boot-after-a-reboot';

async function backingFile(seed: number): Promise<{ backing: Uint8Array; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-pending-'));
  dirs.push(dir);
  const backing = new Rng(seed ^ 0x5eed).bytes(SIZE - 8 * KiB); // random: zeros are never an old value by chance
  const path = join(dir, 'backing.raw');
  await writeFile(path, backing);
  return { backing, path };
}

function initial(backing: Uint8Array): Uint8Array {
  const m = new Uint8Array(SIZE);
  m.set(backing);
  return m;
}

async function create(dir: CrashDir, path: string, extra: Partial<ReplicaStoreOptions> = {}): Promise<ReplicaStore> {
  return ReplicaStore.create(dir.location, { name: 'r', size: SIZE, blockSize: BS, backing: { name: 'bi', uuid: 'u', path }, storage: dir, pending: { bootId: BOOT }, ...extra });
}

/** Open a crash image in boot `bootId`, read it whole, close it. */
async function reopen(image: CrashDir, bootId: string): Promise<{ bytes: Uint8Array; store: ReplicaStore }> {
  const store = await ReplicaStore.open(image.location, { storage: image, pending: { bootId } });
  const bytes = await store.read(0, SIZE);
  await store.close();
  return { bytes, store };
}

const randomOp = (rng: Rng): ModelOp => randomModelOp(rng, SIZE);
const issue = issueOp;

test('fuzz: after a process crash every acknowledged mutation reads back; after a reboot nothing reads garbage', async (t) => {
  const seed = testSeed();
  const rng = new Rng(seed);
  const { backing, path } = await backingFile(seed);
  const dir = new CrashDir('/replica-pending-fuzz');
  // Tiny thresholds, so crashes also land in rotations, internal flushes and journal compactions.
  const store = await create(dir, path, { pending: { bootId: BOOT, rotateBytes: 1 * KiB, maxBytes: 6 * KiB }, journal: { compactBytes: 8 * KiB } });
  const model = new SectorModel(initial(backing));
  const acks = new AckTracker();
  const images: { process: CrashDir; power: CrashDir; acked: Set<number>; durable: Set<number> }[] = [];
  const take = (): void => {
    images.push({ process: dir.processCrashImage(), power: dir.crashImage(rng), ...acks.snapshot() });
  };
  dir.beforeOp = () => {
    if (rng.next() < 0.04) take();
  };
  const stats = { images: 0, applied: 0, records: 0, otherBoot: 0 };
  const check = async (): Promise<void> => {
    const saved = dir.beforeOp;
    dir.beforeOp = undefined;
    for (const im of images.splice(0)) {
      const same = await reopen(im.process, BOOT);
      const pending = same.store.recovery.pending;
      if (pending?.records) stats.applied++;
      stats.records += pending?.records ?? 0;
      const bad = model.firstBad(same.bytes, im.acked);
      assert.equal(bad, undefined, `seed ${seed}: process crash, same boot: ${bad}`);
      // Open made what it applied durable: a power loss right after it (no flush, no close) keeps it all.
      const opened = im.process.processCrashImage();
      const live = await ReplicaStore.open(opened.location, { storage: opened, pending: { bootId: BOOT } });
      const afterOpen = await reopen(opened.crashImage(rng), REBOOTED);
      const badAfterOpen = model.firstBad(afterOpen.bytes, im.acked);
      assert.equal(badAfterOpen, undefined, `seed ${seed}: power loss after the reopen: ${badAfterOpen}`);
      await live.close();
      // A reboot (the same bytes, the page cache written back, but another boot id) and a power loss: at least
      // everything flushed, and nothing that was never written.
      const rebooted = await reopen(im.process, REBOOTED);
      if (rebooted.store.recovery.pending?.otherBoot) stats.otherBoot++;
      const badReboot = model.firstBad(rebooted.bytes, im.durable);
      assert.equal(badReboot, undefined, `seed ${seed}: reboot: ${badReboot}`);
      const power = await reopen(im.power, REBOOTED);
      const badPower = model.firstBad(power.bytes, im.durable);
      assert.equal(badPower, undefined, `seed ${seed}: power loss: ${badPower}`);
      stats.images++;
    }
    dir.beforeOp = saved;
  };
  let next = 0;
  for (let burst = 0; burst < 250; burst++) {
    const calls: Promise<void>[] = [];
    for (let k = 1 + rng.int(12); k > 0; k--) {
      if (rng.int(40) === 0) {
        const done = acks.flushIssued();
        calls.push(store.flush().then(done));
        continue;
      }
      const op = randomOp(rng);
      const n = next++;
      const fua = rng.int(30) === 0;
      model.apply(n, op);
      calls.push(issue(store, op, fua, rng).then(() => acks.ack(n, fua)));
    }
    if (rng.int(4) === 0) take(); // issued, nothing of this burst acknowledged yet
    await Promise.all(calls);
    await check();
  }
  take();
  await check();
  await store.close();
  t.diagnostic(`seed ${seed}: ${stats.images} crash images, ${stats.applied} applied pending records (${stats.records} in all), ${stats.otherBoot} ignored as another boot's`);
  assert.ok(stats.images >= 150, `seed ${seed}: only ${stats.images} crash images`);
  assert.ok(stats.applied >= stats.images / 3, `seed ${seed}: pending records applied in only ${stats.applied} of ${stats.images} images`);
});

/** Sequential writes to blocks never written before (each its own record), no flush; then a process crash. */
async function unflushedBurst(seed: number): Promise<{ image: CrashDir; backing: Uint8Array; ops: ModelOp[]; file: string; ends: number[] }> {
  const { backing, path } = await backingFile(seed);
  const rng = new Rng(seed);
  const dir = new CrashDir('/replica-pending-tail');
  const store = await create(dir, path);
  const ops: ModelOp[] = [];
  const blocks = [...Array(SIZE / BS).keys()].sort(() => rng.next() - 0.5).slice(0, 20);
  const ends: number[] = [];
  let file = '';
  for (const b of blocks) {
    // Partial-block writes too: the merged block must come back whole.
    const within = rng.int(2) === 0 ? 0 : rng.int(BS - 1);
    const op: ModelOp = { kind: 'write', offset: b * BS + within, data: rng.bytes(BS - within) };
    ops.push(op);
    await store.write(op.offset, op.data, { fua: false });
    const newest = await newestPending(dir);
    file = newest.name;
    ends.push(newest.bytes.length);
  }
  const image = dir.processCrashImage();
  await store.close();
  return { image, backing, ops, file, ends };
}

async function newestPending(dir: CrashDir): Promise<{ name: string; bytes: Uint8Array }> {
  const files = await Promise.all(PENDING_FILES.map(async (name) => ({ name, bytes: (await dir.readFile(name)) ?? new Uint8Array(0) })));
  const epoch = (b: Uint8Array): number => (b.length >= PENDING_HEADER ? Buffer.from(b).readUInt32LE(24) : -1);
  return files.reduce((a, b) => (epoch(b.bytes) > epoch(a.bytes) ? b : a));
}

test('a pending file cut anywhere applies exactly the whole records before the cut', async () => {
  const seed = testSeed();
  const { image, backing, ops, file, ends } = await unflushedBurst(seed);
  const full = (await image.readFile(file))!;
  const first = ends[0]! - (ends[1]! - ends[0]!); // end of the epoch's first (empty) record
  for (let cut = first; cut <= full.length; cut++) {
    const copy = image.processCrashImage();
    copy.setFile(file, full.subarray(0, cut));
    const whole = ends.filter((e) => e <= cut).length;
    const { bytes, store } = await reopen(copy, BOOT);
    assert.equal(store.recovery.pending?.records, whole + 1, `seed ${seed}: cut at ${cut}`);
    assert.equal(store.recovery.pending?.tornBytes, cut - (whole > 0 ? ends[whole - 1]! : first), `seed ${seed}: cut at ${cut}`);
    // Exactly the first `whole` writes: kept, and every later one gone (its block reads the backing image again).
    const expected = initial(backing);
    for (const op of ops.slice(0, whole)) if (op.kind === 'write') expected.set(op.data, op.offset);
    assert.ok(Buffer.from(bytes).equals(expected), `seed ${seed}: cut at ${cut}: content differs`);
  }
  // A damaged byte inside the last record drops that record only.
  const damaged = new Uint8Array(full);
  damaged[full.length - 3]! ^= 0x40;
  const copy = image.processCrashImage();
  copy.setFile(file, damaged);
  const { store } = await reopen(copy, BOOT);
  assert.equal(store.recovery.pending?.records, ends.length);
  assert.equal(store.recovery.pending?.tornBytes, full.length - ends[ends.length - 2]!);
});

test('a crash inside a rotation (after the journal commit, before or during the new epoch) loses nothing acknowledged', async (t) => {
  const seed = testSeed();
  const rng = new Rng(seed);
  const { backing, path } = await backingFile(seed);
  const dir = new CrashDir('/replica-pending-rotation');
  const store = await create(dir, path, { pending: { bootId: BOOT, rotateBytes: 256 } });
  const model = new SectorModel(initial(backing));
  const acks = new AckTracker();
  const images: { image: CrashDir; acked: Set<number>; where: string }[] = [];
  let rotating = '';
  let rotated = false;
  dir.beforeOp = (_n, op) => {
    // The rotation truncates the other pending file, then writes its header and first record.
    if (rotated) {
      rotated = false;
      images.push({ image: dir.processCrashImage(), ...acks.snapshot(), where: 'after the rotation' });
    }
    if (op.file.startsWith('pending') && op.kind === 'truncate') {
      rotating = op.file;
      images.push({ image: dir.processCrashImage(), ...acks.snapshot(), where: 'between the commit and the rotation' });
    } else if (op.file === rotating && op.kind === 'write') {
      rotating = '';
      rotated = true;
      images.push({ image: dir.processCrashImage(), ...acks.snapshot(), where: 'with the new file truncated' });
    }
  };
  let next = 0;
  for (let burst = 0; burst < 80; burst++) {
    const calls: Promise<void>[] = [];
    for (let k = 1 + rng.int(8); k > 0; k--) {
      const op = randomOp(rng);
      const n = next++;
      model.apply(n, op);
      calls.push(issue(store, op, false, rng).then(() => acks.ack(n, false)));
    }
    calls.push(store.flush()); // a flush among the writes: changes after its snapshot go into the rotation record
    for (let k = rng.int(4); k > 0; k--) {
      const op = randomOp(rng);
      const n = next++;
      model.apply(n, op);
      calls.push(issue(store, op, false, rng).then(() => acks.ack(n, false)));
    }
    await Promise.all(calls);
  }
  dir.beforeOp = undefined;
  await store.close();
  const where = new Map<string, number>();
  for (const im of images) {
    const { bytes } = await reopen(im.image, BOOT);
    const bad = model.firstBad(bytes, im.acked);
    assert.equal(bad, undefined, `seed ${seed}: crash ${im.where}: ${bad}`);
    where.set(im.where, (where.get(im.where) ?? 0) + 1);
  }
  t.diagnostic(`seed ${seed}: ${[...where].map(([w, n]) => `${n} crashes ${w}`).join(', ')}`);
  assert.ok((where.get('between the commit and the rotation') ?? 0) >= 20, `seed ${seed}: too few rotations`);
  assert.ok((where.get('with the new file truncated') ?? 0) >= 20, `seed ${seed}: too few rotations`);
  assert.ok((where.get('after the rotation') ?? 0) >= 20, `seed ${seed}: too few rotations`);
});

test('rewriting DATA blocks appends no record; a full pending log runs a flush', async () => {
  const { path } = await backingFile(7);
  const dir = new CrashDir('/replica-pending-bound');
  const store = await create(dir, path, { pending: { bootId: BOOT, maxBytes: 1 * KiB } });
  try {
    await store.write(0, new Uint8Array(8 * BS).fill(1), { fua: false });
    const before = store.stats();
    for (let i = 0; i < 50; i++) await store.write((i % 8) * BS + 100, new Uint8Array(500).fill(i), { fua: false });
    assert.equal(store.stats().pendingBytes, before.pendingBytes, 'no record for writes that change no block state');
    const journal = before.journalBytes;
    for (let b = 8; b < 30; b++) await store.trim(b * BS, BS, { fua: false }); // one record each
    await new Promise((r) => setImmediate(r));
    await store.flush(); // waits for the internal flush the full log started
    assert.ok(store.stats().journalBytes > journal, 'the full pending log made the map durable');
    assert.ok(store.stats().pendingBytes < 1 * KiB, `the pending log rotated (${store.stats().pendingBytes} bytes)`);
  } finally {
    await store.close();
  }
});
