// Work queue: de-duplication, per-key exclusivity under many workers, re-add during processing, delayed adds on a
// fake clock, rate-limited re-adds, shutdown with drain, and the depth metric.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { FakeClock, settle } from './clock.js';
import { ExponentialRateLimiter } from './rate-limiter.js';
import { WorkQueue } from './work-queue.js';

function newQueue(clock = new FakeClock(), name = 'test') {
  const registry = new Registry();
  const queue = new WorkQueue({ name, clock, registry, rateLimiter: new ExponentialRateLimiter({ baseMs: 10, maxMs: 1000 }) });
  return { queue, clock, registry };
}

/** Take every queued key without waiting (each is then processing). */
async function drainKeys(queue: WorkQueue): Promise<string[]> {
  const keys: string[] = [];
  while (queue.len() > 0) {
    const k = await queue.get();
    assert.ok(k !== undefined);
    keys.push(k);
  }
  return keys;
}

describe('WorkQueue', () => {
  it('processes a key added twice only once', async () => {
    const { queue } = newQueue();
    queue.add('ns/a');
    queue.add('ns/b');
    queue.add('ns/a');
    assert.equal(queue.len(), 2);
    const keys = await drainKeys(queue);
    assert.deepEqual(keys, ['ns/a', 'ns/b']);
  });

  it('re-queues a key added while it is processed, once, after done', async () => {
    const { queue } = newQueue();
    queue.add('ns/a');
    const k = await queue.get();
    assert.equal(k, 'ns/a');
    queue.add('ns/a');
    queue.add('ns/a');
    // Not handed out while the first run is going on.
    assert.equal(queue.len(), 0);
    queue.done('ns/a');
    assert.equal(queue.len(), 1);
    assert.equal(await queue.get(), 'ns/a');
    queue.done('ns/a');
    assert.equal(queue.len(), 0);
  });

  it('never hands one key to two workers at once, and processes every add', async () => {
    const { queue } = newQueue();
    const keys = Array.from({ length: 12 }, (_, i) => `ns/k${i}`);
    const active = new Map<string, number>();
    const lastAdd = new Map<string, number>();
    const lastStart = new Map<string, number>();
    let tick = 0;
    let maxSeen = 0;
    let violations = 0;
    let runs = 0;
    // Deterministic pseudo-random sequence so a failure is reproducible.
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const add = (key: string) => {
      lastAdd.set(key, ++tick);
      queue.add(key);
    };

    const worker = async () => {
      for (;;) {
        const key = await queue.get();
        if (key === undefined) return;
        lastStart.set(key, ++tick);
        const n = (active.get(key) ?? 0) + 1;
        active.set(key, n);
        maxSeen = Math.max(maxSeen, n);
        if (n > 1) violations++;
        runs++;
        // Yield a random number of times; other workers run and other keys (and this one) get added meanwhile.
        for (let i = rnd(4); i >= 0; i--) await new Promise<void>((r) => setImmediate(r));
        if (rnd(3) === 0) add(keys[rnd(keys.length)] ?? 'ns/k0');
        active.set(key, (active.get(key) ?? 1) - 1);
        queue.done(key);
      }
    };
    const workers = Array.from({ length: 16 }, () => worker());
    for (let round = 0; round < 200; round++) {
      add(keys[rnd(keys.length)] ?? 'ns/k0');
      if (round % 10 === 0) await new Promise<void>((r) => setImmediate(r));
    }
    // Wait until the queue is idle, then stop.
    for (let i = 0; i < 1000 && (queue.len() > 0 || queue.processing() > 0); i++) await settle(1);
    await queue.shutDownWithDrain();
    await Promise.all(workers);

    assert.equal(violations, 0, `a key was processed by ${maxSeen} workers at once`);
    assert.ok(runs > keys.length, `expected many runs, got ${runs}`);
    // Level-triggered guarantee: every key's last add was followed by a run that started after it.
    for (const [key, added] of lastAdd) {
      assert.ok((lastStart.get(key) ?? 0) > added, `${key} added at ${added} but last started at ${lastStart.get(key)}`);
    }
  });

  it('addAfter adds at the right fake time and keeps the earliest deadline', async () => {
    const { queue, clock } = newQueue();
    queue.addAfter('ns/a', 100);
    queue.addAfter('ns/a', 500); // later: ignored
    queue.addAfter('ns/b', 300);
    queue.addAfter('ns/b', 50); // earlier: replaces
    assert.equal(clock.pendingTimers(), 2);
    clock.advance(49);
    assert.equal(queue.len(), 0);
    clock.advance(1);
    assert.deepEqual(await drainKeys(queue), ['ns/b']);
    clock.advance(49);
    assert.equal(queue.len(), 0);
    clock.advance(1);
    assert.deepEqual(await drainKeys(queue), ['ns/a']);
    clock.advance(10_000);
    assert.equal(queue.len(), 0, 'the replaced and ignored deadlines must not fire later');
    assert.equal(clock.pendingTimers(), 0);
  });

  it('addRateLimited backs off exponentially and forget resets', async () => {
    const { queue, clock } = newQueue();
    const delayOf = async (): Promise<number> => {
      const start = clock.now();
      queue.addRateLimited('ns/a');
      for (let i = 0; i < 5000 && queue.len() === 0; i++) clock.advance(1);
      const k = await queue.get();
      assert.equal(k, 'ns/a');
      queue.done('ns/a');
      return clock.now() - start;
    };
    assert.deepEqual([await delayOf(), await delayOf(), await delayOf(), await delayOf()], [10, 20, 40, 80]);
    assert.equal(queue.numRequeues('ns/a'), 4);
    queue.forget('ns/a');
    assert.equal(queue.numRequeues('ns/a'), 0);
    assert.equal(await delayOf(), 10);
  });

  it('shutDownWithDrain waits for in-flight work and wakes blocked workers', async () => {
    const { queue } = newQueue();
    queue.add('ns/a');
    queue.add('ns/b');
    assert.equal(await queue.get(), 'ns/a');
    const drained = queue.shutDownWithDrain();
    let resolved = false;
    void drained.then(() => (resolved = true));
    await settle();
    assert.equal(resolved, false, 'must wait while ns/a is processed');
    // Queued keys are discarded and later adds ignored.
    assert.equal(await queue.get(), undefined);
    queue.add('ns/c');
    assert.equal(queue.len(), 0);
    queue.done('ns/a');
    await settle();
    assert.equal(resolved, true);
  });

  it('shutdown resolves a worker blocked in get', async () => {
    const { queue } = newQueue();
    const pending = queue.get();
    queue.shutdown();
    assert.equal(await pending, undefined);
  });

  it('shutdown cancels delayed adds', () => {
    const { queue, clock } = newQueue();
    queue.addAfter('ns/a', 100);
    queue.shutdown();
    assert.equal(clock.pendingTimers(), 0);
  });

  it('exports depth, adds and retries metrics per queue name', async () => {
    const { queue, registry, clock } = newQueue(new FakeClock(), 'backing-image');
    queue.add('ns/a');
    queue.add('ns/b');
    queue.add('ns/z');
    queue.addRateLimited('ns/c');
    clock.advance(2); // ns/c's 10 ms backoff not yet over
    assert.equal(await queue.get(), 'ns/a');
    clock.advance(3000);
    queue.done('ns/a');
    const text = await registry.metrics();
    // ns/b, ns/z, and ns/c once its backoff ran out during the 3 s.
    assert.match(text, /stratum_workqueue_depth\{name="backing-image"\} 3\n/);
    assert.match(text, /stratum_workqueue_adds_total\{name="backing-image"\} 4\n/);
    assert.match(text, /stratum_workqueue_retries_total\{name="backing-image"\} 1\n/);
    // ns/a waited 2 ms in the queue and was worked on for 3 s (fake time).
    assert.match(text, /stratum_workqueue_queue_duration_seconds_bucket\{le="0\.001",name="backing-image"\} 0\n/);
    assert.match(text, /stratum_workqueue_queue_duration_seconds_bucket\{le="0\.004",name="backing-image"\} 1\n/);
    assert.match(text, /stratum_workqueue_work_duration_seconds_bucket\{le="1\.024",name="backing-image"\} 0\n/);
    assert.match(text, /stratum_workqueue_work_duration_seconds_bucket\{le="4\.096",name="backing-image"\} 1\n/);
  });

  it('two queues share one registry through the name label', async () => {
    const registry = new Registry();
    const a = new WorkQueue({ name: 'a', registry });
    const b = new WorkQueue({ name: 'b', registry });
    a.add('x');
    b.add('x');
    b.add('y');
    const text = await registry.metrics();
    assert.match(text, /stratum_workqueue_depth\{name="a"\} 1/);
    assert.match(text, /stratum_workqueue_depth\{name="b"\} 2/);
  });
});
