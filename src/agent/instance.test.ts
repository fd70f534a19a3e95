// Tests of the per-pod shim with real processes: exit codes are recorded without the agent, SIGTERM reaches the
// process and its status is kept, SIGKILL after the grace period, and the process runs in its own session.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readExit, startInstance, stopInstance, waitForExit } from './instance.js';
import { isRunning, readStatSync } from './proc.js';

const root = mkdtempSync(join(tmpdir(), 'stratum-instance-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' };

function start(name: string, script: string) {
  const dir = join(root, name);
  return startInstance({ dir, n: 0, argv: [process.execPath, '-e', script], env, cwd: root, logFile: join(dir, 'logs', '0.log') }).then((s) => ({ ...s, dir }));
}

test('the exit code is written by the shim and found by polling, as an adopting agent would', async () => {
  const s = await start('exit', 'console.log("hello"); setTimeout(() => process.exit(3), 200)');
  assert.ok(s.record.process, 'the shim reports the pid of the process');
  assert.notEqual(s.record.process?.pid, s.record.shim.pid);
  const st = readStatSync(s.record.shim.pid);
  assert.equal(st?.session, s.record.shim.pid, 'the shim leads its own session (setsid)');
  // No child handle: watch it like an agent that was restarted meanwhile.
  const exit = await waitForExit(s.dir, s.record, undefined, AbortSignal.timeout(10_000), 50);
  assert.equal(exit.exitCode, 3);
  assert.equal(exit.reason, 'Error');
  assert.equal(readFileSync(join(s.dir, 'logs', '0.log'), 'utf8'), 'hello\n');
  assert.deepEqual(await readExit(s.dir, s.record), { ...exit });
});

test('SIGTERM reaches the process once and its own exit status is kept', async () => {
  const s = await start('term', 'process.on("SIGTERM", () => { console.log("got TERM"); process.exit(7); }); console.log("up"); setInterval(() => {}, 1000)');
  await new Promise((r) => setTimeout(r, 300));
  const exit = await stopInstance(s.dir, s.record, s.child, 5000);
  assert.equal(exit?.exitCode, 7);
  assert.equal(readFileSync(join(s.dir, 'logs', '0.log'), 'utf8'), 'up\ngot TERM\n');
  assert.equal(isRunning(s.record.shim), false);
});

test('a process that ignores SIGTERM is killed after the grace period', async () => {
  const s = await start('stubborn', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)');
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  const exit = await stopInstance(s.dir, s.record, s.child, 500);
  assert.ok(Date.now() - t0 >= 450);
  assert.equal(exit?.exitCode, 137);
  assert.equal(exit?.signal, 9);
  assert.match(exit?.message ?? '', /did not stop within/);
  // SIGKILL is delivered and the process reaped asynchronously: allow the kernel a moment under load.
  for (let i = 0; i < 40 && s.record.process && isRunning(s.record.process); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(s.record.process && isRunning(s.record.process), false);
});

test('a command that cannot run ends with 127 and says why in its log', async () => {
  const dir = join(root, 'missing');
  const s = await startInstance({ dir, n: 0, argv: ['/nonexistent/binary'], env, cwd: root, logFile: join(dir, 'logs', '0.log') });
  const exit = await waitForExit(dir, s.record, s.child, AbortSignal.timeout(10_000));
  assert.equal(exit.exitCode, 127);
  assert.match(readFileSync(join(dir, 'logs', '0.log'), 'utf8'), /nonexistent/);
});
