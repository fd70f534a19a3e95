// The engine's clone over in-process replicas (real LayeredReplicas behind ReplicaServers) on one backing image: a
// source volume is written (data, and zeros over the image's data), snapshotted, written again; a new engine over
// two fresh replicas clones the snapshot through its control surface (EngineControl.startClone) while the source
// keeps taking writes, and reads back exactly the model at the snapshot on every replica. Only what the snapshot's
// layers wrote lands in the clone's replicas (the backing image is not copied). A snapshot that does not exist fails
// the clone with a message naming it.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { EngineControl } from './control.js';
import { Engine } from './engine.js';
import type { CloneProgress } from './clone.js';
import { Fixture, firstDifference, Rng, testSeed } from './testing.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const fixtures: Fixture[] = [];
after(async () => {
  for (const f of fixtures) await f.cleanup();
});

async function settled(control: EngineControl): Promise<CloneProgress> {
  for (let i = 0; i < 1000; i++) {
    const p = control.cloneStatus();
    if (p.state !== 'in-progress') return p;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail('the clone did not finish');
}

test('clone of a snapshot: exactly the model at the snapshot on every replica, written data only, source I/O goes on', async () => {
  const seed = testSeed();
  const fx = await Fixture.create(8 * MiB, 6 * MiB, seed);
  fixtures.push(fx);
  const rng = new Rng(seed);
  const src = await fx.replica('src');
  const source = await Engine.start({ volume: 'src', replicas: [{ name: 'src', backend: await src.connect(5000) }], pingIntervalMs: 0 });
  const model = fx.initialModel();
  let written = 0;
  for (let i = 0; i < 40; i++) {
    const off = rng.int(fx.size / 4096 - 8) * 4096;
    const data = rng.bytes((1 + rng.int(8)) * 4096);
    await source.write(off, data, { fua: false });
    model.set(data, off);
    written += data.length;
  }
  // Zeros over the backing image's data: the clone must read zeros there too, not the image.
  await source.writeZeroes(MiB, 64 * KiB, { fua: false });
  model.fill(0, MiB, MiB + 64 * KiB);
  await source.snapshotCreate({ name: 's1' });
  const atSnap = Uint8Array.from(model);

  const c1 = await fx.replica('c1');
  const c2 = await fx.replica('c2');
  const clone = await Engine.start({ volume: 'clone', replicas: [{ name: 'c1', backend: await c1.connect(5000) }, { name: 'c2', backend: await c2.connect(5000) }], pingIntervalMs: 0 });
  const control = new EngineControl(clone, { connectReplica: async () => src.connect(5000) });
  const started = control.startClone({ sourceVolume: 'src', snapshot: 's1', sourceSize: fx.size, replicaName: 'src', replicaAddress: `127.0.0.1:${src.port}` });
  assert.equal(started.state, 'in-progress');
  // The source keeps taking writes meanwhile (after the snapshot: not in the clone).
  for (let i = 0; i < 20; i++) await source.write(rng.int(fx.size / 4096 - 1) * 4096, rng.bytes(4096), { fua: false });
  const done = await settled(control);
  assert.equal(done.state, 'completed', done.error);
  assert.ok(done.bytesCopied <= written + 64 * KiB, `copied ${done.bytesCopied} bytes; the layers wrote at most ${written + 64 * KiB}`);
  // Asked again: answered as is, not restarted.
  assert.equal(control.startClone({ sourceVolume: 'src', snapshot: 's1', sourceSize: fx.size, replicaName: 'src', replicaAddress: 'x:1' }).state, 'completed');
  for (const r of [c1, c2]) {
    const got = await r.store.read(0, fx.size);
    assert.equal(firstDifference(got, atSnap), -1, `replica ${r.name} reads the model at the snapshot`);
    // The zeros over the image's data are held too (they hide the image): the written data plus that 64 KiB at most.
    const held = r.store.listSnapshots().find((s) => s.name === 'volume-head')!.size;
    assert.ok(held <= written + 64 * KiB, `replica ${r.name} holds ${held} bytes: the written data only (${written} + 64 KiB of zeros at most; seed ${seed})`);
  }
  await clone.close();
  await source.close();
});

test('clone of a snapshot that does not exist fails, naming it; a retry with the right name completes', async () => {
  const seed = testSeed();
  const fx = await Fixture.create(4 * MiB, 2 * MiB, seed);
  fixtures.push(fx);
  const src = await fx.replica('src');
  const source = await Engine.start({ volume: 'src', replicas: [{ name: 'src', backend: await src.connect(5000) }], pingIntervalMs: 0 });
  await source.write(0, new Uint8Array(4096).fill(7), { fua: false });
  await source.snapshotCreate({ name: 'real' });
  const c1 = await fx.replica('c1');
  const clone = await Engine.start({ volume: 'clone', replicas: [{ name: 'c1', backend: await c1.connect(5000) }], pingIntervalMs: 0 });
  const control = new EngineControl(clone, { connectReplica: async () => src.connect(5000) });
  assert.throws(() => control.cloneStatus(), /no clone was started/);
  assert.throws(() => control.startClone({ sourceVolume: 'src', snapshot: 'x', sourceSize: 8 * MiB, replicaName: 'src', replicaAddress: 'a:1' }), /larger than volume/);
  control.startClone({ sourceVolume: 'src', snapshot: 'nope', sourceSize: fx.size, replicaName: 'src', replicaAddress: 'a:1' });
  const failed = await settled(control);
  assert.equal(failed.state, 'failed');
  assert.match(failed.error ?? '', /snapshot nope of volume src/);
  control.startClone({ sourceVolume: 'src', snapshot: 'real', sourceSize: fx.size, replicaName: 'src', replicaAddress: 'a:1' });
  assert.equal((await settled(control)).state, 'completed');
  assert.deepEqual([...(await c1.store.read(0, 4096))].every((b) => b === 7), true);
  await clone.close();
  await source.close();
});
