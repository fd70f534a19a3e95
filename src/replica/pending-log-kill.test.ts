// A real process crash: a child process (testing-kill-child.ts) writes to a replica on real files at queue depth 16
// without ever flushing and reports each acknowledged mutation; the test kills it with SIGKILL at a random moment
// and reopens the replica. In this boot every acknowledged mutation must read back. Opened as after a reboot (another
// boot id) on a copy of the same files, nothing may read bytes that were never its content, acknowledged writes
// may be lost (none was flushed).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readBootId } from './pending-log.js';
import { ReplicaStore } from './store.js';
import { Rng, testSeed } from './testing.js';
import { randomOp, SectorModel } from './testing-model.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'testing-kill-child.js');
const MiB = 1024 * 1024;
const SIZE = 4 * MiB;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function killedRun(seed: number, dir: string, backingPath: string, killAfter: number): Promise<Set<number>> {
  const child = spawn(process.execPath, [CHILD, join(dir, 'r'), backingPath, String(SIZE), String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const acked = new Set<number>();
  try {
    // Read to the end: a line printed before the kill landed is an acknowledgement like any other.
    for await (const line of createInterface({ input: child.stdout })) {
      const m = /^ack (\d+)$/.exec(line);
      if (m) acked.add(Number(m[1]));
      // Mid-burst: the child is still sending at queue depth 16.
      if (acked.size === killAfter) child.kill('SIGKILL');
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  assert.equal(await exited, 'SIGKILL', `seed ${seed}: the child ended before it was killed: ${stderr}`);
  return acked;
}

const NO_BOOT_ID = readBootId() === null ? 'the kernel reports no boot id (/proc/sys/kernel/random/boot_id): no pending map log; test skipped' : false;

test('kill -9 of a process writing without FLUSH: every acknowledged mutation reads back after reopening', { skip: NO_BOOT_ID }, async (t) => {
  const seed = testSeed();
  const rng = new Rng(seed);
  const dir = await mkdtemp(join(tmpdir(), 'stratum-kill-'));
  dirs.push(dir);
  const backing = new Rng(seed ^ 0x5eed).bytes(3 * MiB);
  const backingPath = join(dir, 'backing.raw');
  await writeFile(backingPath, backing);
  const killAfter = 300 + rng.int(3000);
  const acked = await killedRun(seed, dir, backingPath, killAfter);

  // The child's stream, regenerated from the seed: mutation N as it sent it.
  const initial = new Uint8Array(SIZE);
  initial.set(backing);
  const model = new SectorModel(initial);
  const stream = new Rng(seed);
  // Every mutation numbered above the highest acknowledged one was in flight: at most 16 of them.
  const last = Math.max(...acked) + 16;
  for (let n = 0; n <= last; n++) {
    const op = randomOp(stream, SIZE);
    if (op.kind === 'zero') stream.int(2); // the child's choice of trim or write-zeroes
    model.apply(n, op);
  }

  // A copy first (open compacts): the same files opened as if after a reboot.
  await cp(join(dir, 'r'), join(dir, 'rebooted'), { recursive: true });
  const rebooted = await ReplicaStore.open(join(dir, 'rebooted'), { pending: { bootId: 'another-boot' } });
  try {
    assert.equal(rebooted.recovery.pending?.otherBoot, true);
    const bad = model.firstBad(await rebooted.read(0, SIZE), new Set());
    assert.equal(bad, undefined, `seed ${seed}: after a reboot: ${bad}`);
  } finally {
    await rebooted.close();
  }

  const store = await ReplicaStore.open(join(dir, 'r'));
  try {
    const pending = store.recovery.pending;
    assert.ok(pending?.file !== undefined && pending.records > 1, `seed ${seed}: no pending records applied (${JSON.stringify(pending)})`);
    const bad = model.firstBad(await store.read(0, SIZE), acked);
    assert.equal(bad, undefined, `seed ${seed}: ${acked.size} acknowledged mutations before the kill: ${bad}`);
    t.diagnostic(`seed ${seed}: killed after ${acked.size} acknowledged mutations; reopen applied ${pending.records} pending records from ${pending.file}`);
  } finally {
    await store.close();
  }
});
