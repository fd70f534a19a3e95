// `stratum up`: a whole cluster on this machine — the manager and N node agents as separate processes — over
// one data directory, until Ctrl-C, which stops the agents with their pods and then the manager. Running it
// again over the same directory resumes the same cluster (node names, disk UUIDs, resources).
//
//   DIR/kubeconfig            the admin credential (kubectl --kubeconfig DIR/kubeconfig; `stratum` reads it by default)
//   DIR/cluster.json          node and disk counts and port (so a second run needs no flags), and the
//                             processes of the current run (pid, argv, log) for tools and tests
//   DIR/manager/              the manager's state; manager.log; release.yaml, the active release after an upgrade
//                             (its catalog entries are handed to the agents: docs/upgrade.md)
//   DIR/node-<i>/agent/       the agent's records and pod logs; agent.log
//   DIR/node-<i>/disk-<j>/    a disk (holds longhorn-disk.cfg)
//
// Children run in their own process groups, so a terminal's Ctrl-C reaches only `up`, which then stops them in
// order. Agents get an IPC channel: `up` tells them to stop their pods over it, and if `up` itself dies the
// channel closes and they stop their pods on their own (see node.ts). The manager gets one too, for the same
// reason; it exits on its close only if `stratum manager` listens for that. Over the same channel the manager asks
// to be restarted when it accepted an upgrade. A manager or agent that exits on its own is started again after a
// backoff (up-supervisor.ts; `--no-supervise` turns that off).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { readKubeconfig } from '../../auth/index.js';
import { fail } from '../output.js';
import { prepareUpCredentials } from './up-credentials.js';
import { Supervisor } from './up-supervisor.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');

interface UpFlags {
  nodes?: string;
  disksPerNode?: string;
  dataDir: string;
  port?: string;
  host: string;
  images?: string;
  restartBackoffMs?: string;
  readyTimeout: string;
  store?: string;
  managers?: string;
  supervise: boolean;
}

interface ClusterFile {
  nodes: number;
  disksPerNode: number;
  port: number;
  processes?: Record<string, { pid: number; argv: string[]; log: string }>;
}

interface Child {
  name: string;
  /** Stopped on purpose to be started again (an upgrade restarts the manager). */
  replaced?: boolean;
  proc: ChildProcess;
  argv: string[];
  log: string;
  exited: Promise<void>;
}

export function addUpCommand(program: Command): void {
  program
    .command('up')
    .description('run a cluster on this machine: the manager and N node agents, until Ctrl-C')
    .option('--nodes <n>', 'number of nodes (default 3, or what the data dir was created with)')
    .option('--disks-per-node <n>', 'disks per node (default 1, or what the data dir was created with)')
    .option('--data-dir <dir>', 'where the cluster lives', '.stratum')
    .option('--port <port>', 'API server port (default 9500, or what the data dir was created with)')
    .option('--host <addr>', 'API server address', '127.0.0.1')
    .option('--images <file>', 'image catalog for the agents (added to the built-in one)')
    .option('--restart-backoff-ms <ms>', "agents' first crash-loop backoff step")
    .option('--ready-timeout <seconds>', 'how long to wait for every node to become Ready', '30')
    .option('--store <store>', 'sqlite (one manager, embedded) or etcd (a 3-member etcd from the machine, several managers)')
    .option('--managers <n>', 'managers on etcd (default 3); they elect a leader that runs the controllers')
    .option('--no-supervise', 'do not restart a manager or node agent that exits on its own (to simulate outages)')
    .action(async (o: UpFlags) => {
      try {
        await up(o);
      } catch (err) {
        fail(err instanceof Error ? err.message : String(err));
      }
    });
}

function count(flag: string, v: string | undefined, stored: number | undefined, def: number, min = 1): number {
  if (v === undefined) return stored ?? def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > 65535) fail(`${flag} must be an integer of at least ${min}, not "${v}"`);
  return n;
}

