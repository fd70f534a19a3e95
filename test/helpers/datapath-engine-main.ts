// An engine process for the data-path tests (until `stratum engine` is wired): runs runEngine (engine, NBD frontend,
// control API) with the JSON options given as the only argument, prints one JSON line {"ready":true,"nbdUri":…,
// "control":…} on stdout once serving, and shuts down gracefully on SIGTERM or SIGINT.

import { runEngine, type RunEngineOptions } from '../../src/engine/index.js';

const arg = process.argv[2];
// `node --test dist/` runs every file under a test/ folder, this one included, without arguments: do nothing then.
if (arg === undefined) process.exit(0);
const opts = JSON.parse(arg) as Omit<RunEngineOptions, 'onReady' | 'log'>;
const abort = new AbortController();
process.once('SIGTERM', () => abort.abort());
process.once('SIGINT', () => abort.abort());
runEngine({ ...opts, onReady: ({ nbdUri, control }) => process.stdout.write(`${JSON.stringify({ ready: true, nbdUri, control })}\n`) }, abort.signal).catch(
  (err: unknown) => {
    process.stderr.write(`engine failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
