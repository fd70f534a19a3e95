// HTTPS and HTTP on one port: the first byte of a connection tells them apart (22 is a TLS handshake record).
// kubectl sends bearer tokens only over TLS, so the API needs HTTPS even on loopback; plain HTTP stays for
// loopback clients that do not carry the CA (`stratum up`'s own agents), and the guard refuses plain HTTP from
// any other address (apiserver/guard.ts). The HTTP server keeps its own connection handling (timeouts, graceful
// close); a TLS connection is handed to it wrapped in a TLSSocket.

import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { createSecureContext, TLSSocket } from 'node:tls';

const TLS_HANDSHAKE = 22;

export function acceptTlsOnSamePort(server: Server, o: { certPem: string; keyPem: string; handshakeTimeoutMs?: number }): void {
  const secureContext = createSecureContext({ cert: o.certPem, key: o.keyPem, minVersion: 'TLSv1.2' });
  const listeners = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const handOver = (socket: Socket) => {
    for (const l of listeners) l.call(server, socket);
  };
  server.on('connection', (socket: Socket) => {
    // A client that connects and sends nothing is dropped like one that stalls in the handshake.
    socket.setTimeout(o.handshakeTimeoutMs ?? 10_000, () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      if (first[0] !== TLS_HANDSHAKE) {
        socket.unshift(first);
        handOver(socket);
        socket.resume();
        return;
      }
      // The first bytes were read off the socket's handle already, so TLS cannot take the handle over: it reads
      // through a JS stream that replays them first.
      const tls = new TLSSocket(replaying(socket, first), { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
      tls.on('error', () => tls.destroy());
      handOver(tls as unknown as Socket);
    });
    socket.on('error', () => socket.destroy());
  });
}

/** A duplex over `socket` whose readable side starts with `first`. */
function replaying(socket: Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end(cb);
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(first);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.once('end', () => d.push(null));
  socket.once('close', () => d.destroy());
  socket.once('error', (e) => d.destroy(e));
  return d;
}
