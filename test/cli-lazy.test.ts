// The CLI loads only what a command needs: `stratum --help`, `get`, `volume get` and the pod commands' help must
// not load the manager (store, SQLite, API server, controllers) nor the data plane. Every pod and every `stratum get`
// starts the same main.js, so what it loads up front is paid in start time and memory by each of them. The loaded
// modules are recorded by a loader hook (helpers/module-trace.ts) in a real CLI process; a command that does load
// the manager (`stratum manager` with a bad flag) checks that the hook sees what these tests say is absent.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { moduleTraceArgs } from './helpers/module-trace.js';
import { CLI, ManagerProcess, REPO, run, tempDir } from './helpers/processes.js';

const dir = tempDir('cli-lazy');
const manager = new ManagerProcess(join(dir.path, 'manager'));
let traces = 0;

before(async () => {
  await manager.start();
});

after(async () => {
  await manager.stop();
  dir.remove();
});

/** Runs the CLI with the trace hook; the loaded modules as paths relative to the repository. */
async function loaded(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; modules: string[] }> {
  const file = join(dir.path, `trace-${++traces}.txt`);
  const res = await run(process.execPath, [...moduleTraceArgs(), CLI, ...args], { env: { ...process.env, STRATUM_MODULE_TRACE: file } });
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // No module loaded at all: the assertions below say so.
  }
  const root = new URL(`file://${REPO}/`).href;
  const modules = text.split('\n').filter((u) => u.startsWith(root)).map((u) => u.slice(root.length));
  return { ...res, modules };
}

/** What a light command must not load: the control plane, the data plane, and their heavy packages. */
const HEAVY = [
  /^dist\/src\/(manager|apiserver\/(?!table\.js)|store\/sqlite|controllers|controller-kit|agent|engine|replica|frontend|imagefmt)\//,
  // The pod services: only their error classes (for flag checks) are allowed in.
  /^dist\/src\/(bim|datasource|instance-manager)\/(?!errors\.js$)/,
  /^node_modules\/(fastify|better-sqlite3|prom-client)\//,
];

function heavyIn(modules: string[]): string[] {
  return modules.filter((m) => HEAVY.some((re) => re.test(m)));
}

test('the trace sees the manager and better-sqlite3 when a command does load them', async () => {
  const res = await loaded(['manager', '--port', 'not-a-port']);
  assert.equal(res.code, 1, res.stderr);
  assert.match(res.stderr, /--port must be a port number/);
  assert.ok(res.modules.includes('dist/src/manager/index.js'), `manager/index.js loaded: ${res.modules.join(' ')}`);
  assert.ok(res.modules.some((m) => m.startsWith('node_modules/better-sqlite3/')), 'better-sqlite3 loaded');
  assert.ok(heavyIn(res.modules).length > 20, 'the heavy set is what `stratum manager` loads');
});

test('stratum --help loads the command declarations only', async () => {
  const res = await loaded(['--help']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /volume\|vol/);
  assert.match(res.stdout, /instance-manager/);
  assert.deepEqual(heavyIn(res.modules), []);
  assert.ok(!res.modules.includes('dist/src/cli/commands/get.js'), 'no command module is loaded for --help');
});

test('stratum get lhn against a manager loads get, not the manager', async () => {
  const res = await loaded(['--server', manager.url, 'get', 'lhn']);
  assert.equal(res.code, 0, res.stderr);
  // A manager without node agents has no nodes; the answer still came from the server, through get.js.
  assert.match(res.stdout, /No resources found in longhorn-system namespace/);
  assert.ok(res.modules.includes('dist/src/cli/commands/get.js'), `get.js loaded: ${res.modules.join(' ')}`);
  assert.deepEqual(heavyIn(res.modules), []);
});

test('stratum get settings -o name and volume get load neither the manager nor the data plane', async () => {
  const settings = await loaded(['--server', manager.url, 'get', 'settings', '-o', 'name']);
  assert.equal(settings.code, 0, settings.stderr);
  assert.match(settings.stdout, /allow-private-download-urls/);
  assert.deepEqual(heavyIn(settings.modules), []);
  const volumes = await loaded(['--server', manager.url, 'volume', 'get']);
  assert.equal(volumes.code, 0, volumes.stderr);
  assert.match(volumes.stderr, /No volumes found/);
  assert.deepEqual(heavyIn(volumes.modules), []);
});

test('a pod command loads its own service only when it runs', async () => {
  const help = await loaded(['replica', '--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.deepEqual(heavyIn(help.modules), []);
  // A bad flag fails inside the action, after the replica package loaded, and before the manager is needed.
  const bad = await loaded(['replica', '--dir', join(dir.path, 'r'), '--listen', 'nowhere']);
  assert.equal(bad.code, 1, bad.stderr);
  assert.match(bad.stderr, /--listen must be HOST:PORT/);
  assert.deepEqual(heavyIn(bad.modules).filter((m) => !m.startsWith('dist/src/replica/') && !m.startsWith('dist/src/imagefmt/')), []);
});
