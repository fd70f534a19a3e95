// The volume-io benchmark's child process: one instance manager (a node's whole data plane: its replicas and engines
// in one process, as in production), without depending on the `stratum` CLI. Takes one JSON argument, logs to
// stderr, prints `ready API-URL REPLICA-ADDRESS` on stdout once serving, and shuts down gracefully on SIGTERM or
// SIGINT (engines first, then replicas, flushed).
//
//   node dist/bench/volume-io-child.js '{"role":"im","node":"n0","lockDir":...,"nbdSocket":...}'

import { readClusterSecret } from '../src/auth/index.js';
import { startInstanceManager } from '../src/instance-manager/index.js';

export interface ImChildSpec {
  role: 'im';
  node: string;
  lockDir: string;
  /** The NBD listener's extra unix socket. */
  nbdSocket: string;
  /** Replica directories' data root (the bench's disk). */
  dataRoot: string;
  /** File holding the cluster secret: the API and the replica listeners require it, as in production. */
  clusterSecretFile: string;
}

export type ChildSpec = ImChildSpec;

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? 'null') as ChildSpec | null;
  const controller = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => controller.abort(new Error(`stopped by ${sig}`)));
  if (spec?.role === 'im') {
    const im = await startInstanceManager({
      node: spec.node,
      host: '127.0.0.1',
      port: 0,
      lockDir: spec.lockDir,
      nbdSocket: spec.nbdSocket,
      dataRoots: [spec.dataRoot],
      clusterSecret: readClusterSecret(spec.clusterSecretFile),
    });
    process.stdout.write(`ready ${im.url} ${im.replicaAddress}\n`);
    if (!controller.signal.aborted) await new Promise((r) => controller.signal.addEventListener('abort', r, { once: true }));
    await im.close();
  } else {
    throw new Error(`expected one JSON argument with role "im", got ${JSON.stringify(process.argv[2])}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`volume-io child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
