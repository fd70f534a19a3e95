// The attach benchmark's /proc readings against real process trees (sh and sleep), and its percentile.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { clusterProcesses, killSurvivors, memoryOf, percentile } from './attach-kit.js';

const dir = mkdtempSync(join(tmpdir(), 'stratum-attach-kit-'));
const started: ChildProcess[] = [];

after(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(-c.pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function spawnGroup(script: string, args: string[] = [], cwd?: string): ChildProcess {
  const c = spawn('sh', ['-c', script, 'sh', ...args], { stdio: 'ignore', detached: true, ...(cwd ? { cwd } : {}) });
  started.push(c);
  return c;
}

/** Retries `fn` for up to 20 s (a loaded machine starts processes slowly); `last` names what was seen for the error. */
async function until<T>(what: string, fn: () => T | undefined, last: () => string = () => ''): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last seen: ${last()}`);
}

test('percentile is nearest-rank', () => {
  const v = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
  assert.equal(percentile(v, 50), 5);
  assert.equal(percentile(v, 99), 10);
  assert.equal(percentile([42], 99), 42);
});

test('the cluster is the tree under its root plus what runs over its data dir, and survivors die by pid', async () => {
  // A root with two children; outside its tree, one process whose argv names the data dir and one that runs in a
  // folder under it (re-parented pods), each with a child of its own.
  const data = join(dir, 'data');
  mkdirSync(join(data, 'pods', 'p1'), { recursive: true });
  const root = spawnGroup('sleep 300 & sleep 300 & wait');
  const orphan = spawnGroup('sleep 301; true', [join(data, 'disk-1')]);
  const inPodDir = spawnGroup('sleep 303; true', [], join(data, 'pods', 'p1'));
  const other = spawnGroup('exec sleep 302');
  const seen = () => clusterProcesses(root.pid ?? 0, data).map((p) => `${p.pid} ${p.argv.join(' ')}`).join('; ');
  const procs = await until('the 7 processes', () => {
    const p = clusterProcesses(root.pid ?? 0, data);
    return p.length === 7 ? p : undefined;
  }, seen);
  const pids = procs.map((p) => p.pid);
  assert.ok(pids.includes(root.pid ?? 0));
  assert.ok(pids.includes(orphan.pid ?? 0));
  assert.ok(pids.includes(inPodDir.pid ?? 0));
  assert.ok(!pids.includes(other.pid ?? 0), 'a process neither under the root nor over the data dir is not counted');
  assert.equal(procs.filter((p) => p.argv[0] === 'sleep' && p.argv[1] === '300').length, 2);
  assert.ok(procs.some((p) => p.argv[0] === 'sleep' && p.argv[1] === '301'), "the re-parented pod's own children count too");
  const mem = memoryOf(procs);
  assert.equal(mem.processes, 7);
  assert.ok(mem.rss > 0);
  assert.equal(killSurvivors(procs), 7);
  await until('the killed processes to be gone', () => (clusterProcesses(root.pid ?? 0, data).length === 0 ? true : undefined), seen);
  // A pid with another start time (a reused pid) is left alone.
  assert.equal(killSurvivors([{ pid: other.pid ?? 0, ppid: 1, startTime: '1', argv: [], cwd: '' }]), 0);
  assert.equal(other.exitCode, null);
});
