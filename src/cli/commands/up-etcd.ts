// `stratum up --store etcd --managers N`: the cluster on a three-member etcd (the machine's `etcd`) with N
// managers that elect a leader, plus the node agents, until Ctrl-C. Running it again over the same directory
// resumes the same etcd members (same ports: their peer URLs are in their data), managers and nodes.
//
//   DIR/kubeconfig            the admin credential, as for SQLite (its server is manager-1; the CA fits every manager)
//   DIR/cluster.json          as for SQLite, plus store, managers and the etcd ports
//   DIR/etcd/member-<i>/      an etcd member's data and etcd.log
//   DIR/manager/              the credentials every manager serves with (auth.json, CA and certificate; one
//                             directory so that a token issued or revoked holds on every manager), and
//                             release.yaml, the managers' copy of the active release stored in etcd
//
// An accepted upgrade (any manager asks, over IPC): the node agents get the release's catalog, then every manager
// is stopped and all are started again on it (none keeps running the old release beside the new ones).
//   DIR/manager-<i>/          a manager's log (its state is in etcd)
//   DIR/node-<i>/             as for SQLite (agent/node-credentials.json: the node's token and the cluster secret)
//
// Ctrl-C stops the agents with their pods, then the managers, then etcd. A manager or agent that exits on its own is
// started again after a backoff (up-supervisor.ts; `--no-supervise` turns that off).

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lockDataDir, portIsFree } from '../../agent/index.js';
import { readKubeconfig } from '../../auth/index.js';
import { hasEtcd, LocalEtcd } from '../../store/etcd/local-cluster.js';
import { RELEASE_FILE } from '../../manager/release-store.js';
import { prepareUpCredentials } from './up-credentials.js';
import { Supervisor } from './up-supervisor.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');
const ETCD_MEMBERS = 3;

export interface UpEtcdFlags {
  nodes: number;
  disksPerNode: number;
  managers: number;
  port: number;
  host: string;
  dataDir: string;
  images?: string | undefined;
  restartBackoffMs?: string | undefined;
  /** Restart a manager or agent that exits on its own (up-supervisor.ts). */
  supervise: boolean;
  readyTimeoutMs: number;
}

interface ClusterFile {
  store: 'etcd';
  nodes: number;
  disksPerNode: number;
  port: number;
  managers: number;
  etcd: { client: number; peer: number }[];
  processes?: Record<string, { pid: number; argv: string[]; log: string }>;
}

interface Child {
  name: string;
  proc: ChildProcess;
  log: string;
  exited: Promise<void>;
  /** Stopped on purpose to be started again (an upgrade): its exit is not news. */
  replaced?: boolean;
}

