// The node agent's own HTTP endpoint. The manager proxies `kubectl logs` here (see log-client.ts); the agent
// publishes the URL in its Node's `stratum.io/agent-url` annotation.
//
//   GET /healthz                                  ok
//   GET /pods/{namespace}/{name}/log?follow=true&tailLines=N&previous=true&container=C
//
// Errors are JSON `{"code": "...", "message": "..."}` with a matching HTTP status. Everything but /healthz needs the
// cluster credential (the manager sends it). No request may take the agent down: a handler that throws answers
// 400/500 instead of becoming an unhandled rejection, and slow or idle clients are cut off by the timeouts below.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { checkClusterAuthorization } from '../auth/index.js';
import { isAgentError } from './errors.js';
import { logStream, type LogSource } from './logs.js';
import { limitConnectionsPerClient } from '../util/connection-limit.js';

export interface LogLookup {
  (namespace: string, name: string, opts: { previous: boolean; container: string | undefined }): LogSource;
}

export interface AgentServer {
  url: string;
  /** Stop accepting and end open (follow) streams. */
  close(): Promise<void>;
}

export async function startAgentServer(o: { host: string; port: number; logs: LogLookup; clusterSecret: string }): Promise<AgentServer> {
  const streams = new Set<AbortController>();
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) res.destroy();
      else sendError(res, 500, 'Internal', err instanceof Error ? err.message : String(err));
    });
  });
  // A request is a GET without body: 30 s to send it all; an idle keep-alive connection is closed after 5 s.
  server.keepAliveTimeout = 5000;
  limitConnectionsPerClient(server);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // `GET //` or `GET //host` is a valid request line but not a valid path relative to a base URL.
    const url = URL.canParse(req.url ?? '/', 'http://agent') ? new URL(req.url ?? '/', 'http://agent') : undefined;
    if (!url || !(req.url ?? '').startsWith('/')) {
      sendError(res, 400, 'BadRequest', `malformed request target ${JSON.stringify((req.url ?? '').slice(0, 200))}`);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/healthz') {
      res.end('ok');
      return;
    }
    if (!checkClusterAuthorization(req.headers.authorization, o.clusterSecret)) {
      sendError(res, 401, 'Unauthorized', `${req.method ?? ''} ${url.pathname} needs the cluster credential`);
      return;
    }
    const m = /^\/pods\/([^/]+)\/([^/]+)\/log$/.exec(url.pathname);
    if (req.method !== 'GET' || !m) {
      sendError(res, 404, 'NotFound', `no such endpoint: ${req.method ?? ''} ${url.pathname}`);
      return;
    }
    const q = url.searchParams;
    const tail = q.get('tailLines');
    if (tail !== null && !/^\d+$/.test(tail)) {
      sendError(res, 400, 'BadRequest', `tailLines must be a non-negative integer, not "${tail}"`);
      return;
    }
    let src: LogSource;
    try {
      // decodeURIComponent throws on a malformed %-escape: caught below as a 400.
      src = o.logs(decodeURIComponent(m[1] ?? ''), decodeURIComponent(m[2] ?? ''), {
        previous: q.get('previous') === 'true',
        container: q.get('container') ?? undefined,
      });
    } catch (err) {
      // Cannot tell here: a malformed escape (URIError) and a bad option are both the caller's mistake.
      const status = isAgentError(err, 'PodNotFound') ? 404 : 400;
      sendError(res, status, status === 404 ? 'NotFound' : 'BadRequest', (err as Error).message);
      return;
    }
    const ac = new AbortController();
    streams.add(ac);
    req.on('close', () => ac.abort());
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    try {
      await pipeline(
        logStream(src, {
          follow: q.get('follow') === 'true',
          tailLines: tail === null ? undefined : Number(tail),
          signal: ac.signal,
        }),
        res,
      );
    } catch {
      // The client went away or the file vanished (pod deleted): nothing to tell anyone.
      res.destroy();
    } finally {
      streams.delete(ac);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`,
    close: async () => {
      for (const ac of streams) ac.abort();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ code, message }));
}
