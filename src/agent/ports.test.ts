// Unit tests of machine-wide port reservations: uniqueness across allocators sharing a directory, stale
// reclaiming by pid + start time, holders keeping ports past their agent, and the bind check.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAgentError } from './errors.js';
import { isStale, parsePortRange, PortAllocator } from './ports.js';
import { identityOf } from './proc.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'stratum-ports-test-'));
  dirs.push(d);
  return d;
}

/** The identity of a process that has ended (a pid with a start time that no live process has). */
function deadIdentity(): { pid: number; startTime: string } {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return { pid: Number(r.stdout.toString()), startTime: '1' };
}

test('allocators sharing a directory never hand out the same port, even concurrently', async () => {
  const d = dir();
  const me = identityOf(process.pid);
  assert.ok(me);
  // Two "agents" (same process, distinct owners) racing over a small range.
  const a = new PortAllocator({ dir: d, range: [21000, 21039], bindCheck: false });
  const b = new PortAllocator({ dir: d, range: [21000, 21039], bindCheck: false });
  const got = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).reserve(`owner-${i}`)));
  assert.equal(new Set(got).size, 40);
  await assert.rejects(a.reserve('one-too-many'), (err: unknown) => isAgentError(err, 'PortsExhausted') && /21000-21039/.test(err.message));
  await a.release(got[0] as number, 'owner-0');
  assert.equal(await b.reserve('late'), got[0]);
});

test('a reservation whose agent and holder are gone is reclaimed; a live holder keeps it', async () => {
  const d = dir();
  const dead = deadIdentity();
  const live = identityOf(process.pid);
  assert.ok(live);
  writeFileSync(join(d, '21100'), JSON.stringify({ owner: 'old', agent: dead, holder: dead }));
  writeFileSync(join(d, '21101'), JSON.stringify({ owner: 'pod-still-running', agent: dead, holder: live }));
  const a = new PortAllocator({ dir: d, range: [21100, 21101], bindCheck: false });
  assert.equal(await a.reserve('new'), 21100);
  assert.equal(JSON.parse(readFileSync(join(d, '21100'), 'utf8')).owner, 'new');
  await assert.rejects(a.reserve('another'), (err: unknown) => isAgentError(err, 'PortsExhausted'));
});

test('a restarted agent re-claims its own reservations, not others', async () => {
  const d = dir();
  const first = new PortAllocator({ dir: d, range: [21200, 21209], bindCheck: false, agent: deadIdentity() });
  const port = await first.reserve('node-1/default/web/uid-1');
  const second = new PortAllocator({ dir: d, range: [21200, 21209], bindCheck: false });
  assert.equal(await second.reclaimOwn(port, 'node-1/default/web/uid-1', null), true);
  assert.equal(JSON.parse(readFileSync(join(d, String(port)), 'utf8')).agent.pid, process.pid);
  assert.equal(await second.reclaimOwn(port, 'someone-else', null), false);
});

test('stale means: neither agent nor holder runs (by pid and start time)', () => {
  const running = (id: { pid: number }): boolean => id.pid === 1;
  assert.equal(isStale({ owner: 'x', agent: { pid: 1, startTime: '5' }, holder: null }, running), false);
  assert.equal(isStale({ owner: 'x', agent: { pid: 2, startTime: '5' }, holder: { pid: 1, startTime: '5' } }, running), false);
  assert.equal(isStale({ owner: 'x', agent: { pid: 2, startTime: '5' }, holder: null }, running), true);
  assert.equal(isStale(undefined, running), true);
});

test('the bind check skips a port something else listens on', async () => {
  const d = dir();
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '0.0.0.0', () => r()));
  const busy = (srv.address() as { port: number }).port;
  try {
    const a = new PortAllocator({ dir: d, range: [busy, busy] });
    await assert.rejects(a.reserve('x'), (err: unknown) => isAgentError(err, 'PortsExhausted'));
  } finally {
    srv.close();
  }
});

test('port ranges', () => {
  assert.deepEqual(parsePortRange('20000-29999'), [20000, 29999]);
  assert.throws(() => parsePortRange('80-90'), /1024-65535/);
  assert.throws(() => parsePortRange('3000-2000'), /20000-29999/);
});
