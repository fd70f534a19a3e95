// The manager's HTTP API (fastify), documented in docs/bim-api.md. Handlers parse and check the request, call the
// manager, and map errors to statuses through `httpStatusOf` only: every error body is `{code, message}`.

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { createGzip, constants as zlib } from 'node:zlib';
import { requireClusterCredential } from '../auth/index.js';
import { BimError, httpStatusOf, isBimError, messageOf } from './errors.js';
import { checkFetchSource } from './fetch.js';
import { parseIdentity } from './fsutil.js';
import type { BackingImageManager } from './manager.js';
import { DEFAULT_CHUNK_SIZE } from './manifest.js';
import { checkChunkSize, checkPathComponent, checkPeerUrl, checkSha512, checkSize } from './names.js';
import { RECEIVER_HEADER, SESSION_HEADER } from './peers.js';
import { CoalescingStream } from '../util/coalescing-stream.js';
import { acceptsGzip, parseRange } from './ranges.js';
import type { WatchEvent } from './table.js';
import { limitConnectionsPerClient } from '../util/connection-limit.js';
import { parseManifestAnchor } from '../api/backing-image.js';

export interface ApiVersions {
  apiVersion: number;
  apiMinVersion: number;
}

export interface BimServerOptions {
  manager: BackingImageManager;
  versions: ApiVersions;
  host: string;
  port: number;
  /** Interval of heartbeat lines on watch streams (ms). */
  heartbeatMs?: number;
  /** Only requests carrying the cluster credential are served (`/healthz` excepted). */
  clusterSecret: string;
  /** How long close() lets in-flight transfers finish before cutting them (ms). */
  closeGraceMs?: number;
}

export interface BimServer {
  readonly url: string;
  readonly app: FastifyInstance;
  /** Ends watch streams, stops accepting, finishes in-flight requests. */
  close(): Promise<void>;
}

/** Largest range one data request may ask for. */
const MAX_DATA_REQUEST = 64 * 1024 * 1024;

type Req = FastifyRequest<{ Params: { name: string }; Querystring: Record<string, string | undefined>; Body: unknown }>;

function body(req: Req): Record<string, unknown> {
  if (!req.body || typeof req.body !== 'object' || Array.isArray(req.body)) throw new BimError('InvalidArgument', 'the request body must be a JSON object');
  return req.body as Record<string, unknown>;
}

function optionalUuid(req: Req): string | undefined {
  const u = req.query.uuid;
  return u === undefined || u === '' ? undefined : checkPathComponent('uuid', u);
}

