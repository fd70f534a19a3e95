// Progress math with an injected clock: percent, rate over the window, ETA, restarts and stalls.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressMeter } from './progress.js';

function meter(): { m: ProgressMeter; advance: (ms: number) => void } {
  let now = 1_000_000;
  const m = new ProgressMeter({ now: () => now, windowMs: 10_000, minSpanMs: 500 });
  return { m, advance: (ms) => (now += ms) };
}

test('rate and ETA follow bytes over time; percent is floored and held below 100 until complete', () => {
  const { m, advance } = meter();
  m.setSize(10_000_000);
  m.reset(0);
  assert.deepEqual(m.snapshot(), { processedSize: 0, size: 10_000_000, progress: 0, rate: 0, etaSeconds: undefined });
  for (let i = 1; i <= 4; i++) {
    advance(1000);
    m.update(i * 1_000_000);
  }
  const s = m.snapshot();
  assert.equal(s.rate, 1_000_000);
  assert.equal(s.etaSeconds, 6);
  assert.equal(s.progress, 40);
  m.update(9_999_999);
  assert.equal(m.snapshot().progress, 99);
  m.update(10_000_000);
  assert.equal(m.snapshot().progress, 99, 'not 100 before verification');
  m.complete();
  assert.deepEqual(m.snapshot(), { processedSize: 10_000_000, size: 10_000_000, progress: 100, rate: 0, etaSeconds: 0 });
});

test('bytes already present at a resume count as done but not as rate', () => {
  const { m, advance } = meter();
  m.setSize(100_000_000);
  m.reset(50_000_000);
  assert.equal(m.snapshot().progress, 50);
  advance(2000);
  m.update(51_000_000);
  assert.equal(m.snapshot().rate, 500_000);
});

test('a stall drains the rate to 0 once the window has passed; a restart from 0 resets the window', () => {
  const { m, advance } = meter();
  m.setSize(1_000_000);
  m.reset(0);
  advance(1000);
  m.update(100_000);
  assert.ok(m.snapshot().rate > 0);
  advance(5000);
  assert.ok(m.snapshot().rate < 100_000 / 1, 'the rate falls while nothing arrives');
  advance(20_000);
  assert.equal(m.snapshot().rate, 0);
  assert.equal(m.snapshot().etaSeconds, undefined);
  m.update(10);
  assert.equal(m.snapshot().processedSize, 10);
  assert.equal(m.snapshot().rate, 0);
});

test('without a size there is neither percent nor ETA, only bytes and rate', () => {
  const { m, advance } = meter();
  m.reset(0);
  advance(1000);
  m.update(4096);
  const s = m.snapshot();
  assert.equal(s.progress, 0);
  assert.equal(s.etaSeconds, undefined);
  assert.equal(s.rate, 4096);
  m.complete();
  assert.equal(m.snapshot().size, 4096);
});
