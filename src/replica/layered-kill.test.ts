// A real process crash during snapshot operations: a child process (testing-layered-kill-child.ts) writes to a
// layered replica on real files at queue depth 16 without ever flushing, while it takes snapshots, deletes and
// purges back to back; the test kills it with SIGKILL at a random moment (inside a snapshot or a purge, most
// likely: they run all the time) and reopens the replica. In this boot every acknowledged mutation must read back,
// the chain must open whole, and every snapshot in it must read.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LayeredReplica } from './layered.js';
import { readBootId } from './pending-log.js';
import { Rng, testSeed } from './testing.js';
import { randomOp, SectorModel } from './testing-model.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'testing-layered-kill-child.js');
const MiB = 1024 * 1024;
const SIZE = 4 * MiB;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const NO_BOOT_ID = readBootId() === null ? 'the kernel reports no boot id: no pending map log; test skipped' : false;

for (const round of [1, 2, 3, 4]) {
  test(`kill -9 during snapshots and purges (run ${round}): every acknowledged mutation reads back, the chain opens whole`, { skip: NO_BOOT_ID }, async (t) => {
    const seed = testSeed() + round;
    const rng = new Rng(seed);
    const dir = await mkdtemp(join(tmpdir(), 'stratum-layered-kill-'));
    dirs.push(dir);
    const backing = new Rng(seed ^ 0x5eed).bytes(3 * MiB);
    const backingPath = join(dir, 'backing.raw');
    await writeFile(backingPath, backing);
    // Killed a random moment after a random chain step: inside the next snapshot, delete or purge, or between them.
    const killAtStep = 1 + rng.int(8);
    const killDelayMs = rng.int(60);

    const child = spawn(process.execPath, [CHILD, join(dir, 'r'), backingPath, String(SIZE), String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const acked = new Set<number>();
    const chain: string[] = [];
    try {
      for await (const line of createInterface({ input: child.stdout })) {
        const m = /^ack (\d+)$/.exec(line);
        if (m) acked.add(Number(m[1]));
        else if (line.startsWith('chain ')) {
          chain.push(line.slice(6));
          if (chain.length === killAtStep) setTimeout(() => child.kill('SIGKILL'), killDelayMs);
        }
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL', `seed ${seed}: the child ended before it was killed: ${stderr}`);

    const initial = new Uint8Array(SIZE);
    initial.set(backing);
    const model = new SectorModel(initial);
    const stream = new Rng(seed);
    const last = Math.max(...acked) + 16;
    for (let n = 0; n <= last; n++) {
      const op = randomOp(stream, SIZE);
      if (op.kind === 'zero') stream.int(2);
      model.apply(n, op);
    }

    const store = await LayeredReplica.open(join(dir, 'r'));
    try {
      const bad = model.firstBad(await store.read(0, SIZE), acked);
      assert.equal(bad, undefined, `seed ${seed}: ${acked.size} acknowledged mutations, chain steps ${chain.join('; ')}: ${bad}`);
      const snaps = store.listSnapshots().filter((s) => s.name !== 'volume-head');
      for (const s of snaps) await store.snapshotReader(s.name).read(new Uint8Array(SIZE), 0);
      // The replica goes on: another snapshot, a purge.
      await store.snapshot('after');
      await store.purge();
      assert.equal(model.firstBad(await store.read(0, SIZE), acked), undefined);
      t.diagnostic(`seed ${seed}: killed after ${acked.size} acknowledged mutations and ${chain.length} chain steps (last: ${chain.at(-1) ?? 'none'}); reopened with ${snaps.length} snapshots`);
    } finally {
      await store.close();
    }
  });
}
