// Controller runner: conflict requeue without failure logs, error backoff logged once per state change,
// requeueAfter on the fake clock, parallel workers, and run() waiting for in-flight reconciles.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { StoreError } from '../store/errors.js';
import { FakeClock, settle } from './clock.js';
import { Controller, type ReconcileFunc } from './controller.js';
import type { Logger } from './log.js';

function capturingLogger() {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (msg: string) => void lines.push({ level, msg });
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines, count: (level: string) => lines.filter((l) => l.level === level).length };
}

function setup(reconcile: ReconcileFunc, workers = 1) {
  const clock = new FakeClock();
  const registry = new Registry();
  const log = capturingLogger();
  const controller = new Controller({
    name: 'test-ctrl',
    workers,
    reconcile,
    clock,
    registry,
    logger: log.logger,
    queue: { backoff: { baseMs: 5, maxMs: 1000 } },
  });
  const ac = new AbortController();
  return { clock, registry, log, controller, ac, running: controller.run(ac.signal) };
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await settle(1);
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('Controller', () => {
  it('requeues on conflict without logging a failure, then forgets the backoff', async () => {
    const calls: number[] = [];
    const t = setup(async () => {
      calls.push(t.clock.now());
      if (calls.length === 1) throw new StoreError('Conflict', 'the object has been modified');
    });
    t.controller.enqueue('ns/a');
    await waitFor(() => calls.length === 1, 'first reconcile');
    await settle();
    assert.equal(t.controller.queue.numRequeues('ns/a'), 1);
    await t.clock.advanceAndSettle(5);
    await waitFor(() => calls.length === 2, 'retry after conflict');
    assert.equal((calls[1] ?? 0) - (calls[0] ?? 0), 5, 'retried after the first backoff step');
    await settle();
    assert.equal(t.controller.queue.numRequeues('ns/a'), 0, 'success forgets the backoff');
    assert.equal(t.log.count('error'), 0);
    const text = await t.registry.metrics();
    assert.match(text, /stratum_controller_reconcile_total\{controller="test-ctrl",result="conflict"\} 1\n/);
    assert.match(text, /stratum_controller_reconcile_total\{controller="test-ctrl",result="success"\} 1\n/);
    assert.doesNotMatch(text, /stratum_controller_reconcile_errors_total\{controller="test-ctrl"\} [1-9]/);
    t.ac.abort();
    await t.running;
  });

  it('retries errors with growing backoff and logs once per change of error', async () => {
    const outcomes = ['disk full', 'disk full', 'disk full', 'no route', 'ok'];
    const calls: number[] = [];
    const t = setup(async () => {
      calls.push(t.clock.now());
      const o = outcomes[calls.length - 1];
      if (o !== 'ok') throw new Error(o);
    });
    t.controller.enqueue('ns/a');
    for (let i = 1; i <= outcomes.length; i++) {
      await waitFor(() => calls.length >= i, `attempt ${i}`);
      await t.clock.advanceAndSettle(1000);
    }
    const gaps = calls.slice(1).map((c, i) => c - (calls[i] ?? 0));
    assert.deepEqual(gaps, [5, 10, 20, 40]);
    assert.deepEqual(
      t.log.lines.map((l) => l.level),
      ['error', 'error', 'info'],
      'one log for "disk full", one for "no route", one for recovery',
    );
    const text = await t.registry.metrics();
    assert.match(text, /stratum_controller_reconcile_errors_total\{controller="test-ctrl"\} 4\n/);
    assert.match(text, /stratum_workqueue_retries_total\{name="test-ctrl"\} 4\n/);
    t.ac.abort();
    await t.running;
  });

  it('honours requeueAfter', async () => {
    const calls: number[] = [];
    const t = setup(async () => {
      calls.push(t.clock.now());
      return calls.length === 1 ? { requeueAfter: 60_000 } : undefined;
    });
    t.controller.enqueue('ns/a');
    await waitFor(() => calls.length === 1, 'first reconcile');
    await t.clock.advanceAndSettle(59_999);
    assert.equal(calls.length, 1);
    await t.clock.advanceAndSettle(1);
    await waitFor(() => calls.length === 2, 'requeued reconcile');
    assert.equal((calls[1] ?? 0) - (calls[0] ?? 0), 60_000);
    t.ac.abort();
    await t.running;
  });

  it('runs different keys in parallel, one key at a time, and run() waits for in-flight reconciles', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const perKey = new Map<string, number>();
    let maxPerKey = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let sawAbort = 0;
    const t = setup(async (key, signal) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      perKey.set(key, (perKey.get(key) ?? 0) + 1);
      maxPerKey = Math.max(maxPerKey, perKey.get(key) ?? 0);
      await gate;
      if (signal.aborted) sawAbort++;
      perKey.set(key, (perKey.get(key) ?? 1) - 1);
      inFlight--;
    }, 4);
    for (const k of ['ns/a', 'ns/b', 'ns/c', 'ns/d', 'ns/a', 'ns/b']) t.controller.enqueue(k);
    await waitFor(() => inFlight === 4, 'four reconciles in flight');
    t.controller.enqueue('ns/a'); // while ns/a is in flight: must wait, not start a second one
    await settle();
    assert.equal(inFlight, 4);
    t.ac.abort();
    let stopped = false;
    void t.running.then(() => (stopped = true));
    await settle();
    assert.equal(stopped, false, 'run() must wait for the four reconciles');
    release();
    await t.running;
    assert.equal(maxInFlight, 4);
    assert.equal(maxPerKey, 1);
    assert.equal(sawAbort, 4, 'reconciles see the aborted signal');
  });

  it('refuses a second run', async () => {
    const t = setup(async () => {});
    await assert.rejects(t.controller.run(new AbortController().signal), /started already/);
    t.ac.abort();
    await t.running;
  });
});
