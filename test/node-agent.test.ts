// End-to-end tests of node agents on a real `stratum up` cluster: pods of test images through the real kubectl
// (watch, logs, delete), agent kill -9 and adoption (at the default node-down-timeout), manager kill -9,
// restart policies with backoff, unknown images, and port reservations across two agents on one machine.

import { authFor, nodeCredentialsFile } from './helpers/credentials.js';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  alive, api, createPod, getPod, httpPod, killRecordedCluster, killRecordedPods, nodeReady, podPid, podPorts, Proc,
  readCluster, startNodeAgent, startUp,
} from './helpers/cluster.js';
import { CLI, freePort, hasTool, kubectl, kubectlArgs, run, tempDir, waitFor } from './helpers/processes.js';

const skipKubectl = hasTool('kubectl') ? false : 'kubectl is not installed';
const dir = tempDir('node-agent');
let url = '';
let up: Proc | undefined;
/** Processes this file starts besides `stratum up` (a replacement agent, a replacement manager, extra agents). */
const extra: Proc[] = [];

/** Node credentials for an agent this file starts itself, where it looks by default (`<data-dir>/node-credentials.json`). */
function withCredentials(name: string): string {
  mkdirSync(join(dir.path, name), { recursive: true });
  return nodeCredentialsFile(join(dir.path, 'manager'), name, join(dir.path, name, 'node-credentials.json'));
}

before(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  up = await startUp(dir.path, port, ['--restart-backoff-ms', '300']);
});

after(async () => {
  // Agents first, with their pods (SIGUSR2), then `up` (its own agents and pods), then any manager of ours.
  for (const p of extra.filter((p) => !p.child.spawnargs.includes('manager'))) await p.stop('SIGUSR2', 30_000);
  await up?.stop('SIGINT');
  for (const p of extra) await p.stop('SIGTERM', 10_000);
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  dir.remove();
});