export async function upEtcd(o: UpEtcdFlags): Promise<void> {
  if (!hasEtcd()) throw new Error('--store etcd needs the `etcd` binary (Debian package etcd-server); install it or use --store sqlite');
  const dir = resolve(o.dataDir);
  mkdirSync(dir, { recursive: true });
  const lock = await lockDataDir(dir, 'stratum up', 'up.lock');
  const clusterPath = join(dir, 'cluster.json');
  const stored = existsSync(clusterPath) ? (JSON.parse(readFileSync(clusterPath, 'utf8')) as Partial<ClusterFile>) : undefined;
  if (stored && stored.store !== 'etcd') {
    await lock.release();
    throw new Error(`${dir} holds a cluster on SQLite; use another --data-dir for --store etcd`);
  }
  const cluster: ClusterFile = {
    store: 'etcd',
    nodes: o.nodes,
    disksPerNode: o.disksPerNode,
    port: o.port,
    managers: o.managers,
    // Peer URLs are part of an etcd member's identity: a resumed cluster must keep its ports.
    etcd: stored?.etcd ?? Array.from({ length: ETCD_MEMBERS }, (_, i) => ({ client: o.port + 100 + 2 * i, peer: o.port + 101 + 2 * i })),
    processes: {},
  };
  const host = o.host === '0.0.0.0' ? '127.0.0.1' : o.host;
  const managerPorts = Array.from({ length: cluster.managers }, (_, i) => cluster.port + i);
  const urls = managerPorts.map((p) => `http://${host}:${p}`);
  for (const p of [...managerPorts, ...cluster.etcd.flatMap((e) => [e.client, e.peer])]) {
    if (!(await portIsFree(p))) {
      await lock.release();
      throw new Error(`port ${p} is in use (another stratum up, manager or etcd?); stop it or choose another --port`);
    }
  }
  const save = (): void => writeFileSync(clusterPath, `${JSON.stringify(cluster, null, 2)}\n`);
  const etcd = new LocalEtcd({ dir: join(dir, 'etcd'), ports: cluster.etcd, host, token: `stratum-${cluster.port}`, detached: true });
  const children: Child[] = [];
  let shuttingDown = false;
  const supervisor = new Supervisor({ enabled: o.supervise, log: (line) => process.stdout.write(`${line}\n`) });
  let restarting: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    shuttingDown = true;
    supervisor.stop();
    process.stdout.write('stratum up: stopping the node agents and their pods, then the managers, then etcd (Ctrl-C again to force)\n');
    const agents = children.filter((c) => c.name.startsWith('node-'));
    for (const a of agents) {
      if (a.proc.connected) a.proc.send({ type: 'shutdown', stopPods: true });
      else signal(a.proc, 'SIGUSR2');
    }
    await Promise.all(agents.map((a) => waitOrKill(a, 60_000)));
    await restarting;
    const managers = children.filter((c) => c.name.startsWith('manager-'));
    for (const m of managers) signal(m.proc, 'SIGTERM');
    await Promise.all(managers.map((m) => waitOrKill(m, 10_000)));
    await etcd.stop('SIGTERM');
    delete cluster.processes;
    save();
    await lock.release();
    process.stdout.write('stratum up: stopped\n');
    process.exit(0);
  };
  let firstSignal = 0;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (firstSignal > 0 && Date.now() - firstSignal > 1000) {
        for (const c of children) signal(c.proc, 'SIGKILL');
        void etcd.stop('SIGKILL').finally(() => process.exit(1));
        return;
      }
      if (firstSignal > 0) return;
      firstSignal = Date.now();
      void shutdown();
    });
  }

  /** Starts a child; `relaunch` starts it again when it exits on its own (the supervisor decides when). */
  const start = (name: string, args: string[], log: string, relaunch: () => Child = () => start(name, args, log)): Child => {
    mkdirSync(dirname(log), { recursive: true });
    const fd = openSync(log, 'a');
    const argv = [process.execPath, CLI, ...args];
    const proc = spawn(process.execPath, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd, 'ipc'] });
    closeSync(fd);
    const child: Child = { name, proc, log, exited: new Promise((r) => proc.once('exit', () => r())) };
    const startedAt = Date.now();
    proc.once('exit', (code, sig) => {
      if (shuttingDown || child.replaced) return;
      // Replaced in place, so that the listing keeps managers in their order (their index is their port's).
      supervisor.exited(name, sig ?? `code ${code}`, log, startedAt, () => {
        // An upgrade may have replaced every manager in the meantime: then this one was started again already.
        if (shuttingDown || child.replaced) return;
        const fresh = relaunch();
        const at = children.indexOf(child);
        if (at >= 0) {
          children.splice(children.indexOf(fresh), 1);
          children.splice(at, 1, fresh);
        }
        save();
        process.stdout.write(`stratum up: ${name} restarted (pid ${fresh.proc.pid})\n`);
      });
    });
    children.push(child);
    (cluster.processes ??= {})[name] = { pid: proc.pid ?? 0, argv, log };
    return child;
  };

  // Made before any manager starts, exactly as for one manager; the managers then share DIR/manager.
  const nodeNames = Array.from({ length: cluster.nodes }, (_, i) => `node-${i + 1}`);
  const managerDir = join(dir, 'manager');
  const creds = prepareUpCredentials(dir, managerDir, urls[0] ?? '', nodeNames.map((name) => ({ name, agentDir: join(dir, name, 'agent') })));
  const token = readKubeconfig(creds.kubeconfig).token;

  await etcd.start({ timeoutMs: 60_000 });
  etcd.members.forEach((m, i) => ((cluster.processes ??= {})[m.name] = { pid: etcd.pid(i) ?? 0, argv: etcd.argv(i), log: m.log }));
  save();
  // The managers keep their copy of the release stored in etcd here; it completes the agents' catalog.
  const releaseFile = join(managerDir, RELEASE_FILE);
  const catalogFiles = () => [...(o.images ? [resolve(o.images)] : []), ...(existsSync(releaseFile) ? [releaseFile] : [])];
  const startManager = (i: number): Child => {
    const name = `manager-${i + 1}`;
    const args = ['manager', '--host', o.host, '--port', String(managerPorts[i]), '--data-dir', managerDir, '--etcd', etcd.endpoints.join(',')];
    if (o.images) args.push('--images', resolve(o.images));
    const m = start(name, args, join(dir, name, 'manager.log'), () => startManager(i));
    m.proc.on('message', (msg: { type?: string }) => {
      if (msg?.type === 'restart-manager' && !shuttingDown && !restarting) restarting = restartManagers().finally(() => (restarting = undefined));
    });
    return m;
  };
  const startManagers = async (): Promise<void> => {
    for (let i = 0; i < cluster.managers; i++) await waitHealthy(urls[i] ?? '', startManager(i), 20_000);
    save();
  };
  // An accepted upgrade: the release is in etcd already. The agents get its catalog first (the new managers create
  // pods of its images), then every manager is replaced, as a Longhorn upgrade replaces every longhorn-manager pod.
  const restartManagers = async (): Promise<void> => {
    process.stdout.write('stratum up: an upgrade was accepted; handing the release to the node agents and restarting every manager\n');
    for (const a of children.filter((c) => c.name.startsWith('node-'))) if (a.proc.connected) a.proc.send({ type: 'catalog', files: catalogFiles() });
    const old = children.filter((c) => c.name.startsWith('manager-'));
    for (const m of old) {
      m.replaced = true;
      signal(m.proc, 'SIGTERM');
    }
    await Promise.all(old.map((m) => waitOrKill(m, 15_000)));
    for (const m of old) children.splice(children.indexOf(m), 1);
    if (shuttingDown) return;
    await startManagers().catch((err: Error) => process.stdout.write(`stratum up: ${err.message}\n`));
    process.stdout.write(`stratum up: managers restarted (${children.filter((c) => c.name.startsWith('manager-')).map((c) => `pid ${c.proc.pid}`).join(', ')})\n`);
  };
  await startManagers();
  // Its arguments are made at each start: an agent restarted after an upgrade gets the release's catalog too.
  const startAgent = (name: string): Child => {
    const disks: string[] = [];
    for (let j = 1; j <= cluster.disksPerNode; j++) {
      const d = join(dir, name, `disk-${j}`);
      mkdirSync(d, { recursive: true });
      disks.push('--disk', d);
    }
    const args = ['node', '--name', name, '--manager', urls.join(','), ...disks, '--data-dir', join(dir, name, 'agent'), '--credentials', creds.nodeFiles.get(name) ?? ''];
    for (const f of catalogFiles()) args.push('--images', f);
    if (o.restartBackoffMs) args.push('--restart-backoff-ms', o.restartBackoffMs);
    return start(name, args, join(dir, name, 'agent', 'agent.log'), () => startAgent(name));
  };
  for (const name of nodeNames) startAgent(name);
  save();
  const ready = await waitNodesReady(urls[0] ?? '', token, cluster.nodes, o.readyTimeoutMs);
  const lines = [
    `stratum up: ${cluster.nodes} node(s) × ${cluster.disksPerNode} disk(s), ${cluster.managers} manager(s) on a ${ETCD_MEMBERS}-member etcd, in ${dir}`,
    ...etcd.members.map((m, i) => `  ${m.name.padEnd(10)} pid ${String(etcd.pid(i)).padEnd(8)} ${etcd.endpoints[i]}  log ${m.log}`),
    ...children.map((c, i) => `  ${c.name.padEnd(10)} pid ${String(c.proc.pid).padEnd(8)} ${c.name.startsWith('manager-') ? `${urls[i]}  ` : ''}log ${c.log}`),
    ready ? `  all ${cluster.nodes} nodes are Ready` : `  not every node is Ready after ${o.readyTimeoutMs / 1000} s: see the agent logs above`,
    '',
    `API (any manager): ${urls.join(' ')} (admin credentials: ${creds.kubeconfig})`,
    `etcd: ${etcd.endpoints.join(',')}`,
    'Try:',
    `  kubectl --kubeconfig ${creds.kubeconfig} get nodes.longhorn.io -n longhorn-system`,
    `  stratum --server ${urls.join(',')} get lhn`,
    `  curl -H "Authorization: Bearer $TOKEN" ${urls[0]}/stratum/leader   (TOKEN: the kubeconfig's)`,
    'Ctrl-C stops the cluster (node agents and their pods, managers, etcd); `stratum up` again resumes it.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await new Promise(() => undefined);
}

function signal(p: ChildProcess, sig: NodeJS.Signals): void {
  if (p.exitCode === null && p.signalCode === null) p.kill(sig);
}

async function waitOrKill(c: Child, ms: number): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const timer = setTimeout(() => signal(c.proc, 'SIGKILL'), ms);
  await c.exited;
  clearTimeout(timer);
}

async function waitHealthy(url: string, m: Child, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (m.proc.exitCode !== null) throw new Error(`${m.name} exited with code ${m.proc.exitCode}; see ${m.log}`);
    try {
      if ((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  signal(m.proc, 'SIGKILL');
  throw new Error(`${m.name} did not answer on ${url} within ${ms / 1000} s; see ${m.log}`);
}

async function waitNodesReady(url: string, token: string, n: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
      const list = (await res.json()) as { items?: { status?: { conditions?: { type: string; status: string }[] } }[] };
      if ((list.items ?? []).filter((i) => i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length >= n) return true;
    } catch {
      // a manager may be busy starting
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}
