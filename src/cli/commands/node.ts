// `stratum node`: runs a node agent in the foreground.
//
// Stopping it: SIGINT/SIGTERM stop the agent only; its pods keep running and a restarted agent adopts them
// (that is how an agent is upgraded). A `{type: "catalog", files}` IPC message from `stratum up` swaps the image
// catalog (an upgrade's release). SIGUSR2 — or, when started by `stratum up`, a `{type: "shutdown",
// stopPods: true}` IPC message or the IPC channel closing — stops the pods first, then the agent.

import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NODE_CREDENTIALS_FILE, readNodeCredentials } from '../../auth/index.js';
import { fail } from '../output.js';
import { trustCa } from '../credentials.js';

interface NodeFlags {
  name: string;
  manager: string;
  /** Parsed when the agent starts: the parser lives with the agent, which only `stratum node` loads. */
  disk: string[];
  dataDir?: string;
  address: string;
  images?: string[];
  restartBackoffMs?: string;
  restartBackoffMaxMs?: string;
  heartbeatIntervalMs?: string;
  diskSyncIntervalMs?: string;
  portDir?: string;
  portRange?: string;
  listenPort?: string;
  credentials?: string;
}

function positive(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) fail(`${flag} must be a positive integer, not "${v}"`);
  return n;
}

export function addNodeCommand(program: Command): void {
  program
    .command('node')
    .description('run a node agent: register the node and its disks, heartbeat, run the pods bound to it')
    .requiredOption('--name <name>', 'node name (the Node resource in longhorn-system)')
    .addOption(new Option('--manager <url>', 'API server of the manager (several managers: comma-separated)').env('STRATUM_SERVER').default('http://127.0.0.1:9500'))
    .option('--disk <path[:tag,tag]>', 'a disk directory, with optional tags; repeat for more disks', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--data-dir <dir>', 'where the agent keeps pod records and logs (default .stratum/<name>/agent)')
    .option('--address <ip>', "this node's IP: pods' hostIP and podIP, where the agent's endpoint listens", '127.0.0.1')
    .option('--images <file>', 'image catalog (YAML or JSON) added to the built-in one; repeatable (later files win)', (v: string, all: string[] | undefined) => [...(all ?? []), v])
    .option('--restart-backoff-ms <ms>', 'first crash-loop backoff step (doubles up to 30x)', '10000')
    .option('--restart-backoff-max-ms <ms>', 'crash-loop backoff cap')
    .option('--heartbeat-interval-ms <ms>', 'how often the heartbeat Lease is renewed', '2000')
    .option('--disk-sync-interval-ms <ms>', 'how often disk space and state are reported', '30000')
    .option('--port-dir <dir>', 'machine-wide host-port reservations; every agent on the machine must share it')
    .option('--port-range <lo-hi>', 'host ports handed to pods', '20000-29999')
    .option('--listen-port <port>', "port of the agent's endpoint (pod logs); default any free one")
    .addOption(new Option('--credentials <file>', `the node's credentials: its API token and the cluster secret (default <data-dir>/${NODE_CREDENTIALS_FILE})`).env('STRATUM_NODE_CREDENTIALS'))
    .action(async (o: NodeFlags) => {
      try {
        await runNode(o);
      } catch (err) {
        fail(err instanceof Error ? err.message : String(err));
      }
    });
}

async function runNode(o: NodeFlags): Promise<void> {
  const { parseDiskFlag, parsePortRange, startAgent } = await import('../../agent/index.js');
  const disks = o.disk.map((d) => parseDiskFlag(d));
  const ac = new AbortController();
  const started: { agent?: Awaited<ReturnType<typeof startAgent>> } = {};
  let stopping = false;
  const stop = async (stopPods: boolean): Promise<void> => {
    if (stopping) return;
    stopping = true;
    if (stopPods && started.agent) {
      process.stderr.write(`stratum node ${o.name}: stopping its pods, then the agent\n`);
      await started.agent.stopPods();
    }
    ac.abort();
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void stop(false));
  process.on('SIGUSR2', () => void stop(true));
  if (process.send) {
    process.on('message', (m: { type?: string; stopPods?: boolean; files?: string[] }) => {
      if (m?.type === 'shutdown') void stop(m.stopPods === true);
      // An upgrade: `up` hands over the catalog files of the new release before the new manager starts.
      if (m?.type === 'catalog' && Array.isArray(m.files)) {
        try {
          started.agent?.reloadCatalog(m.files);
        } catch (err) {
          process.stderr.write(`stratum node ${o.name}: cannot reload the image catalog: ${(err as Error).message}\n`);
        }
      }
    });
    // The parent (`stratum up`) is gone: nobody is left to stop this cluster, so take the pods down with us.
    process.on('disconnect', () => void stop(true));
  }
  const dataDir = o.dataDir ?? join('.stratum', o.name, 'agent');
  const credFile = o.credentials ?? join(dataDir, NODE_CREDENTIALS_FILE);
  if (!existsSync(credFile)) {
    fail(`no node credentials at ${credFile}: create them on the manager's machine with ` +
      `\`stratum token create ${o.name} --role node --node ${o.name} --manager-data-dir DIR --out FILE\` and pass --credentials FILE`);
  }
  const creds = readNodeCredentials(credFile);
  if (creds.caPem && o.manager.startsWith('https:')) await trustCa(creds.caPem);
  const agent = (started.agent = await startAgent({
    nodeName: o.name,
    managerUrl: o.manager.replace(/\/+$/, ''),
    credentials: { token: creds.token, clusterSecret: creds.clusterSecret },
    disks,
    dataDir,
    address: o.address,
    imagesFile: o.images,
    restartBackoffMs: positive('--restart-backoff-ms', o.restartBackoffMs),
    restartBackoffMaxMs: positive('--restart-backoff-max-ms', o.restartBackoffMaxMs),
    heartbeatIntervalMs: positive('--heartbeat-interval-ms', o.heartbeatIntervalMs),
    diskSyncIntervalMs: positive('--disk-sync-interval-ms', o.diskSyncIntervalMs),
    portDir: o.portDir,
    portRange: o.portRange ? parsePortRange(o.portRange) : undefined,
    listenPort: positive('--listen-port', o.listenPort),
    signal: ac.signal,
  }));
  // A stop that came while the agent was still registering stops no pods: it had not taken them over yet.
  await agent.done;
  process.exit(0);
}
