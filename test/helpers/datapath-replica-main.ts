// A replica process for the data-path tests (until `stratum replica` is wired): runs runReplica with the JSON
// options given as the only argument, prints one JSON line {"ready":true,"address":…} on stdout once serving, and
// shuts down gracefully on SIGTERM or SIGINT.

import { runReplica, type RunReplicaOptions } from '../../src/replica/index.js';

const arg = process.argv[2];
// `node --test dist/` runs every file under a test/ folder, this one included, without arguments: do nothing then.
if (arg === undefined) process.exit(0);
const opts = JSON.parse(arg) as Omit<RunReplicaOptions, 'onListening' | 'log'>;
const abort = new AbortController();
process.once('SIGTERM', () => abort.abort());
process.once('SIGINT', () => abort.abort());
runReplica({ ...opts, onListening: (address) => process.stdout.write(`${JSON.stringify({ ready: true, address })}\n`) }, abort.signal).catch(
  (err: unknown) => {
    process.stderr.write(`replica failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
