// The supervisor's backoff: doubling while a process keeps dying young, back to the first step after a healthy run,
// capped; nothing restarts when supervision is off or after stop().

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Supervisor } from './up-supervisor.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('restarts after a doubling, capped backoff that starts over after a healthy run', async () => {
  const lines: string[] = [];
  const s = new Supervisor({ enabled: true, log: (l) => lines.push(l), firstDelayMs: 10, maxDelayMs: 40, healthyMs: 1000 });
  let restarts = 0;
  const now = Date.now();
  for (let i = 0; i < 4; i++) {
    s.exited('node-1', 'code 1', 'agent.log', now, () => restarts++);
    await tick(60);
  }
  assert.equal(restarts, 4);
  assert.deepEqual(lines.map((l) => /in ([\d.]+) s/.exec(l)?.[1]), ['0.01', '0.02', '0.04', '0.04']);
  assert.match(lines[1] ?? '', /stratum up: node-1 exited \(code 1\); restarting it in 0\.02 s \(restart 2 in a row\); see agent\.log/);
  // It ran longer than healthyMs before dying: the first step again.
  s.exited('node-1', 'SIGKILL', 'agent.log', now - 5000, () => restarts++);
  assert.match(lines.at(-1) ?? '', /restarting it in 0\.01 s; see/);
  s.stop();
  await tick(30);
  assert.equal(restarts, 4, 'stop() cancels a pending restart');
});

test('with supervision off an exit is only reported', async () => {
  const lines: string[] = [];
  const s = new Supervisor({ enabled: false, log: (l) => lines.push(l), firstDelayMs: 1 });
  let restarts = 0;
  s.exited('manager', 'SIGKILL', 'manager.log', Date.now(), () => restarts++);
  await tick(20);
  assert.equal(restarts, 0);
  assert.deepEqual(lines, ['stratum up: manager exited (SIGKILL); see manager.log']);
});