test('a pod on node-2: kubectl get -w shows Pending then Running, its port answers, kubectl logs, kubectl delete ends it', { skip: skipKubectl }, async () => {
  const watch = new Proc(['kubectl', ...kubectlArgs(url, ['get', 'pods', '-n', 'default', '-w'])]);
  try {
    await new Promise((r) => setTimeout(r, 500));
    await createPod(url, httpPod('web', 'node-2'));
    await waitFor(`kubectl -w to show Running (saw: ${watch.output})`, async () => /^web\s.*Running/m.test(watch.output));
    const phases = watch.output.split('\n').filter((l) => l.startsWith('web')).map((l) => /(Pending|Running)/.exec(l)?.[1]);
    assert.equal(phases[0], 'Pending', watch.output);
    assert.ok(phases.indexOf('Running') > 0, watch.output);
  } finally {
    await watch.stop();
  }
  const pod = await waitFor('web Ready', async () => {
    const p = await getPod(url, 'default', 'web');
    return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
  });
  const port = podPorts(pod)['http'];
  assert.ok(port, 'the allocated port is published on the pod');
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/hello`)).text(), 'ok web\n');
  const logs = await kubectl(url, ['logs', 'web', '-n', 'default']);
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, new RegExp(`stratum-test-http web listening on port ${port}`));
  assert.match(logs.stdout, /GET \/hello/);
  const tail = await run(process.execPath, [CLI, '--server', url, 'logs', 'web', '-n', 'default', '--tail', '1']);
  assert.equal(tail.stdout.trim().split('\n').length, 1, tail.stdout);
  const pid = podPid(pod) ?? 0;
  assert.ok(alive(pid));
  const del = await kubectl(url, ['delete', 'pod', 'web', '-n', 'default', '--timeout=30s']);
  assert.equal(del.code, 0, del.stderr);
  assert.equal(alive(pid), false, 'kubectl delete returned after the process ended');
  const gone = await fetch(`${url}/api/v1/namespaces/default/pods/web`, { headers: authFor(url) });
  assert.equal(gone.status, 404);
});

test('kill -9 of node-2\'s agent: the pod lives on, the node turns NotReady within node-down-timeout (30 s), a new agent adopts it', async (t) => {
  await createPod(url, httpPod('keeper', 'node-2'));
  const pod = await waitFor('keeper running', async () => {
    const p = await getPod(url, 'default', 'keeper');
    return p.status?.phase === 'Running' && podPid(p) ? p : undefined;
  });
  const pid = podPid(pod) ?? 0;
  const agent = readCluster(dir.path).processes?.['node-2'];
  assert.ok(agent);
  process.kill(agent.pid, 'SIGKILL');
  const killedAt = Date.now();
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(alive(pid), 'the pod process survives its agent');
  await waitFor('node-2 NotReady', async () => (await nodeReady(url, 'node-2')) === 'False', 45_000);
  const after = (Date.now() - killedAt) / 1000;
  t.diagnostic(`node-2 turned NotReady ${after} s after its agent was killed`);
  // 30 s after the last heartbeat, which came at most one heartbeat interval (2 s) before the kill.
  assert.ok(after <= 34, `node-2 turned NotReady ${after} s after its agent died`);
  assert.ok(after >= 25, `node-2 turned NotReady too early: ${after} s`);
  const node = await api<{ status: { conditions: { type: string; message: string }[] } }>(url, '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes/node-2');
  assert.match(node.status.conditions.find((c) => c.type === 'Ready')?.message ?? '', /no heartbeat from node-2 for \d+ s \(node-down-timeout 30 s\)/);
  assert.ok(alive(pid));

  const replacement = startNodeAgent(agent.argv);
  extra.push(replacement);
  await waitFor('node-2 Ready again', async () => (await nodeReady(url, 'node-2')) === 'True', 15_000);
  await waitFor(`adoption of pid ${pid} (agent output: ${replacement.output})`, async () => replacement.output.includes(`adopted running process ${pid}`));
  const adopted = await getPod(url, 'default', 'keeper');
  assert.equal(podPid(adopted), pid, 'same process');
  assert.equal(adopted.status?.containerStatuses?.[0]?.restartCount, 0, 'restart count unchanged');
  assert.equal(adopted.status?.phase, 'Running');
  assert.ok(alive(pid));
});

test('kill -9 of the manager and a restart: every pod keeps its pid, and agents carry on', async () => {
  const pods = (await api<{ items: { metadata: { name: string } }[] }>(url, '/api/v1/namespaces/default/pods')).items.map((p) => p.metadata.name);
  const before = new Map<string, number>();
  for (const name of pods) {
    const pid = podPid(await getPod(url, 'default', name));
    if (pid) before.set(name, pid);
  }
  assert.ok(before.size >= 1);
  const manager = readCluster(dir.path).processes?.['manager'];
  assert.ok(manager);
  process.kill(manager.pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 2000));
  for (const pid of before.values()) assert.ok(alive(pid), `pid ${pid} survives the manager`);
  const restarted = new Proc(manager.argv);
  extra.push(restarted);
  await waitFor('manager healthy', async () => (await fetch(`${url}/healthz`)).ok);
  await new Promise((r) => setTimeout(r, 4000));
  for (const [name, pid] of before) {
    assert.equal(podPid(await getPod(url, 'default', name)), pid, `${name} keeps pid ${pid}`);
    assert.ok(alive(pid));
  }
  // The agents' watches came back: a new pod runs.
  await createPod(url, httpPod('after-restart', 'node-1'));
  await waitFor('a pod created after the restart runs', async () => (await getPod(url, 'default', 'after-restart')).status?.phase === 'Running', 20_000);
});

test('restart policies: Always restarts with growing backoff; Never ends Failed with the exit code; unknown images fail', async () => {
  const exitPod = (name: string, policy: string) => ({
    metadata: { name, namespace: 'default' },
    spec: { nodeName: 'node-3', restartPolicy: policy, containers: [{ name: 'main', image: 'stratum-test-exit:v1', env: [{ name: 'EXIT_CODE', value: '1' }] }] },
  });
  await createPod(url, exitPod('crasher', 'Always'));
  await createPod(url, exitPod('once', 'Never'));
  // An image the catalog lacks is refused by the manager already (pod confinement, docs/security.md).
  const noImage = await createPod(url, { metadata: { name: 'no-image', namespace: 'default' }, spec: { nodeName: 'node-3', containers: [{ name: 'main', image: 'no-such-image:v9' }] } }).then(() => undefined, (err: Error) => err);
  // The Status body is JSON inside the message: its quotes are escaped.
  assert.match(noImage?.message ?? '', /HTTP 422 .*spec\.containers\[0\]\.image.*no-such-image:v9\\" is not in the image catalog/);
  // Failed is published first, then the finalizer goes: wait for both.
  const once = await waitFor('Never pod Failed, without finalizer', async () => {
    const p = await getPod(url, 'default', 'once');
    return p.status?.phase === 'Failed' && (p.metadata.finalizers ?? []).length === 0 ? p : undefined;
  });
  assert.equal(once.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 1);
  assert.equal(once.status?.containerStatuses?.[0]?.restartCount, 0);
  assert.match(once.status?.message ?? '', /exited with code 1/);
  // Base 300 ms: restarts after 0.3, 0.6, 1.2, 2.4 s …; four restarts take about 4.5 s, not 1.2 s.
  const t0 = Date.now();
  const seen: string[] = [];
  const crasher = await waitFor('crasher restarted 4 times', async () => {
    const p = await getPod(url, 'default', 'crasher');
    const reason = p.status?.containerStatuses?.[0]?.state?.waiting?.reason;
    if (reason && !seen.includes(reason)) seen.push(reason);
    return (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 4 ? p : undefined;
  }, 30_000);
  assert.ok(Date.now() - t0 >= 3000, `4 restarts took only ${Date.now() - t0} ms: no backoff?`);
  assert.equal(crasher.status?.phase, 'Running');
  assert.equal(crasher.status?.containerStatuses?.[0]?.lastState?.terminated?.exitCode, 1);
  assert.ok(seen.includes('CrashLoopBackOff'), `waiting reasons seen: ${seen.join(', ')}`);
  const prev = await run(process.execPath, [CLI, '--server', url, 'logs', 'crasher', '-n', 'default', '--previous']);
  assert.match(prev.stdout, /stratum-test-exit: pid \d+ exiting with 1/, prev.stderr);
});

test('two agents on one machine never hand out the same port', async () => {
  const portDir = join(dir.path, 'shared-ports');
  // Twelve ports: each node also runs its instance-manager pod (one port each), then the ten test pods. The range
  // lies outside the agents' default 20000-29999, where the pods of this file's cluster (and of any other agent on
  // the machine) take random ports: one of them in the range fails the bind check, and the range runs out a pod
  // early. It also lies below the ephemeral ports, which outgoing connections take.
  const range = '30100-30111';
  for (const name of ['node-a', 'node-b']) withCredentials(name);
  const agents = ['node-a', 'node-b'].map((name) =>
    startNodeAgent([process.execPath, CLI, 'node', '--name', name, '--manager', url, '--data-dir', join(dir.path, name), '--port-dir', portDir, '--port-range', range]),
  );
  extra.push(...agents);
  await waitFor('both agents registered', async () => (await nodeReady(url, 'node-a')) === 'True' && (await nodeReady(url, 'node-b')) === 'True');
  // Ten pods with one port each, created at once on both nodes: every port exactly once.
  const names = Array.from({ length: 10 }, (_, i) => `p${i}`);
  await Promise.all(names.map((n, i) => createPod(url, httpPod(n, i % 2 ? 'node-a' : 'node-b'))));
  const ports = await waitFor('every pod has a port', async () => {
    const got = await Promise.all(names.map(async (n) => podPorts(await getPod(url, 'default', n))['http']));
    return got.every((p) => p !== undefined) ? (got as number[]) : undefined;
  }, 30_000);
  assert.equal(new Set(ports).size, 10, `ports: ${ports.join(', ')}`);
  for (const p of ports) assert.ok(p >= 30100 && p <= 30111);
  const files = readFileSync(join(portDir, String(ports[0])), 'utf8');
  assert.match(files, /"owner":"node-[ab]\/default\/p\d\//);
  // The eleventh pod waits, saying why and what to do.
  await createPod(url, httpPod('p10', 'node-a'));
  const waiting = await waitFor('p10 waits for a port', async () => {
    const p = await getPod(url, 'default', 'p10');
    return p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'PortsExhausted' ? p : undefined;
  });
  assert.equal(waiting.status?.phase, 'Pending');
  // Deleting one pod frees its port for the waiting one.
  await api(url, '/api/v1/namespaces/default/pods/p0', { method: 'DELETE' });
  await waitFor('p10 gets the freed port', async () => podPorts(await getPod(url, 'default', 'p10'))['http'] === ports[0], 20_000);
});

test('a disk whose longhorn-disk.cfg disagrees with the recorded diskUUID is reported not Ready, saying why', async (t) => {
  const disk = join(dir.path, 'node-d-disk');
  const argv = [process.execPath, CLI, 'node', '--name', 'node-d', '--manager', url, '--disk', disk, '--data-dir', join(dir.path, 'node-d')];
  mkdirSync(disk, { recursive: true });
  withCredentials('node-d');
  const diskReady = async () => {
    const n = await api<{ status?: { diskStatus?: Record<string, { diskUUID: string; conditions?: { type: string; status: string; reason: string; message: string }[] }> } }>(url, '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes/node-d');
    const d = n.status?.diskStatus?.['node-d-disk'];
    return d ? { uuid: d.diskUUID, ready: d.conditions?.find((c) => c.type === 'Ready') } : undefined;
  };
  const first = startNodeAgent(argv);
  extra.push(first);
  const recorded = await waitFor('node-d disk Ready', async () => {
    const d = await diskReady();
    return d?.ready?.status === 'True' ? d.uuid : undefined;
  }, 30_000);
  assert.equal(recorded, (JSON.parse(readFileSync(join(disk, 'longhorn-disk.cfg'), 'utf8')) as { diskUUID: string }).diskUUID);
  const t0 = Date.now();
  await first.stop('SIGTERM');
  t.diagnostic(`the first node-d agent stopped in ${Date.now() - t0} ms`);
  writeFileSync(join(disk, 'longhorn-disk.cfg'), JSON.stringify({ diskName: 'node-d-disk', diskUUID: 'another-disk-uuid' }));
  const second = startNodeAgent(argv);
  extra.push(second);
  const bad = await waitFor('node-d disk not Ready', async () => {
    const d = await diskReady();
    return d?.ready?.status === 'False' ? d : undefined;
  }, 30_000).catch((err: Error) => {
    throw new Error(`${err.message}\n--- first agent:\n${first.output}\n--- second agent:\n${second.output}`);
  });
  assert.equal(bad.ready?.reason, 'DiskFilesystemChanged');
  assert.match(bad.ready?.message ?? '', new RegExp(`holds diskUUID another-disk-uuid but the node recorded ${recorded}`));
  assert.equal(bad.uuid, recorded, 'the recorded UUID is kept, not replaced by the stranger');
});
