import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { adoptWithReadBuffer, connectWithReadBuffer } from './socket-reads.js';

test('an accepted socket and a connecting one each read into one buffer, and no byte is lost or reordered', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const back = randomBytes(100_000);
  const stores = new Set<ArrayBufferLike>();
  const got: Buffer[] = [];
  let adoptedTransient = false;
  const done = new Promise<void>((resolve) => {
    const server = net.createServer({ allowHalfOpen: true }, (accepted) => {
      const { socket, transient } = adoptWithReadBuffer(accepted, (chunk) => {
        stores.add(chunk.buffer);
        got.push(Buffer.from(chunk));
      });
      adoptedTransient = transient;
      socket.on('end', () => {
        socket.end(back);
        server.close();
        resolve();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const { socket, attach } = connectWithReadBuffer({ host: '127.0.0.1', port });
      const replies: Buffer[] = [];
      const replyStores = new Set<ArrayBufferLike>();
      attach((chunk) => {
        replyStores.add(chunk.buffer);
        replies.push(Buffer.from(chunk));
      });
      socket.on('connect', () => socket.end(data));
      socket.on('close', () => {
        assert.deepEqual(Buffer.concat(replies), back);
        assert.equal(replyStores.size, 1, 'the client read into one buffer');
      });
    });
  });
  await done;
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(adoptedTransient, 'the accepted socket was re-homed');
  assert.deepEqual(Buffer.concat(got), data);
  assert.equal(stores.size, 1, `reads used ${stores.size} buffers`);
});

test('a read target takes the reads it is offered, whole and in order, and the shared buffer takes the rest', async () => {
  const head = randomBytes(1000);
  const payload = randomBytes(2 * 1024 * 1024);
  const tail = randomBytes(5000);
  const target = Buffer.alloc(payload.length);
  let filled = 0;
  let direct = 0;
  const shared: Buffer[] = [];
  await new Promise<void>((resolve) => {
    const server = net.createServer((accepted) => {
      const { socket } = adoptWithReadBuffer(
        accepted,
        (chunk) => {
          if (chunk.buffer === target.buffer) {
            assert.equal(chunk.byteOffset, filled, 'a direct read starts where the target was offered');
            filled += chunk.byteLength;
            direct++;
          } else shared.push(Buffer.from(chunk));
        },
        // Offered once the head has arrived, until the payload is complete (as a parser does).
        { target: () => (Buffer.concat(shared).length >= head.length && filled < payload.length ? target.subarray(filled) : undefined) },
      );
      socket.on('end', () => {
        server.close();
        resolve();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const c = net.connect({ host: '127.0.0.1', port }, () => {
        // The head alone first, so that the payload starts a read of its own.
        c.write(head, () => setTimeout(() => c.end(Buffer.concat([payload, tail])), 50));
      });
    });
  });
  assert.ok(direct > 0, 'some reads landed in the target');
  assert.equal(filled, payload.length, 'reads into the target never run past it');
  assert.deepEqual(target, payload);
  assert.deepEqual(Buffer.concat(shared), Buffer.concat([head, tail]));
});
