// Tests of snapshots through the engine over in-process replicas (real LayeredReplicas behind ReplicaServers): a
// snapshot taken while writes are in flight is the same on every replica (crash-consistent across them); write,
// snapshot, write, snapshot, write with a rebuild in the middle: the rebuilt replica has every snapshot, each
// revert reads as the model on every replica, and delete + purge keep the content; snapshot operations are refused
// while a replica is being rebuilt.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from './engine.js';
import { isEngineError } from './errors.js';
import { Fixture, firstDifference, Rng, testSeed, type TestReplica } from './testing.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const fixtures: Fixture[] = [];
after(async () => {
  for (const f of fixtures) await f.cleanup();
});

async function start(fx: Fixture, reps: TestReplica[]): Promise<Engine> {
  return Engine.start({ volume: 'vol', replicas: await Promise.all(reps.map(async (r) => ({ name: r.name, backend: await r.connect(5000) }))), pingIntervalMs: 0, rebuildChunkBytes: 64 * KiB });
}

async function writes(engine: Engine, model: Uint8Array, rng: Rng, n: number): Promise<void> {
  const size = model.length;
  for (let i = 0; i < n; i++) {
    const off = rng.int(size - 16 * KiB);
    if (i % 9 === 8) {
      await engine.writeZeroes(off, 8 * KiB, { fua: false });
      model.fill(0, off, off + 8 * KiB);
    } else {
      const data = rng.bytes(1 + rng.int(16 * KiB));
      await engine.write(off, data, { fua: false });
      model.set(data, off);
    }
  }
}

test('snapshot chain with a rebuild in the middle: every replica has every snapshot; revert, delete, purge match the model', async () => {
  const seed = testSeed();
  const fx = await Fixture.create(8 * MiB, 6 * MiB, seed);
  fixtures.push(fx);
  const rng = new Rng(seed);
  const r1 = await fx.replica('r1');
  const r2 = await fx.replica('r2');
  const engine = await start(fx, [r1, r2]);
  const model = fx.initialModel();
  const at: Record<string, Uint8Array> = {};

  await writes(engine, model, rng, 60);
  assert.equal(await engine.snapshotCreate({ name: 'snap-1' }), 'snap-1');
  at['snap-1'] = model.slice();
  await writes(engine, model, rng, 60);

  // Rebuild r3 now: it must get snap-1 (its written extents, not the backing image) and the head.
  const r3 = await fx.replica('r3');
  await engine.addReplica('r3', await r3.connect(5000));
  await assert.rejects(engine.snapshotCreate({ name: 'refused' }), (err: unknown) => isEngineError(err, 'RebuildRunning'));
  const status = await engine.rebuild('r3');
  assert.equal(status.snapshots, 1);
  assert.ok(status.bytesCopied < 3 * MiB, `only written extents are copied (${status.bytesCopied} bytes)`);
  assert.deepEqual(engine.status().replicas.map((r) => r.mode), ['RW', 'RW', 'RW']);

  // A snapshot with writes in flight: every replica's snapshot reads the same.
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < 40; i++) {
    const off = rng.int(fx.size - 4 * KiB);
    const data = rng.bytes(4 * KiB);
    model.set(data, off);
    inflight.push(engine.write(off, data, { fua: false }));
  }
  const snapping = engine.snapshotCreate({ name: 'snap-2' });
  await Promise.all(inflight);
  await snapping;
  await writes(engine, model, rng, 60);
  const reps = [r1, r2, r3];
  const views = await Promise.all(reps.map(async (r) => Buffer.from(await readSnapshot(r, 'snap-2', fx.size))));
  assert.ok(views[0]!.equals(views[1]!) && views[0]!.equals(views[2]!), 'snap-2 is the same on every replica');
  at['snap-2'] = new Uint8Array(views[0]!);

  const list = await engine.snapshotList();
  assert.deepEqual(list.map((s) => [s.name, s.parent]), [['snap-1', ''], ['snap-2', 'snap-1'], ['volume-head', 'snap-2']]);
  for (const r of reps) assert.deepEqual(r.store.listSnapshots().map((s) => s.name), ['snap-1', 'snap-2', 'volume-head'], `${r.name} has the chain`);
  assert.equal(firstDifference(await engine.read(0, fx.size), model), -1, `seed ${seed}: the head`);

  for (const name of ['snap-2', 'snap-1']) {
    await engine.snapshotRevert(name);
    for (const r of reps) assert.equal(firstDifference(await r.store.read(0, fx.size), at[name]!), -1, `seed ${seed}: ${r.name} reverted to ${name}`);
  }
  // On snap-1 again; writes; delete snap-1 (two children: snap-2 and the head) and snap-2 (none: goes at once).
  const live = at['snap-1']!.slice();
  await writes(engine, live, rng, 30);
  await engine.snapshotDelete('snap-1');
  assert.equal((await engine.snapshotList()).find((s) => s.name === 'snap-1')?.removed, true);
  assert.deepEqual(await engine.snapshotPurge(), []);
  await engine.snapshotDelete('snap-2');
  assert.deepEqual(await engine.snapshotPurge(), ['snap-1']);
  assert.deepEqual((await engine.snapshotList()).map((s) => s.name), ['volume-head']);
  for (const r of reps) assert.equal(firstDifference(await r.store.read(0, fx.size), live), -1, `seed ${seed}: ${r.name} after the purge`);
  await assert.rejects(engine.snapshotRevert('snap-2'), (err: unknown) => isEngineError(err, 'SnapshotUnknown'));
  await engine.close();
});

