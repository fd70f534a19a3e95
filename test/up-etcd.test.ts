// End-to-end: `stratum up --store etcd --managers 3` starts a three-member etcd and three managers and prints every
// address; exactly one manager leads; a write through one manager is read through another; Ctrl-C stops every
// process it started; a second run over the same directory resumes the same cluster (same etcd data, same nodes).
// Credentials as for one manager: DIR/kubeconfig is all kubectl needs, on every manager; no token, no answer.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { hasEtcd } from '../src/store/etcd/local-cluster.js';
import { alive, killRecordedCluster, killRecordedPods, readCluster, startUp, type Proc } from './helpers/cluster.js';
import { adminToken, bearerHeaders } from './helpers/credentials.js';
import { freePort, run, tempDir, waitFor } from './helpers/processes.js';

const skip = hasEtcd() ? false : 'etcd is not installed (Debian package etcd-server)';
const dir = tempDir('up-etcd');
let up: Proc | undefined;

after(async () => {
  await up?.stop('SIGINT');
  killRecordedPods(dir.path);
  killRecordedCluster(dir.path);
  dir.remove();
});

/** The admin token `stratum up` wrote to DIR/kubeconfig. */
function auth(): Record<string, string> {
  return bearerHeaders(adminToken(dir.path));
}

async function isFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/** A base port whose managers' ports (base..base+2) and etcd's (base+100..base+105) are all free now. */
async function basePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = await freePort();
    if (base > 65_000) continue;
    const all = [base + 1, base + 2, ...Array.from({ length: 6 }, (_, i) => base + 100 + i)];
    if ((await Promise.all(all.map(isFree))).every(Boolean)) return base;
  }
  throw new Error('found no free range of ports');
}

async function leaders(urls: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const [i, u] of urls.entries()) {
    const r = (await (await fetch(`${u}/stratum/leader`, { headers: auth() })).json()) as { isLeader: boolean };
    if (r.isLeader) out.push(i);
  }
  return out;
}

test('stratum up --store etcd --managers 3: every address printed, one leader, writes seen through every manager; Ctrl-C stops all; a second run resumes', { skip, timeout: 240_000 }, async () => {
  const port = await basePort();
  const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${port + i}`);
  up = await startUp(dir.path, port, ['--store', 'etcd', '--managers', '3']);
  for (const u of urls) assert.match(up.output, new RegExp(`manager-\\d +pid \\d+ +${u}`));
  assert.match(up.output, new RegExp(`API \\(any manager\\): ${urls.join(' ')}`));
  for (let i = 0; i < 3; i++) assert.match(up.output, new RegExp(`etcd-${i + 1} +pid \\d+ +http://127\\.0\\.0\\.1:${port + 100 + 2 * i}`));
  assert.deepEqual((await waitFor('exactly one leader', async () => {
    const l = await leaders(urls);
    return l.length === 1 ? l : undefined;
  }, 30_000)).length, 1);

  // Credentials as for one manager: the kubeconfig up wrote works on every manager, nothing works without it.
  const kubeconfig = join(dir.path, 'kubeconfig');
  assert.ok(up.output.includes(`kubectl --kubeconfig ${kubeconfig} get nodes.longhorn.io -n longhorn-system`), up.output);
  for (const u of urls) {
    assert.equal((await fetch(`${u}/v1/settings`)).status, 401, `${u} without a token`);
    const k = await run('kubectl', ['--kubeconfig', kubeconfig, '--server', u.replace('http:', 'https:'), 'get', 'nodes.longhorn.io', '-n', 'longhorn-system', '-o', 'name']);
    assert.equal(k.code, 0, `kubectl on ${u}: ${k.stderr}`);
  }
  // Node agents authenticate with their own credentials files (given every manager's address): all become Ready.
  await waitFor('three Ready nodes', async () => {
    const k = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'nodes.longhorn.io', '-n', 'longhorn-system', '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}']);
    return k.stdout.split(' ').filter((x) => x === 'True').length === 3 ? true : undefined;
  }, 60_000);

  // A write through one manager is what every other manager reads.
  const put = await fetch(`${urls[1]}/v1/settings/backing-image-recovery-wait-interval`, { method: 'PUT', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ value: '77' }) });
  assert.equal(put.status, 200, await put.text());
  for (const u of urls) {
    const s = (await (await fetch(`${u}/v1/settings/backing-image-recovery-wait-interval`, { headers: auth() })).json()) as { value: string };
    assert.equal(s.value, '77', `read through ${u}`);
  }

  const pids = Object.entries(readCluster(dir.path).processes ?? {}).map(([name, p]) => ({ name, pid: p.pid }));
  assert.equal(pids.filter((p) => p.name.startsWith('etcd-')).length, 3);
  assert.equal(pids.filter((p) => p.name.startsWith('manager-')).length, 3);
  await up.stop('SIGINT');
  assert.match(up.output, /stratum up: stopped/);
  for (const p of pids) assert.equal(alive(p.pid), false, `${p.name} (pid ${p.pid}) was stopped`);

  up = await startUp(dir.path, port);
  assert.match(up.output, /3 manager\(s\) on a 3-member etcd/);
  const s = (await (await fetch(`${urls[2]}/v1/settings/backing-image-recovery-wait-interval`, { headers: auth() })).json()) as { value: string };
  assert.equal(s.value, '77', 'the etcd data survived the restart');
  await waitFor('a leader again', async () => ((await leaders(urls)).length === 1 ? true : undefined), 30_000);
});
