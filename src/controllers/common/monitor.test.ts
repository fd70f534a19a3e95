// A monitor refreshes when its stream connects; a refresh that fails is tried again while the stream stays up
// (the stream carries only changes: a failed refresh would otherwise leave the status stale until a reconnect). A
// monitor without a refresh takes the stream's own snapshot, and reconnects for a new one when a line cannot be
// applied.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { Monitors } from './monitor.js';

test('a failed refresh is retried while the stream stays connected', async () => {
  // A stream that connects once and then only sends heartbeats.
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const beat = setInterval(() => res.write('{"type":"HEARTBEAT"}\n'), 20);
    res.on('close', () => clearInterval(beat));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const monitors = new Monitors({ retryMs: 30, minIntervalMs: 1 });
  let attempts = 0;
  let connects = 0;
  try {
    const port = (server.address() as { port: number }).port;
    server.on('request', () => connects++);
    monitors.ensure('im-1', `http://127.0.0.1:${port}/v1/watch`, {
      refresh: async () => {
        if (++attempts < 3) throw new Error('the store refused the status write');
      },
    });
    for (let i = 0; i < 100 && attempts < 3; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(attempts, 3, 'refreshed until it succeeded');
    assert.equal(connects, 1, 'on the same connection');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(attempts, 3, 'and not again once it did');
  } finally {
    await monitors.stopAll();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('without a refresh, the stream\'s snapshot and changes are applied in order; a line that cannot be applied brings a new snapshot', async () => {
  let connects = 0;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const n = ++connects;
    res.write(`${JSON.stringify({ type: 'SNAPSHOT', n })}\n${JSON.stringify({ type: 'MODIFIED', n })}\n`);
    if (n === 1) res.write('{"type":"SOMETHING-NEW"}\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const monitors = new Monitors({ retryMs: 10, minIntervalMs: 1 });
  const seen: string[] = [];
  let downs = 0;
  try {
    const port = (server.address() as { port: number }).port;
    monitors.ensure('im-1', `http://127.0.0.1:${port}/v1/watch`, {
      onEvent: (ev) => {
        if (ev['type'] !== 'SNAPSHOT' && ev['type'] !== 'MODIFIED') return false;
        seen.push(`${String(ev['type'])} ${String(ev['n'])}`);
        return true;
      },
      down: () => downs++,
    });
    for (let i = 0; i < 100 && seen.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, ['SNAPSHOT 1', 'MODIFIED 1', 'SNAPSHOT 2', 'MODIFIED 2']);
    assert.equal(connects, 2, 'reconnected once, for the line it could not apply');
    assert.equal(downs, 1);
  } finally {
    await monitors.stopAll();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
