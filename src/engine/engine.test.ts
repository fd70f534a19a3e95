// Tests of the engine's I/O fan-out over three in-process replicas (real stores, servers and clients): random
// pipelined I/O against a byte model while one replica's connection drops mid-stream or one stops answering, read
// retry on another replica, the faulted volume (EIO), a backing image no replica can decode (EIO, replicas kept), and
// the revision check at start.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from './engine.js';
import { LocalReplica } from './local-replica.js';
import { isEngineError } from './errors.js';
import { ImageFormatError } from '../imagefmt/index.js';
import { Fixture, firstDifference, Rng, testSeed, type TestReplica } from './testing.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const fixtures: Fixture[] = [];
after(async () => {
  for (const f of fixtures) await f.cleanup();
});

/**
 * Three replicas behind an engine. `timeoutMs` is each replica request's (and ping's) timeout: generous by default,
 * so that a loaded machine (a CI runner) never times out a healthy replica; short only where a test waits for one.
 */
async function threeReplicas(seed: number, size = 8 * MiB, timeoutMs = 5000): Promise<{ fx: Fixture; reps: TestReplica[]; engine: Engine }> {
  const fx = await Fixture.create(size, size - 512 * KiB, seed);
  fixtures.push(fx);
  const reps = [await fx.replica('r1'), await fx.replica('r2'), await fx.replica('r3')];
  const engine = await Engine.start({
    volume: 'vol',
    size,
    replicas: await Promise.all(reps.map(async (r) => ({ name: r.name, backend: await r.connect(timeoutMs) }))),
    pingIntervalMs: 100,
    pingTimeoutMs: timeoutMs,
  });
  return { fx, reps, engine };
}

/** Three replicas behind an engine: r2 reached in-process (as the instance manager hands an engine its node's replica), r1 and r3 over sockets. */
async function oneLocalReplica(seed: number): Promise<{ fx: Fixture; reps: TestReplica[]; engine: Engine }> {
  const fx = await Fixture.create(8 * MiB, 8 * MiB - 512 * KiB, seed);
  fixtures.push(fx);
  const reps = [await fx.replica('r1'), await fx.replica('r2'), await fx.replica('r3')];
  const backends = await Promise.all(reps.map(async (r) => (r.name === 'r2' ? new LocalReplica(r.device, { address: `local:${r.name}` }) : await r.connect(5000))));
  const engine = await Engine.start({ volume: 'vol', size: fx.size, replicas: reps.map((r, i) => ({ name: r.name, backend: backends[i]! })), pingIntervalMs: 100, pingTimeoutMs: 5000 });
  return { fx, reps, engine };
}

/** `count` random operations, issued 16 at a time without waiting, applied to `model` in call order. */
async function randomIo(engine: Engine, model: Uint8Array, rng: Rng, count: number, onOp?: (i: number) => Promise<void> | void): Promise<void> {
  const size = model.length;
  for (let i = 0; i < count; i += 16) {
    const ops = Array.from({ length: 16 }, () => {
      const off = rng.int(size - 1);
      return { off, len: 1 + rng.int(Math.min(64 * KiB, size - off)), kind: rng.int(10) };
    });
    // Overlapping reads and writes in flight together have no defined order (as in NBD): a read is only checked
    // when no mutation of its batch, before or after it, touches its range.
    const mutated = ops.filter((o) => o.kind < 6);
    const batch: Promise<unknown>[] = [];
    for (const { off, len, kind } of ops) {
      if (kind < 5) {
        const data = rng.bytes(len);
        batch.push(engine.write(off, data, { fua: kind === 0 }));
        model.set(data, off);
      } else if (kind < 6) {
        batch.push(engine.trim(off, len, { fua: false }));
        model.fill(0, off, off + len);
      } else if (kind < 7) {
        batch.push(engine.flush());
      } else if (!mutated.some((m) => off < m.off + m.len && m.off < off + len)) {
        const want = model.slice(off, off + len);
        batch.push(engine.read(off, len).then((got) => assert.equal(firstDifference(got, want), -1, `read ${off}+${len}`)));
      }
    }
    await Promise.all(batch);
    await onOp?.(i);
  }
}

async function assertVolume(engine: Engine, model: Uint8Array, what: string): Promise<void> {
  const got = await engine.read(0, model.length);
  assert.equal(firstDifference(got, model), -1, what);
}

test('a replica whose connection drops mid-stream goes ERR; I/O continues and stays correct', async () => {
  const seed = testSeed();
  const { fx, reps, engine } = await threeReplicas(seed);
  const model = fx.initialModel();
  const rng = new Rng(seed);
  await randomIo(engine, model, rng, 800, async (i) => {
    if (i === 400) await reps[1]!.server.destroy(); // r2's process "dies"
  });
  const s = engine.status();
  assert.deepEqual(s.replicas.map((r) => r.mode), ['RW', 'ERR', 'RW'], `seed ${seed}`);
  assert.equal(s.state, 'degraded');
  await assertVolume(engine, model, `seed ${seed}: volume`);
  await engine.close();
  for (const r of [reps[0]!, reps[2]!]) {
    assert.equal(firstDifference(await r.store.read(0, fx.size), model), -1, `seed ${seed}: replica ${r.name} holds the volume`);
  }
});