async function readSnapshot(r: TestReplica, name: string, size: number): Promise<Uint8Array> {
  const buf = new Uint8Array(size);
  await r.store.snapshotReader(name).read(buf, 0);
  return buf;
}

test('snapshots taken and deleted again and again (exports, clones) keep a short chain: a removed one is merged into the next snapshot', async () => {
  const seed = testSeed();
  const fx = await Fixture.create(4 * MiB, 3 * MiB, seed);
  fixtures.push(fx);
  const rng = new Rng(seed);
  const reps = [await fx.replica('r1'), await fx.replica('r2')];
  const lines: string[] = [];
  const engine = await Engine.start({ volume: 'vol', replicas: await Promise.all(reps.map(async (r) => ({ name: r.name, backend: await r.connect(5000) }))), pingIntervalMs: 0, log: (l) => lines.push(l) });
  const model = fx.initialModel();
  for (let i = 1; i <= 5; i++) {
    await writes(engine, model, rng, 20);
    await engine.snapshotCreate({ name: `sys-${i}`, userCreated: false });
    await writes(engine, model, rng, 20);
    // Deleted under the head: only marked removed. The next snapshot gives it a child it can be merged into.
    await engine.snapshotDelete(`sys-${i}`);
    const names = await waitForChain(engine, [`sys-${i}`, 'volume-head']);
    assert.deepEqual(names, [`sys-${i}`, 'volume-head'], `after round ${i}`);
    for (const r of reps) assert.equal(firstDifference(await r.store.read(0, fx.size), model), -1, `seed ${seed}: ${r.name} after round ${i}`);
  }
  for (const r of reps) assert.deepEqual(r.store.listSnapshots().map((s) => [s.name, s.removed]), [['sys-5', true], ['volume-head', false]], r.name);
  assert.ok(lines.some((l) => /merged removed snapshot sys-4 into its child snapshot/.test(l)), lines.join('\n'));
  // A user's explicit purge still merges into the head.
  assert.deepEqual(await engine.snapshotPurge(), ['sys-5']);
  for (const r of reps) assert.equal(firstDifference(await r.store.read(0, fx.size), model), -1, `seed ${seed}: ${r.name} after the purge`);
  await engine.close();
});

/** The chain's names once the tidy-up queued behind the last operation has run (it is never waited for). */
async function waitForChain(engine: Engine, want: string[]): Promise<string[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const names = (await engine.snapshotList()).map((s) => s.name);
    if (JSON.stringify(names) === JSON.stringify(want) || Date.now() > deadline) return names;
    await new Promise((r) => setTimeout(r, 20));
  }
}
