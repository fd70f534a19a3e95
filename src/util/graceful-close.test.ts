import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { trackIdleConnections } from './graceful-close.js';

test('close waits for a request in progress, not for a connection that never sent one or an idle keep-alive one', { timeout: 10_000 }, async () => {
  let finish: (() => void) | undefined;
  const server = createServer((req, res) => {
    if (req.url === '/slow') finish = () => res.end('slow done');
    else res.end('quick');
  });
  const idle = trackIdleConnections(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const sockets: Socket[] = [];
  const open = async (): Promise<Socket> => {
    const s = connect(port, '127.0.0.1');
    sockets.push(s);
    await new Promise((r) => s.once('connect', r));
    return s;
  };
  try {
    const silent = await open();
    const keepAlive = await open();
    keepAlive.write('GET /quick HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => keepAlive.once('data', r));
    const slow = await open();
    let slowText = '';
    slow.on('data', (d: Buffer) => (slowText += d.toString()));
    slow.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    while (!finish) await new Promise((r) => setTimeout(r, 10));

    let closed = false;
    const done = new Promise<void>((r) => server.close(() => r())).then(() => (closed = true));
    idle.endIdle();
    const ended = (s: Socket) => new Promise((r) => (s.readableEnded || s.destroyed ? r(undefined) : s.once('close', r)));
    await Promise.all([ended(silent), ended(keepAlive)]);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(closed, false, 'the request in progress is waited for');
    finish();
    await done;
    assert.match(slowText, /slow done$/, 'the last response arrives whole');
  } finally {
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
  }
});
