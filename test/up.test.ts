// End-to-end: `stratum up` in an empty directory gives three Ready nodes with one disk each (checked with the
// real kubectl against the disks' longhorn-disk.cfg); Ctrl-C stops everything including pods; a second run over
// the same directory resumes the same cluster: node names, disk UUIDs, resources, and pods running again.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  alive, createPod, getPod, httpPod, killRecordedCluster, killRecordedPods, podPid, readCluster, startUp, type Proc,
} from './helpers/cluster.js';
import { freePort, hasTool, kubectl, run, tempDir, waitFor } from './helpers/processes.js';

const skipKubectl = hasTool('kubectl') ? false : 'kubectl is not installed';
const dir = tempDir('up');
let port = 0;
let up: Proc | undefined;

after(async () => {
  await up?.stop('SIGINT');
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  dir.remove();
});

/** node name → diskUUID as kubectl shows them, only for Ready nodes. */
async function readyNodesAndDisks(url: string): Promise<Map<string, string>> {
  const res = await kubectl(url, [
    'get', 'nodes.longhorn.io', '-n', 'longhorn-system', '-o',
    'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.diskStatus.*.diskUUID}{"\\n"}{end}',
  ]);
  assert.equal(res.code, 0, res.stderr);
  const out = new Map<string, string>();
  for (const line of res.stdout.trim().split('\n').filter(Boolean)) {
    const [name = '', ready, ...uuids] = line.split(' ');
    assert.equal(uuids.length, 1, `node ${name} has exactly one disk: ${line}`);
    if (ready === 'True') out.set(name, uuids[0] ?? '');
  }
  return out;
}

function cfgUUID(node: string): string {
  return (JSON.parse(readFileSync(join(dir.path, node, 'disk-1', 'longhorn-disk.cfg'), 'utf8')) as { diskUUID: string }).diskUUID;
}

let firstRun = new Map<string, string>();

test('stratum up in an empty directory: three Ready nodes within 15 s, each disk UUID from its longhorn-disk.cfg', { skip: skipKubectl }, async () => {
  port = await freePort();
  const t0 = Date.now();
  up = await startUp(dir.path, port);
  const url = `http://127.0.0.1:${port}`;
  const kubeconfig = join(dir.path, 'kubeconfig');
  assert.ok(up.output.includes(`kubectl --kubeconfig ${kubeconfig} get nodes.longhorn.io -n longhorn-system`), up.output);
  assert.match(up.output, /stratum --server \S+ get lhn/);
  firstRun = await waitFor('three Ready nodes in kubectl', async () => {
    const m = await readyNodesAndDisks(url);
    return m.size === 3 ? m : undefined;
  }, 15_000 - (Date.now() - t0));
  assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
  assert.deepEqual([...firstRun.keys()].sort(), ['node-1', 'node-2', 'node-3']);
  for (const [node, uuid] of firstRun) assert.equal(uuid, cfgUUID(node), `${node}'s diskUUID matches its longhorn-disk.cfg`);
  const table = await kubectl(url, ['get', 'nodes.longhorn.io', '-n', 'longhorn-system']);
  assert.equal(table.stdout.trim().split('\n').length, 4, table.stdout);
  // The generated kubeconfig is all kubectl needs (no --server, no token on the command line).
  const own = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'nodes.longhorn.io', '-n', 'longhorn-system', '-o', 'name']);
  assert.equal(own.code, 0, own.stderr);
  assert.equal(own.stdout.trim().split('\n').length, 3, own.stdout);
  // And without a credential the same request is refused.
  const anonymous = await run('kubectl', ['--server', url, 'get', 'nodes.longhorn.io', '-n', 'longhorn-system'], { env: { ...process.env, KUBECONFIG: '/dev/null' } });
  assert.notEqual(anonymous.code, 0);
  assert.match(anonymous.stderr, /Unauthorized|must be logged in/i);
});

