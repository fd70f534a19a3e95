// Test helper (not exported from index.ts): the process that layered-kill.test.ts kills with SIGKILL. Like
// testing-kill-child.ts (a seeded stream of random mutations at queue depth 16, never flushed, `ack N` printed as
// mutation N is acknowledged), while snapshot operations run back to back on the same replica: snapshot, and every
// third snapshot delete the two oldest and purge (merges into a snapshot and into the head). `chain …` lines say
// which finished. The kill lands in the middle of whichever runs then.
//
//   node testing-layered-kill-child.js DIR BACKING SIZE SEED

import { LayeredReplica } from './layered.js';
import { Rng } from './testing.js';
import { issueOp, randomOp } from './testing-model.js';

const [dir, backing, sizeArg, seedArg] = process.argv.slice(2);
if (dir === undefined || backing === undefined || sizeArg === undefined || seedArg === undefined) {
  process.stderr.write('usage: testing-layered-kill-child.js DIR BACKING SIZE SEED\n');
  process.exit(2);
}
const size = Number(sizeArg);
const rng = new Rng(Number(seedArg));
const store = await LayeredReplica.create(dir, { name: 'killed', size, backing: { name: 'bi', uuid: 'u', path: backing } });
process.stdout.write('ready\n');
let next = 0;
const worker = async (): Promise<void> => {
  for (;;) {
    const n = next++;
    await issueOp(store, randomOp(rng, size), false, rng);
    process.stdout.write(`ack ${n}\n`);
  }
};
const chainOps = async (): Promise<void> => {
  for (let k = 1; ; k++) {
    await new Promise((r) => setTimeout(r, 5));
    await store.snapshot(`s${k}`);
    process.stdout.write(`chain snapshot s${k}\n`);
    if (k % 3 === 0) {
      const names = store.listSnapshots().filter((s) => s.name !== 'volume-head' && !s.removed).map((s) => s.name);
      for (const n of names.slice(0, 2)) await store.deleteSnapshot(n);
      const merged = await store.purge();
      process.stdout.write(`chain purge ${merged.join(',')}\n`);
    }
  }
};
await Promise.all([...Array.from({ length: 16 }, worker), chainOps()]);
