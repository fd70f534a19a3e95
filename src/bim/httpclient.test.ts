// Tests of the sync path's HTTP client against a raw TCP server that writes canned responses split at random points:
// bodies arrive intact through pauses, keep-alive reuse works, and malformed or foreign responses fail clearly.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { HttpConnection, type ResponseHead } from './httpclient.js';

let server: Server;
let port = 0;
/** What the server answers to the next request on any connection. */
let respond: (sock: Socket) => Promise<void> = async () => undefined;

before(async () => {
  server = createServer((sock) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        void respond(sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  port = a && typeof a === 'object' ? a.port : 0;
});
after(() => new Promise<void>((r) => server.close(() => r())));

async function writeSplit(sock: Socket, bytes: Buffer): Promise<void> {
  for (let pos = 0; pos < bytes.length; ) {
    const n = Math.min(bytes.length - pos, 1 + Math.floor(Math.random() * 100_000));
    sock.write(bytes.subarray(pos, pos + n));
    pos += n;
    if (Math.random() < 0.3) await sleep(1);
  }
}

function response(status: number, body: Buffer, extra = ''): Buffer {
  return Buffer.concat([Buffer.from(`HTTP/1.1 ${status} X\r\ncontent-length: ${body.length}\r\n${extra}\r\n`, 'latin1'), body]);
}

async function get(conn: HttpConnection, slowConsumer = false): Promise<{ head: ResponseHead | undefined; body: Buffer }> {
  const parts: Buffer[] = [];
  let head: ResponseHead | undefined;
  let sinceDrain = 0;
  await conn.request('/x', { 'x-test': '1' }, {
    onHead: (h) => (head = h),
    onBody: (piece) => {
      parts.push(Buffer.from(piece)); // the slice is only valid during the call
      sinceDrain += piece.length;
      return !(slowConsumer && sinceDrain > 200_000);
    },
    onPause: async () => {
      await sleep(2);
      sinceDrain = 0;
    },
  }, AbortSignal.timeout(10_000));
  return { head, body: Buffer.concat(parts) };
}

test('bodies split at random points arrive intact, with pauses, over one reused connection', async () => {
  const conn = await HttpConnection.open('127.0.0.1', port, AbortSignal.timeout(5000));
  for (let round = 0; round < 8; round++) {
    const body = randomBytes(Math.floor(Math.random() * 3 * 1024 * 1024));
    respond = (sock) => writeSplit(sock, response(200, body));
    const r = await get(conn, round % 2 === 0);
    assert.equal(r.head?.status, 200);
    assert.equal(r.head?.contentLength, body.length);
    assert.ok(r.body.equals(body), `round ${round}`);
    assert.equal(conn.alive, true);
  }
  conn.destroy(new Error('done'));
});

test('an error status with a JSON body is delivered, and Connection: close ends reuse', async () => {
  const conn = await HttpConnection.open('127.0.0.1', port, AbortSignal.timeout(5000));
  const body = Buffer.from('{"code":"Busy","message":"full"}');
  respond = (sock) => writeSplit(sock, response(429, body, 'connection: close\r\n'));
  const r = await get(conn);
  assert.equal(r.head?.status, 429);
  assert.equal(r.body.toString(), body.toString());
  assert.equal(conn.alive, false);
  conn.destroy(new Error('done'));
});

test('refuses chunked bodies, garbage status lines and extra bytes, naming the peer', async () => {
  const cases: Array<[string | Buffer, RegExp]> = [
    ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', /chunked body; only Content-Length/],
    ['SSH-2.0-OpenSSH\r\n\r\n', /did not answer with HTTP\/1.x/],
    ['HTTP/1.1 200 OK\r\n\r\n', /no usable Content-Length/],
    [Buffer.concat([response(200, Buffer.from('abc')), Buffer.from('junk')]), /more body than its Content-Length|bytes nobody asked for/],
  ];
  for (const [raw, re] of cases) {
    const conn = await HttpConnection.open('127.0.0.1', port, AbortSignal.timeout(5000));
    respond = async (sock) => {
      sock.write(raw);
    };
    await assert.rejects(get(conn), (err: Error) => re.test(err.message) && err.message.includes(`127.0.0.1:${port}`), String(raw));
  }
});

test('a connection closed mid-body fails with the bytes still missing; an abort fails at once', async () => {
  const conn = await HttpConnection.open('127.0.0.1', port, AbortSignal.timeout(5000));
  respond = async (sock) => {
    sock.write(response(200, Buffer.alloc(1000)).subarray(0, 500));
    sock.end();
  };
  await assert.rejects(get(conn), /closed the connection with \d+ body bytes still to come/);
  assert.equal(conn.failedBeforeResponse, false);

  const slow = await HttpConnection.open('127.0.0.1', port, AbortSignal.timeout(5000));
  respond = async () => undefined;
  const ac = new AbortController();
  const p = slow.request('/x', {}, { onHead: () => undefined, onBody: () => true, onPause: async () => undefined }, ac.signal);
  ac.abort(new Error('stop'));
  await assert.rejects(p, /stop/);
  assert.equal(slow.failedBeforeResponse, true);
});
