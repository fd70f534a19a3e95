// Tests of rebuild over in-process replicas: only written extents are copied (never the backing image) while
// frontend writes keep landing on the new replica, with a slowed source so copies and writes interleave; the rebuilt
// replica alone then serves the exact volume. Also: a source that fails mid-rebuild is replaced, and a target that
// dies fails the rebuild without disturbing the volume.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from './engine.js';
import { isEngineError } from './errors.js';
import { Fixture, firstDifference, Rng, testSeed } from './testing.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const fixtures: Fixture[] = [];
after(async () => {
  for (const f of fixtures) await f.cleanup();
});

async function setup(seed: number): Promise<{ fx: Fixture; engine: Engine; model: Uint8Array; rng: Rng; offsets: number[] }> {
  const fx = await Fixture.create(32 * MiB, 24 * MiB, seed);
  fixtures.push(fx);
  const reps = [await fx.replica('r1'), await fx.replica('r2')];
  const engine = await Engine.start({
    volume: 'vol',
    replicas: await Promise.all(reps.map(async (r) => ({ name: r.name, backend: await r.connect() }))),
    pingIntervalMs: 0,
    rebuildChunkBytes: 64 * KiB,
  });
  const model = fx.initialModel();
  const rng = new Rng(seed);
  // A little written data, scattered: 300 writes of up to 8 KiB and some trims, about 1.5 MiB of 32.
  const offsets: number[] = [];
  for (let i = 0; i < 300; i++) {
    const off = rng.int(fx.size - 8 * KiB);
    offsets.push(off);
    if (i % 10 === 9) {
      await engine.trim(off, 8 * KiB, { fua: false });
      model.fill(0, off, off + 8 * KiB);
    } else {
      const data = rng.bytes(1 + rng.int(8 * KiB));
      await engine.write(off, data, { fua: false });
      model.set(data, off);
    }
  }
  await engine.flush();
  return { fx, engine, model, rng, offsets };
}

test('rebuild copies only written extents while writes continue, then serves the exact volume alone', async () => {
  const seed = testSeed();
  const { fx, engine, model, rng, offsets } = await setup(seed);
  const r3 = await fx.replica('r3');
  // Hold the source's extent answers a little after reading, so that frontend writes to the blocks being copied
  // arrive between the copy's read and its write (without the engine's range lock, stale data would win).
  for (const r of fx.replicas.slice(0, 2)) r.device.answerDelayMs = (op) => (op === 'readExtent' ? 4 : 0);
  await engine.addReplica('r3', await r3.connect());
  assert.equal(engine.status().replicas[2]!.mode, 'WO');
  let stop = false;
  let writes = 0;
  const writer = (async () => {
    while (!stop) {
      const batch: Promise<void>[] = [];
      for (let k = 0; k < 8; k++) {
        // Half of them near the written extents being copied, half anywhere.
        const off = rng.int(2) ? Math.min(fx.size - 16 * KiB, offsets[rng.int(offsets.length)]! + rng.int(8 * KiB)) : rng.int(fx.size - 16 * KiB);
        const data = rng.bytes(1 + rng.int(16 * KiB)); // partial blocks included
        // The model is updated in call order, which is the order the engine applies overlapping writes in.
        if (rng.int(8) === 0) {
          batch.push(engine.writeZeroes(off, data.length, { fua: false, noHole: false }));
          model.fill(0, off, off + data.length);
        } else {
          batch.push(engine.write(off, data, { fua: false }));
          model.set(data, off);
        }
        writes++;
      }
      await Promise.all(batch);
    }
  })();
  const result = await engine.rebuild('r3');
  stop = true;
  await writer;
  assert.ok(writes > 50, `seed ${seed}: only ${writes} writes ran during the rebuild`);
  const s = engine.status();
  assert.deepEqual(s.replicas.map((r) => r.mode), ['RW', 'RW', 'RW']);
  assert.equal(s.rebuild?.state, 'complete');
  assert.ok(result.bytesCopied > 0 && result.bytesCopied < 4 * MiB, `seed ${seed}: copied ${result.bytesCopied} B of a ${fx.size} B volume`);
  // Copy windows merge nearby extents, so data written into a gap during the rebuild may be copied too.
  assert.ok(result.bytesListed < 4 * MiB && result.chunks > 10, JSON.stringify(result));
  // Only r3 left: every byte must come from the rebuilt replica.
  await engine.removeReplica('r1');
  await engine.removeReplica('r2');
  assert.equal(firstDifference(await engine.read(0, fx.size), model), -1, `seed ${seed}: volume read from the rebuilt replica`);
  await engine.close();
  assert.equal(firstDifference(await r3.store.read(0, fx.size), model), -1, `seed ${seed}: r3's store`);
  assert.equal(r3.store.info().revision, (await fx.replicas[0]!.store.info()).revision, 'the rebuilt replica carries the source revision');
});

test('a source that fails mid-rebuild is replaced by another RW replica', async () => {
  const seed = testSeed();
  const { fx, engine, model } = await setup(seed);
  const r3 = await fx.replica('r3');
  await engine.addReplica('r3', await r3.connect());
  let copies = 0;
  for (const r of fx.replicas.slice(0, 2)) {
    r.device.delayMs = (op) => {
      if (op === 'readExtent' && ++copies === 5) r.device.failures.push(new Error('source disk failed'));
      return 0;
    };
  }
  await engine.rebuild('r3');
  const modes = engine.status().replicas.map((r) => r.mode);
  assert.deepEqual(modes.filter((m) => m === 'RW').length, 2, modes.join(','));
  assert.equal(engine.status().replicas[2]!.mode, 'RW');
  for (const r of engine.status().replicas.filter((x) => x.mode === 'RW' && x.name !== 'r3')) await engine.removeReplica(r.name).catch(() => {});
  assert.equal(firstDifference(await engine.read(0, fx.size), model), -1, `seed ${seed}`);
  await engine.close();
});

test('a target that dies fails the rebuild; the volume keeps working', async () => {
  const seed = testSeed();
  const { fx, engine, model } = await setup(seed);
  const r3 = await fx.replica('r3');
  await engine.addReplica('r3', await r3.connect());
  r3.device.delayMs = () => 5;
  const failed = assert.rejects(engine.rebuild('r3'), (err) => isEngineError(err, 'RebuildFailed'));
  await new Promise((r) => setTimeout(r, 30));
  await r3.server.destroy();
  await failed;
  const s = engine.status();
  assert.equal(s.rebuild?.state, 'failed');
  assert.deepEqual(s.replicas.map((r) => r.mode), ['RW', 'RW', 'ERR']);
  await engine.write(0, new Uint8Array([9]), { fua: true });
  model[0] = 9;
  assert.equal(firstDifference(await engine.read(0, fx.size), model), -1, `seed ${seed}`);
  await assert.rejects(engine.rebuild('r3'), (err) => isEngineError(err, 'InvalidState'));
  await engine.close();
});
