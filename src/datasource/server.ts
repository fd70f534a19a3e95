// The data source's HTTP API (docs/datasource-api.md): file status, a push change stream, the transfer hand-off,
// and the resumable upload. Upload bodies are streamed to the file by the route, never parsed or buffered by the
// framework. Errors answer `{ code, message[, offset] }` with the status from `httpStatusOf`.

import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import { requireClusterCredential } from '../auth/index.js';
import { DataSourceError, httpStatusOf, isDataSourceError, messageOf } from './errors.js';
import type { DataSource } from './service.js';
import { normaliseChecksum } from './source-url.js';
import { limitConnectionsPerClient } from '../util/connection-limit.js';
import { trackIdleConnections } from '../util/graceful-close.js';

export interface DataSourceServer {
  /** `http://host:port` of the listening socket. */
  readonly url: string;
  /** Ends watch streams, lets running requests finish, closes the socket. */
  close(): Promise<void>;
  /** Drops every connection at once. */
  destroy(err?: Error): void;
}

export interface ServeOptions {
  host: string;
  port: number;
  /** Only requests carrying the cluster credential are served (`/healthz` excepted). */
  clusterSecret: string;
  /** Minimum spacing of progress-only events on a watch stream. */
  watchIntervalMs?: number;
  /** Keep-alive on idle watch streams. */
  heartbeatMs?: number;
}

type Query = Record<string, string | undefined>;

function intParam(name: string, raw: string | undefined): number {
  if (raw === undefined || !/^\d+$/.test(raw)) throw new DataSourceError('BadRequest', `${name} must be a non-negative integer, got ${JSON.stringify(raw ?? '')}`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new DataSourceError('BadRequest', `${name} ${raw} is too large`);
  return n;
}

export async function serveDataSource(ds: DataSource, o: ServeOptions): Promise<DataSourceServer> {
  // requestTimeout 0: an upload chunk may stream for hours; stalls are caught by the state machine's idle timeout.
  const app: FastifyInstance = Fastify({ logger: false, requestTimeout: 0, connectionTimeout: 0 });
  const watchers = new Set<() => void>();
  requireClusterCredential(app, { secret: o.clusterSecret, open: ['/healthz'] });
  app.server.headersTimeout = 15_000;
  limitConnectionsPerClient(app.server);
  // Running requests finish on close, but a connection that has sent none is not waited for (see the helper).
  const idle = trackIdleConnections(app.server);

  app.setErrorHandler((err: unknown, _req, reply) => {
    const status = isDataSourceError(err) ? httpStatusOf(err) : ((err as { statusCode?: number }).statusCode ?? 500);
    const body: Record<string, unknown> = { code: isDataSourceError(err) ? err.code : status >= 500 ? 'Internal' : 'BadRequest', message: messageOf(err) };
    if (isDataSourceError(err) && err.offset !== undefined) {
      body.offset = err.offset;
      void reply.header('upload-offset', String(err.offset));
    }
    void reply.code(status).header('cache-control', 'no-store').send(body);
  });

  app.get('/healthz', async () => 'ok');

  app.get('/v1/file', async (_req, reply) => reply.header('cache-control', 'no-store').send(ds.info()));

  app.post('/v1/transfer', async () => ds.transfer());

  app.get('/v1/watch', (req, reply) => {
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/x-ndjson', 'cache-control': 'no-store' });
    // HEAD (fastify's automatic one): a body is never sent, so the headers would wait forever for a first write.
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const interval = o.watchIntervalMs ?? 250;
    let last = 0;
    let trailing: NodeJS.Timeout | undefined;
    const send = (): void => {
      clearTimeout(trailing);
      trailing = undefined;
      last = Date.now();
      const json = JSON.stringify(ds.info());
      res.write(sse ? `event: file\ndata: ${json}\n\n` : `${json}\n`);
    };
    const unsubscribe = ds.onChange((kind) => {
      if (kind === 'state') send();
      else if (trailing === undefined) trailing = setTimeout(send, Math.max(0, last + interval - Date.now()));
    });
    // ndjson has no comments, so the heartbeat is the current status again; SSE gets a comment line.
    const heartbeat = setInterval(() => (sse ? res.write(': keep-alive\n\n') : send()), o.heartbeatMs ?? 15_000);
    const end = (): void => {
      unsubscribe();
      clearTimeout(trailing);
      clearInterval(heartbeat);
      watchers.delete(end);
      res.end();
    };
    watchers.add(end);
    res.on('close', end);
    send();
  });

  // The upload routes get bodies declared as bytes (application/octet-stream, or tus's offset+octet-stream) as the
  // raw request stream: nothing is parsed or buffered. Any other declared type is a 415, so a browser form
  // (text/plain, urlencoded) is never taken as image bytes. Encapsulated so the rest keeps fastify's JSON parser.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(['application/octet-stream', 'application/offset+octet-stream'], (_req, payload, done) => done(null, payload));

    const uploadHeaders = (reply: FastifyReply, s: { offset: number; size: number | undefined }): FastifyReply => {
      void reply.header('upload-offset', String(s.offset)).header('cache-control', 'no-store');
      if (s.size !== undefined) void reply.header('upload-length', String(s.size));
      return reply;
    };

    scope.post('/v1/upload', async (req, reply) => {
      const q = req.query as Query;
      const size = intParam('size', q.size);
      const checksum = normaliseChecksum('checksum', q.checksum);
      const s = await ds.declareUpload(size, checksum);
      return uploadHeaders(reply, s).send(s);
    });

    // HEAD is derived from this route by fastify (same headers, no body).
    scope.get('/v1/upload', async (_req, reply) => {
      const s = ds.uploadStatus();
      return uploadHeaders(reply, s).send(s);
    });

    const receive = async (offset: number, body: unknown, rawLength: string | undefined, reply: FastifyReply, signal: AbortSignal): Promise<FastifyReply> => {
      const length = rawLength === undefined ? undefined : intParam('Content-Length', rawLength);
      const stream = body instanceof Readable ? body : Readable.from([]);
      const newOffset = await ds.receiveUpload(offset, length, stream, { signal });
      const s = ds.uploadStatus();
      return uploadHeaders(reply, { offset: newOffset, size: s.size }).send({ offset: newOffset, size: s.size, state: ds.info().state });
    };

    scope.put('/v1/upload', async (req, reply) => {
      const offset = intParam('offset', (req.query as Query).offset);
      return receive(offset, req.body, req.headers['content-length'], reply, requestSignal(req.raw));
    });

    scope.patch('/v1/upload', async (req, reply) => {
      const raw = req.headers['upload-offset'];
      const offset = intParam('Upload-Offset', Array.isArray(raw) ? raw[0] : raw);
      return receive(offset, req.body, req.headers['content-length'], reply, requestSignal(req.raw));
    });
  });

  await app.listen({ host: o.host, port: o.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}`,
    close: async () => {
      for (const end of [...watchers]) end();
      const closed = app.close();
      idle.endIdle();
      await closed;
    },
    destroy: (err?: Error) => {
      for (const end of [...watchers]) end();
      app.server.closeAllConnections();
      void app.close().catch(() => undefined);
      if (err) process.emitWarning(`data source server destroyed: ${err.message}`);
    },
  };
}

/** Aborts when the client goes away before the answer. */
function requestSignal(req: NodeJS.EventEmitter & { complete?: boolean }): AbortSignal {
  const ac = new AbortController();
  req.once('close', () => {
    if (!req.complete) ac.abort(new DataSourceError('Internal', 'the client closed the connection'));
  });
  return ac.signal;
}
