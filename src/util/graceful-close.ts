// A graceful close of an HTTP server that lets requests in progress finish but waits for nothing else.
//
// Node's `server.close()` waits for every open connection, and its `closeIdleConnections()` closes only those that
// finished a request: a connection that has not sent its first request yet is left open, and the close then waits
// for as long as the client keeps it. A client's pooled connection whose request was aborted before it was written
// (fetch aborted right after the connect) is exactly that; a data-source pod held its SIGTERM on one for its whole
// grace period and was SIGKILLed.

import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface IdleConnections {
  /**
   * From now on no connection outlives its requests: those without a request in progress are ended now, the
   * others as soon as their response is over. Call it with the server's close (which stops new connections).
   */
  endIdle(): void;
}

/** Call before `listen`, so every connection is seen. */
export function trackIdleConnections(server: Server): IdleConnections {
  /** Requests in progress per open connection. */
  const open = new Map<Socket, number>();
  let closing = false;
  const release = (socket: Socket): void => {
    // end(), not destroy(): the last response's bytes may still sit in the socket's buffer.
    if (closing && (open.get(socket) ?? 0) === 0) socket.end();
  };
  server.on('connection', (socket: Socket) => {
    open.set(socket, 0);
    // Accepted between endIdle() and the listener's close: it gets no time to send a first request either.
    if (closing) queueMicrotask(() => release(socket));
    socket.once('close', () => open.delete(socket));
  });
  server.on('request', (req, res) => {
    const socket = req.socket;
    open.set(socket, (open.get(socket) ?? 0) + 1);
    res.once('close', () => {
      if (open.has(socket)) open.set(socket, Math.max(0, (open.get(socket) ?? 1) - 1));
      release(socket);
    });
  });
  return {
    endIdle: () => {
      closing = true;
      for (const socket of open.keys()) release(socket);
    },
  };
}