test('with a replica in this process (its mutations deferred to the check phase), every replica applies overlapping mutations in call order', async () => {
  const seed = testSeed();
  const { fx, reps, engine } = await oneLocalReplica(seed);
  const model = fx.initialModel();
  await randomIo(engine, model, new Rng(seed), 800);
  assert.deepEqual(engine.status().replicas.map((r) => r.mode), ['RW', 'RW', 'RW'], `seed ${seed}`);
  await engine.close();
  for (const r of reps) assert.equal(firstDifference(await r.store.read(0, fx.size), model), -1, `seed ${seed}: replica ${r.name} holds the volume`);
});

test('a replica that stops answering times out and goes ERR; writes then complete on the others', async () => {
  const seed = testSeed();
  const { fx, reps, engine } = await threeReplicas(seed, 8 * MiB, 1000);
  const model = fx.initialModel();
  const rng = new Rng(seed);
  await randomIo(engine, model, rng, 100);
  const release = reps[2]!.device.hold();
  const t0 = Date.now();
  await randomIo(engine, model, rng, 100);
  const waited = Date.now() - t0;
  release();
  const r3 = engine.status().replicas[2]!;
  assert.equal(r3.mode, 'ERR');
  assert.match(r3.error ?? '', /no answer within|timed out|TIMEOUT|closed/i);
  assert.ok(waited < 8000, `stalled only about one timeout (${waited} ms)`);
  await assertVolume(engine, model, `seed ${seed}`);
  await engine.close();
});

test('reads move to another replica when one fails; with no RW replica left I/O fails with EIO', async () => {
  const seed = testSeed();
  const { fx, reps, engine } = await threeReplicas(seed);
  const model = fx.initialModel();
  for (const r of reps.slice(0, 2)) r.device.failures.push(new Error('disk on fire'));
  // r1 and r2 fail their next call: every read below must still succeed, served by another replica.
  for (let i = 0; i < 20; i++) assert.equal(firstDifference(await engine.read(i * 4096, 4096), model.subarray(i * 4096, (i + 1) * 4096)), -1);
  const errs = engine.status().replicas.filter((r) => r.mode === 'ERR');
  assert.deepEqual(errs.map((r) => r.name), ['r1', 'r2'], JSON.stringify(engine.status().replicas));
  assert.match(errs[0]!.error ?? '', /disk on fire/);
  const last = engine.status().replicas.find((r) => r.mode === 'RW')!;
  await reps.find((r) => r.name === last.name)!.server.destroy();
  await assert.rejects(engine.write(0, new Uint8Array(10), { fua: false }), (err) => isEngineError(err, 'NoHealthyReplica') && err.nbdErrno === 5);
  await assert.rejects(engine.read(0, 10), (err) => isEngineError(err, 'NoHealthyReplica'));
  assert.equal(engine.status().state, 'faulted');
  engine.destroy();
});

test('at start, a replica behind the others (missed writes) is ERR; mismatched replicas are refused', async () => {
  const seed = testSeed();
  const fx = await Fixture.create(4 * MiB, 2 * MiB, seed);
  fixtures.push(fx);
  const [r1, r2] = [await fx.replica('r1'), await fx.replica('r2')];
  const e1 = await Engine.start({ volume: 'vol', replicas: [{ name: 'r1', backend: await r1.connect() }, { name: 'r2', backend: await r2.connect() }], pingIntervalMs: 0 });
  await e1.write(0, new Uint8Array(4096).fill(1), { fua: true });
  await e1.removeReplica('r2');
  await e1.write(4096, new Uint8Array(4096).fill(2), { fua: true }); // r2 misses this one
  await e1.close();
  const e2 = await Engine.start({ volume: 'vol', replicas: [{ name: 'r1', backend: await r1.connect() }, { name: 'r2', backend: await r2.connect() }], pingIntervalMs: 0 });
  const modes = e2.status().replicas.map((r) => [r.name, r.mode, r.error ?? '']);
  assert.deepEqual(modes.map((m) => m.slice(0, 2)), [['r1', 'RW'], ['r2', 'ERR']]);
  assert.match(modes[1]![2]!, /revision 1 is behind 2/);
  assert.deepEqual([...(await e2.read(4096, 4))], [2, 2, 2, 2]);
  await e2.close();

  const other = await Fixture.create(8 * MiB, 2 * MiB, seed);
  fixtures.push(other);
  const big = await other.replica('big');
  const e3 = await Engine.start({ volume: 'vol', size: 4 * MiB, replicas: [{ name: 'r1', backend: await r1.connect() }], pingIntervalMs: 0 });
  await assert.rejects(e3.addReplica('big', await big.connect()), (err) => isEngineError(err, 'ReplicaMismatch'));
  await assert.rejects(e3.removeReplica('r1'), (err) => isEngineError(err, 'InvalidState'));
  await e3.close();
});