async function up(o: UpFlags): Promise<void> {
  const { lockDataDir, portIsFree } = await import('../../agent/index.js');
  const dir = resolve(o.dataDir);
  const clusterFile = join(dir, 'cluster.json');
  const before = existsSync(clusterFile) ? (JSON.parse(readFileSync(clusterFile, 'utf8')) as Partial<ClusterFile> & { store?: string; managers?: number }) : undefined;
  const store = o.store ?? before?.store ?? 'sqlite';
  if (store !== 'sqlite' && store !== 'etcd') fail(`--store must be sqlite or etcd, not "${store}"`);
  if (store === 'etcd') {
    // Loaded only here: it brings the agent's modules, which `stratum --help` and every pod must not load.
    const { upEtcd } = await import('./up-etcd.js');
    return upEtcd({
      nodes: count('--nodes', o.nodes, before?.nodes, 3),
      disksPerNode: count('--disks-per-node', o.disksPerNode, before?.disksPerNode, 1),
      managers: count('--managers', o.managers, before?.managers, 3),
      port: count('--port', o.port, before?.port, 9500),
      host: o.host,
      dataDir: dir,
      images: o.images,
      restartBackoffMs: o.restartBackoffMs,
      supervise: o.supervise,
      readyTimeoutMs: Number(o.readyTimeout) * 1000,
    });
  }
  if (before?.store === undefined && o.managers !== undefined) fail('--managers needs --store etcd');
  mkdirSync(dir, { recursive: true });
  const lock = await lockDataDir(dir, 'stratum up', 'up.lock');
  const clusterPath = join(dir, 'cluster.json');
  const stored = existsSync(clusterPath) ? (JSON.parse(readFileSync(clusterPath, 'utf8')) as ClusterFile) : undefined;
  const cluster: ClusterFile = {
    nodes: count('--nodes', o.nodes, stored?.nodes, 3),
    disksPerNode: count('--disks-per-node', o.disksPerNode, stored?.disksPerNode, 1),
    port: count('--port', o.port, stored?.port, 9500),
    processes: {},
  };
  const url = `http://${o.host === '0.0.0.0' ? '127.0.0.1' : o.host}:${cluster.port}`;
  // Checked first: with another server on the port, the health check below would succeed against the wrong one.
  if (!(await portIsFree(cluster.port))) {
    await lock.release();
    throw new Error(`port ${cluster.port} is in use (another stratum up or manager?); stop it or choose another --port`);
  }
  const children: Child[] = [];
  const save = (): void => writeFileSync(clusterPath, `${JSON.stringify(cluster, null, 2)}\n`);
  let shuttingDown = false;
  const supervisor = new Supervisor({ enabled: o.supervise, log: (line) => process.stdout.write(`${line}\n`) });
  const shutdown = async (): Promise<void> => {
    shuttingDown = true;
    supervisor.stop();
    process.stdout.write('stratum up: stopping the node agents and their pods, then the manager (Ctrl-C again to force)\n');
    const agents = children.filter((c) => c.name !== 'manager');
    for (const a of agents) {
      if (a.proc.connected) a.proc.send({ type: 'shutdown', stopPods: true });
      else signal(a.proc, 'SIGUSR2');
    }
    // Pods get their grace period (30 s by default) before SIGKILL; allow for it.
    await Promise.all(agents.map((a) => waitOrKill(a, 60_000)));
    const manager = children.find((c) => c.name === 'manager');
    if (manager) {
      signal(manager.proc, 'SIGTERM');
      await waitOrKill(manager, 10_000);
    }
    delete cluster.processes;
    save();
    await lock.release();
    process.stdout.write('stratum up: stopped\n');
    process.exit(0);
  };
  let firstSignal = 0;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      // One Ctrl-C can arrive twice (from the terminal and forwarded by `npm start`): only a second press, a
      // moment later, means "force".
      if (firstSignal > 0 && Date.now() - firstSignal > 1000) {
        // Forced: kill what is left; pods that were not stopped yet keep running until the next `up` adopts them.
        for (const c of children) signal(c.proc, 'SIGKILL');
        process.exit(1);
      }
      if (firstSignal > 0) return;
      firstSignal = Date.now();
      void shutdown();
    });
  }

  /** Starts a child; `relaunch` starts it again when it exits on its own (the supervisor decides when). */
  const start = (name: string, args: string[], log: string, ipc: boolean, relaunch: () => void = () => start(name, args, log, ipc)): Child => {
    mkdirSync(dirname(log), { recursive: true });
    const fd = openSync(log, 'a');
    const argv = [process.execPath, CLI, ...args];
    const proc = spawn(argv[0] ?? process.execPath, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd, ...(ipc ? ['ipc' as const] : [])] });
    closeSync(fd);
    const child: Child = { name, proc, argv, log, exited: new Promise((r) => proc.once('exit', () => r())) };
    const startedAt = Date.now();
    proc.once('exit', (code, sig) => {
      if (shuttingDown || child.replaced) return;
      if (children.includes(child)) children.splice(children.indexOf(child), 1);
      supervisor.exited(name, sig ?? `code ${code}`, log, startedAt, () => {
        if (shuttingDown) return;
        relaunch();
        save();
        process.stdout.write(`stratum up: ${name} restarted (pid ${cluster.processes?.[name]?.pid ?? '?'})\n`);
      });
    });
    children.push(child);
    (cluster.processes ??= {})[name] = { pid: proc.pid ?? 0, argv, log };
    return child;
  };

  const nodeNames = Array.from({ length: cluster.nodes }, (_, i) => `node-${i + 1}`);
  const creds = prepareUpCredentials(dir, join(dir, 'manager'), url, nodeNames.map((name) => ({ name, agentDir: join(dir, name, 'agent') })));
  const token = readKubeconfig(creds.kubeconfig).token;
  // The manager gets an IPC channel too, so that it can notice when `up` is gone (the channel closes).
  const managerArgs = ['manager', '--host', o.host, '--port', String(cluster.port), '--data-dir', join(dir, 'manager')];
  if (o.images) managerArgs.push('--images', resolve(o.images));
  // The active release (written by the manager when it accepts an upgrade) completes the agents' catalog.
  const releaseFile = join(dir, 'manager', 'release.yaml');
  const catalogFiles = () => [...(o.images ? [resolve(o.images)] : []), ...(existsSync(releaseFile) ? [releaseFile] : [])];
  const startManager = (): Child => {
    const m = start('manager', managerArgs, join(dir, 'manager', 'manager.log'), true, () => void startManager());
    m.proc.on('message', (msg: { type?: string }) => {
      if (msg?.type === 'restart-manager' && !shuttingDown) void restartManager(m);
    });
    return m;
  };
  // An accepted upgrade: the agents get the release's catalog first (the new manager creates pods of its images),
  // then the manager is replaced by one started on the release, as a Longhorn upgrade replaces longhorn-manager.
  const restartManager = async (old: Child): Promise<void> => {
    process.stdout.write('stratum up: an upgrade was accepted; handing the release to the node agents and restarting the manager\n');
    for (const a of children.filter((c) => c.name !== 'manager')) if (a.proc.connected) a.proc.send({ type: 'catalog', files: catalogFiles() });
    old.replaced = true;
    signal(old.proc, 'SIGTERM');
    await waitOrKill(old, 15_000);
    children.splice(children.indexOf(old), 1);
    if (shuttingDown) return;
    const fresh = startManager();
    save();
    await waitHealthy(url, fresh, 20_000).catch((err: Error) => process.stdout.write(`stratum up: ${err.message}\n`));
    process.stdout.write(`stratum up: manager restarted (pid ${fresh.proc.pid})\n`);
  };
  const manager = startManager();
  save();
  await waitHealthy(url, manager, 20_000);
  // Its arguments are made at each start: an agent restarted after an upgrade gets the release's catalog too.
  const startAgent = (name: string): void => {
    const disks: string[] = [];
    for (let j = 1; j <= cluster.disksPerNode; j++) {
      const d = join(dir, name, `disk-${j}`);
      mkdirSync(d, { recursive: true });
      disks.push('--disk', d);
    }
    const args = ['node', '--name', name, '--manager', url, ...disks, '--data-dir', join(dir, name, 'agent'), '--credentials', creds.nodeFiles.get(name) ?? ''];
    for (const f of catalogFiles()) args.push('--images', f);
    if (o.restartBackoffMs) args.push('--restart-backoff-ms', o.restartBackoffMs);
    start(name, args, join(dir, name, 'agent', 'agent.log'), true, () => startAgent(name));
  };
  for (const name of nodeNames) startAgent(name);
  save();
  const ready = await waitNodesReady(url, token, cluster.nodes, Number(o.readyTimeout) * 1000);
  const lines = [
    `stratum up: ${cluster.nodes} node(s) × ${cluster.disksPerNode} disk(s) in ${dir}`,
    ...children.map((c) => `  ${c.name.padEnd(8)} pid ${String(c.proc.pid).padEnd(8)} log ${c.log}`),
    ready ? `  all ${cluster.nodes} nodes are Ready` : `  not every node is Ready after ${o.readyTimeout} s: see the agent logs above`,
    '',
    `API: ${url.replace(/^http:/, 'https:')} (plain HTTP from this machine too; admin credentials: ${creds.kubeconfig})`,
    'Try:',
    `  kubectl --kubeconfig ${creds.kubeconfig} get nodes.longhorn.io -n longhorn-system`,
    `  stratum ${cluster.port === 9500 && o.host === '127.0.0.1' ? '' : `--server ${url} `}get lhn`,
    `  stratum images`,
    'Ctrl-C stops the cluster (manager, node agents and their pods); `stratum up` again resumes it.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await new Promise(() => undefined);
}

function signal(p: ChildProcess, sig: NodeJS.Signals): void {
  if (p.exitCode === null && p.signalCode === null) p.kill(sig);
}

async function waitOrKill(c: Child, ms: number): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const timer = setTimeout(() => {
    process.stdout.write(`stratum up: ${c.name} did not stop within ${ms / 1000} s; killing it\n`);
    signal(c.proc, 'SIGKILL');
  }, ms);
  await c.exited;
  clearTimeout(timer);
}

async function waitHealthy(url: string, manager: Child, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (manager.proc.exitCode !== null) throw new Error(`the manager exited with code ${manager.proc.exitCode}; see ${manager.log}`);
    try {
      if ((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  signal(manager.proc, 'SIGKILL');
  throw new Error(`the manager did not answer on ${url} within ${ms / 1000} s (port in use?); see ${manager.log}`);
}

async function waitNodesReady(url: string, token: string, n: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
      const list = (await res.json()) as { items?: { status?: { conditions?: { type: string; status: string }[] } }[] };
      const ready = (list.items ?? []).filter((i) => i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      if (ready.length >= n) return true;
    } catch {
      // the manager may be busy starting
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}
