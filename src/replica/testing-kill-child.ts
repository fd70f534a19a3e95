// Test helper (not exported from index.ts): the process that pending-log-kill.test.ts kills with SIGKILL. It opens
// (or creates) a replica over a backing file, sends a seeded stream of random mutations (testing-model.ts) at queue
// depth 16 without ever flushing, and prints `ack N` on stdout as mutation N is acknowledged. stdout is a pipe,
// whose writes Node makes synchronously on Linux, so a printed ack was acknowledged before the kill.
//
//   node testing-kill-child.js DIR BACKING SIZE SEED

import { ReplicaStore } from './store.js';
import { Rng } from './testing.js';
import { issueOp, randomOp } from './testing-model.js';

const [dir, backing, sizeArg, seedArg] = process.argv.slice(2);
if (dir === undefined || backing === undefined || sizeArg === undefined || seedArg === undefined) {
  process.stderr.write('usage: testing-kill-child.js DIR BACKING SIZE SEED\n');
  process.exit(2);
}
const size = Number(sizeArg);
const rng = new Rng(Number(seedArg));
const store = await ReplicaStore.create(dir, { name: 'killed', size, backing: { name: 'bi', uuid: 'u', path: backing } });
process.stdout.write('ready\n');
let next = 0;
const worker = async (): Promise<void> => {
  for (;;) {
    const n = next++;
    // The stream is a function of the seed alone: the test regenerates it to know what mutation N was.
    await issueOp(store, randomOp(rng, size), false, rng);
    process.stdout.write(`ack ${n}\n`);
  }
};
await Promise.all(Array.from({ length: 16 }, worker));
