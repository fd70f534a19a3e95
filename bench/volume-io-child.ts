// The volume-io benchmark's child process: one replica or one engine, in its own OS process as in production, without
// depending on the `stratum` CLI. Takes one JSON argument, logs to stderr, prints `ready ADDRESS` on stdout once
// serving (a replica's host:port, the engine's NBD URI), and shuts down gracefully on SIGTERM or SIGINT.
//
//   node dist/bench/volume-io-child.js '{"role":"replica","dir":...,"name":...,"size":...,"backing":{...}}'
//   node dist/bench/volume-io-child.js '{"role":"engine","volume":...,"replicas":[{"name":...,"address":...}],"nbdSocket":...}'

import { runEngine } from '../src/engine/run.js';
import { runReplica } from '../src/replica/run.js';

export interface ReplicaChildSpec {
  role: 'replica';
  dir: string;
  name: string;
  size: number;
  backing: { name: string; uuid: string; path: string };
}

export interface EngineChildSpec {
  role: 'engine';
  volume: string;
  size: number;
  replicas: { name: string; address: string }[];
  /** The NBD frontend's unix socket. */
  nbdSocket: string;
}

export type ChildSpec = ReplicaChildSpec | EngineChildSpec;

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? 'null') as ChildSpec | null;
  const controller = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => controller.abort(new Error(`stopped by ${sig}`)));
  const ready = (address: string) => process.stdout.write(`ready ${address}\n`);
  if (spec?.role === 'replica') {
    await runReplica(
      {
        dir: spec.dir,
        listen: { host: '127.0.0.1', port: 0 },
        create: { name: spec.name, size: spec.size, backing: spec.backing },
        onListening: (a) => ready('path' in a ? `unix:${a.path}` : `${a.host}:${a.port}`),
      },
      controller.signal,
    );
  } else if (spec?.role === 'engine') {
    await runEngine(
      {
        volume: spec.volume,
        size: spec.size,
        replicas: spec.replicas,
        nbd: { path: spec.nbdSocket },
        onReady: (r) => ready(r.nbdUri),
      },
      controller.signal,
    );
  } else {
    throw new Error(`expected one JSON argument with role "replica" or "engine", got ${JSON.stringify(process.argv[2])}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`volume-io child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
