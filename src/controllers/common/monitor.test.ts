// A monitor refreshes when its stream connects; a refresh that fails is tried again while the stream stays up
// (the stream carries only changes: a failed refresh would otherwise leave the status stale until a reconnect). A
// monitor without a refresh takes the stream's own snapshot, and reconnects for a new one when a line cannot be
// applied. A stream silent for too long (no heartbeat either) counts as broken.

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

test('a stream that goes silent, or a server that never answers, is reported down and reconnected', async () => {
  let requests = 0;
  // The first request is answered with one heartbeat and then nothing; the second is never answered at all.
  const server = createServer((_req, res) => {
    if (++requests === 1) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write('{"type":"HEARTBEAT"}\n');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const monitors = new Monitors({ retryMs: 10, minIntervalMs: 1, silenceMs: 150 });
  const downs: string[] = [];
  try {
    const port = (server.address() as { port: number }).port;
    monitors.ensure('bim-1', `http://127.0.0.1:${port}/v1/watch`, { refresh: async () => {}, down: (err) => downs.push((err as Error).message) });
    for (let i = 0; i < 200 && downs.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(downs.length, 2, `reported down twice: ${JSON.stringify(downs)}`);
    for (const d of downs) assert.match(d, /nothing heard for 0\.15 s, not even a heartbeat; reconnecting/);
    assert.ok(requests >= 2, 'and reconnected');
  } finally {
    await monitors.stopAll();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