export async function startBimServer(opts: BimServerOptions): Promise<BimServer> {
  const m = opts.manager;
  const app = Fastify({ logger: false, forceCloseConnections: true, return503OnClosing: true, bodyLimit: 1024 * 1024 });
  const watchers = new Set<ServerResponse>();
  requireClusterCredential(app, { secret: opts.clusterSecret, open: ['/healthz'] });
  // 15 s to send the request line and headers (slow-loris); transfers themselves have their own stall limits.
  app.server.headersTimeout = 15_000;
  limitConnectionsPerClient(app.server);

  app.setErrorHandler((err, _req, reply) => {
    if (isBimError(err)) {
      if (err.code === 'ManifestPending') reply.header('retry-after', '1');
      return reply.code(httpStatusOf(err.code)).send({ code: err.code, message: err.message });
    }
    const e = err as { statusCode?: number; message?: string };
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.code(e.statusCode).send({ code: 'InvalidArgument', message: e.message ?? 'bad request' });
    }
    return reply.code(500).send({ code: 'Internal', message: messageOf(err) });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ code: 'NotFound', message: `no route for ${req.method} ${req.url}` });
  });

  app.get('/healthz', async () => 'ok');
  app.get('/v1/version', async () => ({ ...opts.versions, diskUUID: m.diskUUID }));
  app.get('/v1/stats', async () => m.stats.toJSON());
  app.get('/v1/files', async () => ({ files: await m.list() }));

  app.get('/v1/files/:name', async (req: Req) => m.get(checkPathComponent('name', req.params.name), optionalUuid(req)));

  app.post('/v1/files/:name/sync', async (req: Req, reply) => {
    const name = checkPathComponent('name', req.params.name);
    const b = body(req);
    const uuid = checkPathComponent('uuid', b.uuid);
    const size = checkSize('size', b.size);
    const expectedChecksum = checkSha512('expectedChecksum', b.expectedChecksum);
    const sources = b.sources;
    if (!Array.isArray(sources) || sources.length === 0) throw new BimError('InvalidArgument', 'sources must be a non-empty list of peer base URLs');
    const anchor = b.expectedManifestDigest;
    if (anchor !== undefined && (typeof anchor !== 'string' || !parseManifestAnchor(anchor))) {
      throw new BimError('InvalidArgument', 'expectedManifestDigest must be "<chunk size>:<SHA-256 as 64 lower-case hexadecimal characters>"');
    }
    const r = m.startSync({ name, uuid, size, expectedChecksum, ...(anchor ? { expectedManifestDigest: anchor } : {}), sources: sources.map((s, i) => checkPeerUrl(`sources[${i}]`, s)) });
    return reply.code(r.started ? 202 : 200).send(r.info);
  });

  app.post('/v1/files/:name/scrub', async (req: Req, reply) => {
    const name = checkPathComponent('name', req.params.name);
    const b = body(req);
    const uuid = checkPathComponent('uuid', b.uuid);
    const sources = b.sources ?? [];
    if (!Array.isArray(sources)) throw new BimError('InvalidArgument', 'sources must be a list of peer base URLs (it may be empty)');
    const rate = b.maxBytesPerSecond;
    if (rate !== undefined && (typeof rate !== 'number' || !Number.isSafeInteger(rate) || rate < 1)) {
      throw new BimError('InvalidArgument', 'maxBytesPerSecond must be a positive whole number of bytes');
    }
    const request = b.request;
    if (request !== undefined && (typeof request !== 'string' || request.length > 64)) throw new BimError('InvalidArgument', 'request must be a string of at most 64 characters');
    const r = m.startScrub({
      name,
      uuid,
      sources: sources.map((s, i) => checkPeerUrl(`sources[${i}]`, s)),
      ...(rate === undefined ? {} : { maxBytesPerSecond: rate }),
      ...(request === undefined ? {} : { request }),
    });
    return reply.code(r.started ? 202 : 200).send(r.info);
  });

  app.post('/v1/files/:name/fetch', async (req: Req, reply) => {
    const name = checkPathComponent('name', req.params.name);
    const b = body(req);
    if (typeof b.sourcePath !== 'string') throw new BimError('InvalidArgument', 'sourcePath is required: the data source\'s finished file on this disk');
    const identity = b.identity === undefined ? undefined : parseIdentity(b.identity);
    if (b.identity !== undefined && !identity) throw new BimError('InvalidArgument', 'identity must be {size, mtimeNs, inode}');
    const req2 = {
      name,
      uuid: checkPathComponent('uuid', b.uuid),
      sourcePath: b.sourcePath,
      size: checkSize('size', b.size),
      expectedChecksum: b.expectedChecksum === undefined || b.expectedChecksum === '' ? undefined : checkSha512('expectedChecksum', b.expectedChecksum),
      sha512: b.sha512 === undefined || b.sha512 === '' ? undefined : checkSha512('sha512', b.sha512),
      identity,
    };
    // A wrong source is the caller's mistake (400), not a failed file; a ready file needs no source any more.
    const existing = m.table.tryFind(name, req2.uuid);
    if (!existing || (existing.state !== 'ready' && !existing.job)) await checkFetchSource(m.layout, req2);
    const r = m.startFetch(req2);
    return reply.code(r.started ? 202 : 200).send(r.info);
  });

  app.delete('/v1/files/:name', async (req: Req, reply) => {
    await m.delete(checkPathComponent('name', req.params.name), optionalUuid(req));
    return reply.code(204).send();
  });

  app.get('/v1/files/:name/chunks', async (req: Req) => {
    const rec = m.table.find(checkPathComponent('name', req.params.name), optionalUuid(req));
    return m.sender.manifest(rec, checkChunkSize(req.query.size ?? DEFAULT_CHUNK_SIZE));
  });

  app.get('/v1/files/:name/data', async (req: Req, reply) => {
    const rec = m.table.find(checkPathComponent('name', req.params.name), optionalUuid(req));
    const offset = checkSize('offset', req.query.offset);
    const length = checkSize('length', req.query.length);
    await m.sender.checkServable(rec);
    if (length > MAX_DATA_REQUEST) throw new BimError('InvalidArgument', `length ${length} is above the ${MAX_DATA_REQUEST}-byte limit of one request`);
    if (offset + length > rec.size) throw new BimError('RangeNotSatisfiable', `bytes ${offset}+${length} are outside ${rec.name} (${rec.size} bytes)`);
    const header = (h: string) => (typeof req.headers[h] === 'string' ? (req.headers[h] as string) : undefined);
    const lease = m.sender.acquire(rec, { session: header(SESSION_HEADER), to: header(RECEIVER_HEADER) ?? req.ip, kind: 'sync' });
    m.stats.sent.dataRequests++;
    reply.header('content-type', 'application/octet-stream').header('content-length', String(length));
    await m.sender.send(reply, rec, offset, offset + length - 1, lease, 'data');
    return reply;
  });

  app.get('/v1/files/:name/download', async (req: Req, reply) => download(m, req, reply));

  app.get('/v1/watch', (req, reply) => {
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/x-ndjson', 'cache-control': 'no-cache', connection: 'keep-alive' });
    // HEAD (fastify's automatic one): a body is never sent, so the headers would wait forever for a first write.
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    watchers.add(res);
    // While the socket is full, events are coalesced per file (latest wins).
    const line = (ev: WatchEvent | { type: 'HEARTBEAT' }) => (sse ? `data: ${JSON.stringify(ev)}\n\n` : `${JSON.stringify(ev)}\n`);
    const out = new CoalescingStream<WatchEvent>(res, (ev) => (ev.type === 'SNAPSHOT' ? '' : `${ev.file.name}/${ev.file.uuid}`), line);
    const unsubscribe = m.table.subscribe((ev) => out.send(ev));
    const beat = setInterval(() => out.heartbeat(), opts.heartbeatMs ?? 15_000);
    res.on('close', () => {
      clearInterval(beat);
      unsubscribe();
      watchers.delete(res);
    });
  });

  await app.listen({ host: opts.host, port: opts.port });
  const a = app.server.address();
  const port = a && typeof a === 'object' ? a.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    app,
    close: async () => {
      for (const w of watchers) w.end();
      // In-flight transfers get a grace period, then their connections are cut (receivers resume later).
      const cut = setTimeout(() => app.server.closeAllConnections(), opts.closeGraceMs ?? 5000);
      try {
        await app.close();
      } finally {
        clearTimeout(cut);
      }
    },
  };
}

