// `stratum instance-manager` (a node's data plane: it hosts the node's replicas and engines in-process) and the
// standalone `stratum replica` and `stratum engine` (one replica or engine in a process of its own, for tests and
// debugging), each in the foreground until SIGTERM/SIGINT. Replica and engine print exactly one JSON line on stdout
// once serving (with the real ports); everything else they say goes to stderr.

import { Command, Option } from 'commander';
import { CLUSTER_SECRET_ENV, clusterSecretFromEnv } from '../../auth/index.js';
// The error class alone, statically: replica, engine and instance manager load only in the command that runs them.
import { ImError } from '../../instance-manager/errors.js';

/** "host:port" / "[v6]:port" → parts; port 0 allowed (any free port). */
export function parseHostPort(flag: string, v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ImError('InvalidArgument', `${flag} must be HOST:PORT (port 0: any free port), not ${JSON.stringify(v)}`);
  return { host: (m[1] ?? m[2])!, port };
}

export function formatHostPort(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function int(flag: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new ImError('InvalidArgument', `${flag} must be an integer ≥ ${min}, not ${JSON.stringify(v)}`);
  return n;
}

/** Runs `body` with a signal aborted by SIGINT/SIGTERM; an error prints one line and exits 1. */
async function foreground(body: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const ac = new AbortController();
  // `on`, not `once`: a pod stop signals the whole process group and the instance manager then signals its
  // children again; a second SIGTERM must not fall through to the default action and cut the graceful shutdown.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => ac.abort());
  try {
    await body(ac.signal);
  } catch (err) {
    // Stopped while still starting (the manager deleted it): a requested stop, not a failure.
    if (ac.signal.aborted && err instanceof Error && err.name === 'AbortError') {
      process.stderr.write('stopped before it was ready\n');
      process.exit(0);
    }
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

const ready = (v: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ ready: true, ...v })}\n`);

interface ReplicaFlags {
  dir: string;
  listen: string;
  create?: boolean;
  name?: string;
  size?: string;
  blockSize?: string;
  backingFile?: string;
  backingName?: string;
  backingUuid?: string;
}

export async function runReplicaCommand(o: ReplicaFlags, signal: AbortSignal): Promise<void> {
  const listen = parseHostPort('--listen', o.listen);
  let create;
  if (o.create) {
    if (!o.name) throw new ImError('InvalidArgument', '--create needs --name');
    const size = int('--size', o.size);
    if (size === undefined) throw new ImError('InvalidArgument', '--create needs --size');
    const blockSize = int('--block-size', o.blockSize);
    const b = [o.backingFile, o.backingName, o.backingUuid];
    if (b.some((x) => x !== undefined) && !b.every((x) => x !== undefined)) {
      throw new ImError('InvalidArgument', '--backing-file, --backing-name and --backing-uuid go together');
    }
    create = {
      name: o.name,
      size,
      ...(blockSize === undefined ? {} : { blockSize }),
      ...(o.backingFile ? { backing: { name: o.backingName!, uuid: o.backingUuid!, path: o.backingFile } } : {}),
    };
  }
  const { runReplica } = await import('../../replica/index.js');
  await runReplica(
    {
      dir: o.dir,
      listen,
      ...(create ? { create } : {}),
      onListening: (a) => ready({ address: 'path' in a ? `unix:${a.path}` : formatHostPort(a) }),
    },
    signal,
  );
}

interface EngineFlags {
  volume: string;
  replica: string[];
  nbd: string;
  control: string;
  size?: string;
  frontend: string;
  deviceDir: string;
  fuseDir?: string;
}

export async function runEngineCommand(o: EngineFlags, signal: AbortSignal): Promise<void> {
  const replicas = o.replica.map((r) => {
    const eq = r.indexOf('=');
    if (eq <= 0 || eq === r.length - 1) throw new ImError('InvalidArgument', `--replica must be NAME=HOST:PORT, not ${JSON.stringify(r)}`);
    return { name: r.slice(0, eq), address: r.slice(eq + 1) };
  });
  if (!['nbd', 'blockdev', 'none'].includes(o.frontend)) throw new ImError('InvalidArgument', `--frontend must be nbd, blockdev or none, not ${JSON.stringify(o.frontend)}`);
  const size = int('--size', o.size);
  const { runEngine } = await import('../../engine/index.js');
  await runEngine(
    {
      volume: o.volume,
      replicas,
      nbd: parseHostPort('--nbd', o.nbd),
      control: parseHostPort('--control', o.control),
      ...(size === undefined ? {} : { size }),
      ...(o.frontend === 'blockdev' ? { blockdev: { deviceDir: o.deviceDir, ...(o.fuseDir ? { fuseDir: o.fuseDir } : {}) } } : {}),
      onReady: ({ nbdUri, control, device }) =>
        ready({ nbd: nbdUri, ...(control ? { control: 'path' in control ? `unix:${control.path}` : formatHostPort(control) } : {}), ...(device ? { device } : {}) }),
    },
    signal,
  );
}

interface ImFlags {
  node: string;
  nodeUid?: string;
  host: string;
  port: string;
  dataRoot: string[];
  clusterSecretFile?: string;
}

export async function runInstanceManagerCommand(o: ImFlags, signal: AbortSignal): Promise<void> {
  const port = int('--port', o.port, 0);
  if (port === undefined || port > 65535) throw new ImError('InvalidArgument', `--port must be 0–65535, not ${JSON.stringify(o.port)}`);
  for (const r of o.dataRoot) if (!r.startsWith('/')) throw new ImError('InvalidArgument', `--data-root must be an absolute path, not ${JSON.stringify(r)}`);
  // Before anything listens: an instance manager without the cluster secret would serve whoever connects.
  const clusterSecret = clusterSecretFromEnv(o.clusterSecretFile);
  const { startInstanceManager } = await import('../../instance-manager/index.js');
  const name = process.env['POD_NAME'];
  const im = await startInstanceManager({ node: o.node, host: o.host, port, dataRoots: o.dataRoot, clusterSecret, ...(o.nodeUid ? { nodeUid: o.nodeUid } : {}), ...(name ? { name } : {}) });
  process.stderr.write(`stratum instance-manager: node ${o.node} served at ${im.url}, replicas on ${im.replicaAddress}, NBD on ${im.nbdAddress}\n`);
  if (!signal.aborted) await new Promise<void>((res) => signal.addEventListener('abort', () => res(), { once: true }));
  process.stderr.write('stratum instance-manager: stopping instances\n');
  await im.close();
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** The three subcommands, for `program.addCommand(...)`. */
export function instanceCommands(): Command[] {
  const replica = new Command('replica')
    .description('serve one replica of a volume (prints {"ready":true,"address":…} once listening)')
    .requiredOption('--dir <dir>', 'the replica directory')
    .requiredOption('--listen <host:port>', 'where to serve (port 0: any free port)')
    .option('--create', 'create the replica when the directory holds none')
    .option('--name <name>', 'replica name (with --create)')
    .option('--size <bytes>', 'volume size (with --create; an existing smaller replica grows to it, a larger one is refused)')
    .option('--block-size <bytes>', 'block size (with --create)')
    .option('--backing-file <path>', 'backing image file (with --create)')
    .option('--backing-name <name>', 'backing image name')
    .option('--backing-uuid <uuid>', 'backing image uuid')
    .action((o: ReplicaFlags) => foreground((s) => runReplicaCommand(o, s)));
  const engine = new Command('engine')
    .description('run a volume engine with its NBD export and control API (prints {"ready":true,"nbd":…} once serving)')
    .requiredOption('--volume <name>', 'volume name (also the NBD export name)')
    .option('--replica <name=host:port>', 'a replica (repeatable)', collect, [])
    .requiredOption('--nbd <host:port>', 'where the NBD export listens (port 0: any free port)')
    .requiredOption('--control <host:port>', 'where the control API listens')
    .option('--size <bytes>', 'volume size (default: what the replicas say)')
    .addOption(new Option('--frontend <kind>', 'nbd, blockdev (nbdfuse + loop device) or none').choices(['nbd', 'blockdev', 'none']).default('nbd'))
    .option('--device-dir <dir>', 'where the blockdev frontend names the device', '/dev/longhorn')
    .option('--fuse-dir <dir>', 'where the blockdev frontend mounts its nbdfuse files (default <device-dir>/.fuse)')
    .action((o: EngineFlags) => foreground((s) => runEngineCommand(o, s)));
  const im = new Command('instance-manager')
    .description('run the instance manager of a node: hosts its replicas and engines in-process, HTTP API')
    .requiredOption('--node <name>', 'node name')
    .option('--node-uid <uid>', "the Node object's uid: instance names are locked per node (default: per node name)")
    .option('--host <addr>', 'address to listen on (the API, the replica and NBD listeners)', '127.0.0.1')
    .requiredOption('--port <port>', 'API port (0: any free port)')
    .option('--data-root <dir>', 'replica directories must be inside one of these (repeatable; none: no replica can be created)', collect, [])
    .option('--cluster-secret-file <file>', `the cluster secret (default: $${CLUSTER_SECRET_ENV}, set by the node agent)`)
    .action((o: ImFlags) => foreground((s) => runInstanceManagerCommand(o, s)));
  return [replica, engine, im];
}
