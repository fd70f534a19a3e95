// A cap on the TCP connections one client address holds open at once on a server: a single peer that opens
// connections and sits on them (or a loop that never closes them) would otherwise take every file descriptor of
// the process. Connections beyond the cap are closed at accept, before any byte is read; the client's other
// connections and every other client are unaffected.

import type { Server, Socket } from 'node:net';

/** The default for HTTP servers: far above what the cluster's own clients hold (a few watches and calls each). */
export const DEFAULT_CONNECTIONS_PER_CLIENT = 256;

/**
 * Installs the cap on `server` (before anything else sees the socket, so it also holds in front of the manager's
 * TLS sniffing). `onRefuse` hears about each refused connection (for a log line).
 */
export function limitConnectionsPerClient(server: Server, max = DEFAULT_CONNECTIONS_PER_CLIENT, onRefuse?: (address: string, open: number) => void): void {
  const open = new Map<string, number>();
  server.prependListener('connection', (socket: Socket) => {
    const addr = socket.remoteAddress ?? 'local';
    const n = open.get(addr) ?? 0;
    if (n >= max) {
      onRefuse?.(addr, n);
      socket.destroy();
      return;
    }
    open.set(addr, n + 1);
    socket.once('close', () => {
      const left = (open.get(addr) ?? 1) - 1;
      if (left > 0) open.set(addr, left);
      else open.delete(addr);
    });
  });
}