test('a backing image that cannot be decoded fails the read or write with EIO, not the replicas; a replica alone in failing is ERR', async () => {
  const corrupt = () => new ImageFormatError('Corrupt', 'qcow2 L2 entry at offset 196608: host cluster 327680 runs past the end of the file (300000 bytes)');
  for (const setup of [threeReplicas, oneLocalReplica]) {
    const { fx, reps, engine } = await setup(testSeed());
    const model = fx.initialModel();
    // Every replica meets the same bytes: the read fails, every replica stays RW, and the next read is served.
    for (const r of reps) r.device.failures.push(corrupt());
    await assert.rejects(engine.read(0, 4096), (err) => isEngineError(err, 'ImageUnreadable') && err.nbdErrno === 5 && /host cluster 327680/.test(err.message));
    assert.deepEqual(engine.status().replicas.map((r) => r.mode), ['RW', 'RW', 'RW'], `${setup.name}: ${JSON.stringify(engine.status().replicas)}`);
    assert.equal(firstDifference(await engine.read(0, 4096), model.subarray(0, 4096)), -1);
    // A write that merges with those bytes fails alike on every replica: none applied it, all stay RW.
    for (const r of reps) r.device.failures.push(corrupt());
    await assert.rejects(engine.write(100, new Uint8Array(10), { fua: false }), (err) => isEngineError(err, 'ImageUnreadable') && err.nbdErrno === 5);
    assert.deepEqual(engine.status().replicas.map((r) => r.mode), ['RW', 'RW', 'RW'], `${setup.name}: after the write`);
    assert.equal(firstDifference(await engine.read(0, 4096), model.subarray(0, 4096)), -1, 'the refused write changed nothing');
    // Only one replica fails: its copy of the image is bad, another serves the read, and it goes ERR.
    const reader = reps.find((r) => r.name === (setup === oneLocalReplica ? 'r2' : 'r1'))!;
    for (const r of reps) r.device.calls = 0;
    reader.device.failures.push(corrupt());
    for (let i = 0; i < 3; i++) assert.equal(firstDifference(await engine.read(i * 4096, 4096), model.subarray(i * 4096, (i + 1) * 4096)), -1);
    // Round-robin (or the local replica first) brings one of the three reads to it.
    assert.ok(reader.device.calls > 0, `${setup.name}: ${reader.name} was asked`);
    const errs = engine.status().replicas.filter((r) => r.mode === 'ERR');
    assert.deepEqual(errs.map((r) => r.name), [reader.name], `${setup.name}: ${JSON.stringify(engine.status().replicas)}`);
    assert.match(errs[0]!.error ?? '', /host cluster 327680/);
    engine.destroy();
  }
});

test('a request outside the volume is refused with EINVAL before any replica sees it', async () => {
  const { fx, engine } = await threeReplicas(testSeed(), 4 * MiB);
  await assert.rejects(engine.read(fx.size - 1, 2), (err) => isEngineError(err, 'InvalidArgument') && err.nbdErrno === 22);
  await assert.rejects(engine.write(0, new Uint8Array(33 * MiB), { fua: false }), (err) => isEngineError(err, 'InvalidArgument'));
  await assert.rejects(engine.trim(-1, 10, { fua: false }), (err) => isEngineError(err, 'InvalidArgument'));
  assert.deepEqual(engine.status().replicas.map((r) => r.mode), ['RW', 'RW', 'RW']);
  await engine.close();
});

test('reads go to the replica in this process while it is RW, then round-robin over the others', async () => {
  const seed = testSeed();
  const { fx, reps, engine } = await oneLocalReplica(seed);
  const model = fx.initialModel();
  // Only reads reach the devices below (pings and info do not count as device calls).
  const reads = () => reps.map((r) => r.device.calls);
  const before = reads();
  for (let i = 0; i < 20; i++) assert.equal(firstDifference(await engine.read(i * 4096, 4096), model.subarray(i * 4096, (i + 1) * 4096)), -1);
  const served = reads().map((n, i) => n - before[i]!);
  assert.deepEqual(served, [0, 20, 0], 'every read from the local replica');
  reps[1]!.device.failures.push(new Error('disk on fire'));
  for (let i = 0; i < 20; i++) assert.equal(firstDifference(await engine.read(i * 4096, 4096), model.subarray(i * 4096, (i + 1) * 4096)), -1);
  const after = reads().map((n, i) => n - before[i]! - served[i]!);
  assert.equal(after[1], 1, 'the local replica failed its next read and went ERR');
  assert.ok(after[0]! > 0 && after[2]! > 0, `then round-robin over the others: ${after.join(', ')}`);
  engine.destroy();
});