async function download(m: BackingImageManager, req: Req, reply: FastifyReply): Promise<FastifyReply> {
  const rec = m.table.find(checkPathComponent('name', req.params.name), optionalUuid(req));
  await m.sender.checkServable(rec);
  const size = rec.size;
  const range = parseRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, size);
  reply
    .header('accept-ranges', 'bytes')
    .header('content-type', 'application/octet-stream')
    .header('content-disposition', `attachment; filename*=UTF-8''${encodeURIComponent(rec.name)}`)
    .header('x-checksum-sha512', rec.currentChecksum)
    .header('etag', `"${rec.currentChecksum.slice(0, 32)}"`)
    .header('vary', 'accept-encoding');
  if (range.kind === 'unsatisfiable') {
    reply.header('content-range', `bytes */${size}`);
    throw new BimError('RangeNotSatisfiable', `the range ${String(req.headers.range)} is outside ${rec.name} (${size} bytes)`);
  }
  const head = req.method === 'HEAD';
  if (range.kind === 'partial') {
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', String(range.end - range.start + 1));
    if (head) return headOnly(reply);
    const lease = m.sender.acquire(rec, { to: req.ip, kind: 'download' });
    m.stats.sent.downloadRequests++;
    await m.sender.send(reply, rec, range.start, range.end, lease, 'download');
    return reply;
  }
  // Ranges refer to the file's bytes, so compression applies only to whole-file downloads.
  const gzip = acceptsGzip(typeof req.headers['accept-encoding'] === 'string' ? req.headers['accept-encoding'] : undefined);
  if (gzip) reply.header('content-encoding', 'gzip');
  else reply.header('content-length', String(size));
  if (head) return headOnly(reply);
  const lease = m.sender.acquire(rec, { to: req.ip, kind: 'download' });
  m.stats.sent.downloadRequests++;
  if (!gzip) {
    await m.sender.send(reply, rec, 0, size - 1, lease, 'download');
    return reply;
  }
  const stream = m.sender.stream(rec, 0, size - 1, lease, 'download');
  // Level 1: images compress well already at the fastest level, and the CPU is the bottleneck of gzip.
  const z = createGzip({ level: zlib.Z_BEST_SPEED });
  stream.on('error', (err) => z.destroy(err));
  z.on('close', () => stream.destroy());
  return reply.send(stream.pipe(z));
}

/** Ends a HEAD response with the headers set so far; fastify would otherwise replace Content-Length with 0. */
function headOnly(reply: FastifyReply): FastifyReply {
  reply.hijack();
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = String(v);
  reply.raw.writeHead(reply.statusCode, headers);
  reply.raw.end();
  return reply;
}