test('Ctrl-C stops pods too; a second stratum up resumes the same cluster', { skip: skipKubectl }, async () => {
  assert.ok(up, 'the first test started the cluster');
  const url = `http://127.0.0.1:${port}`;
  await createPod(url, httpPod('survivor', 'node-1'));
  const pod = await waitFor('pod running', async () => {
    const p = await getPod(url, 'default', 'survivor');
    return p.status?.phase === 'Running' && podPid(p) ? p : undefined;
  });
  const pid = podPid(pod) ?? 0;
  assert.ok(alive(pid));
  const managerPid = readCluster(dir.path).processes?.['manager']?.pid ?? 0;

  await up.stop('SIGINT');
  assert.match(up.output, /stratum up: stopped/);
  assert.equal(alive(pid), false, 'the pod process was stopped with the cluster');
  assert.equal(alive(managerPid), false, 'the manager was stopped');

  up = await startUp(dir.path, port);
  assert.equal(readCluster(dir.path).port, port, 'the port is remembered');
  const second = await waitFor('three Ready nodes again', async () => {
    const m = await readyNodesAndDisks(url);
    return m.size === 3 ? m : undefined;
  });
  assert.deepEqual([...second.entries()].sort(), [...firstRun.entries()].sort(), 'same node names and disk UUIDs');
  const again = await waitFor('the pod running again', async () => {
    const p = await getPod(url, 'default', 'survivor');
    return p.status?.phase === 'Running' && podPid(p) && podPid(p) !== pid ? p : undefined;
  });
  assert.equal(again.metadata.uid, pod.metadata.uid, 'the same Pod resource');
  assert.equal(again.status?.containerStatuses?.[0]?.restartCount, 1, 'restarted once, after the cluster stopped');
});

test('a manager or agent that dies is started again by stratum up; pods keep running and are adopted', { skip: skipKubectl }, async () => {
  assert.ok(up, 'the earlier tests started the cluster');
  const url = `http://127.0.0.1:${port}`;
  await up.stop('SIGINT');
  up = await startUp(dir.path, port, [], { supervise: true });
  const pod = await waitFor('the pod running', async () => {
    const p = await getPod(url, 'default', 'survivor');
    return p.status?.phase === 'Running' && podPid(p) ? p : undefined;
  });
  const podPidBefore = podPid(pod) ?? 0;
  const restartsBefore = pod.status?.containerStatuses?.[0]?.restartCount;
  const started = up;

  const manager = readCluster(dir.path).processes?.['manager']?.pid ?? 0;
  process.kill(manager, 'SIGKILL');
  await waitFor('up restarts the manager', async () => /stratum up: manager restarted \(pid \d+\)/.test(started.output) || undefined, 30_000);
  assert.match(started.output, /stratum up: manager exited \(SIGKILL\); restarting it in 1 s/);
  const fresh = readCluster(dir.path).processes?.['manager']?.pid ?? 0;
  assert.ok(fresh > 0 && fresh !== manager && alive(fresh), 'cluster.json names the new manager');
  await waitFor('the API answers again', async () => (await readyNodesAndDisks(url)).size === 3 || undefined, 30_000);

  const agent = readCluster(dir.path).processes?.['node-1']?.pid ?? 0;
  process.kill(agent, 'SIGKILL');
  await waitFor('up restarts node-1', async () => /stratum up: node-1 restarted \(pid \d+\)/.test(started.output) || undefined, 30_000);
  const freshAgent = readCluster(dir.path).processes?.['node-1']?.pid ?? 0;
  assert.ok(freshAgent !== agent && alive(freshAgent));
  // The pod outlived its agent and the new agent adopted it: the same process, not restarted.
  const adopted = await waitFor('node-1 Ready with its pod', async () => {
    if ((await readyNodesAndDisks(url)).size !== 3) return undefined;
    const p = await getPod(url, 'default', 'survivor');
    return p.status?.phase === 'Running' ? p : undefined;
  }, 30_000);
  assert.equal(podPid(adopted), podPidBefore, 'the same pod process');
  assert.ok(alive(podPidBefore));
  assert.equal(adopted.status?.containerStatuses?.[0]?.restartCount, restartsBefore, 'not restarted by the agent restart');
});
