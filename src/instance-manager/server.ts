// The instance manager's HTTP API (fastify), documented in docs/instance-manager-api.md. Handlers check the
// request, call the InstanceManager, and map errors to statuses through `httpStatusOf` only: every error body is
// `{code, message}`.

import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { requireClusterCredential } from '../auth/cluster-credential.js';
import { httpStatusOf, ImError, isImError, messageOf } from './errors.js';
import { statusFor } from '../engine/control.js';
import { isEngineError } from '../engine/errors.js';
import type { InstanceManager, WatchEvent } from './manager.js';
import type { DataRoots } from './data-roots.js';
import { CoalescingStream } from '../util/coalescing-stream.js';
import { limitConnectionsPerClient } from '../util/connection-limit.js';
import { checkName, checkOnDisk, checkPath, parseCreateRequest } from './spec.js';

export interface ImServerOptions {
  manager: InstanceManager;
  node: string;
  versions: { apiVersion: number; apiMinVersion: number };
  /** Data roots replica directories must be inside (none: no replica can be created or removed); PUT replaces them. */
  dataRoots: DataRoots;
  /**
   * The cluster secret: every route but /healthz then needs the cluster's data-plane credential (401 before routing
   * and before any body is read). `stratum instance-manager` always has one; only in-process tests run without.
   */
  clusterSecret?: string | undefined;
  host: string;
  port: number;
  /** "host:port" of the node's replica listener and NBD listener, reported by GET /v1/version. */
  listeners: { replica: string; nbd: string };
  /** Connections one client address may hold open (default DEFAULT_CONNECTIONS_PER_CLIENT). */
  maxConnectionsPerClient?: number;
  /** Interval of heartbeat lines on watch streams (default 5 s). */
  heartbeatMs?: number;
}

export interface ImServer {
  readonly url: string;
  readonly app: FastifyInstance;
  /** Ends watch streams, stops accepting, finishes in-flight requests. */
  close(): Promise<void>;
}

type Req = FastifyRequest<{ Params: { name: string }; Querystring: Record<string, string | undefined>; Body: unknown }>;

export async function startImServer(opts: ImServerOptions): Promise<ImServer> {
  const m = opts.manager;
  const app = Fastify({ logger: false, forceCloseConnections: true, return503OnClosing: true, bodyLimit: 1024 * 1024 });
  const watchers = new Set<ServerResponse>();
  app.server.headersTimeout = 15_000;
  limitConnectionsPerClient(app.server, opts.maxConnectionsPerClient);

  app.setErrorHandler((err, _req, reply) => {
    if (isImError(err)) return reply.code(httpStatusOf(err.code)).send({ code: err.code, message: err.message });
    // An engine's control API answers with the engine's codes (its statusFor), as a standalone engine does.
    if (isEngineError(err)) return reply.code(statusFor(err)).send({ code: err.code, message: err.message });
    const e = err as { statusCode?: number; message?: string };
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.code(e.statusCode).send({ code: 'InvalidArgument', message: e.message ?? 'bad request' });
    }
    return reply.code(500).send({ code: 'Internal', message: messageOf(err) });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ code: 'NotFound', message: `no route for ${req.method} ${req.url}` });
  });

  if (opts.clusterSecret !== undefined) requireClusterCredential(app, { secret: opts.clusterSecret, open: ['/healthz'] });

  app.get('/healthz', async () => 'ok');
  app.get('/v1/version', async () => ({ ...opts.versions, node: opts.node, listeners: opts.listeners }));
  app.get('/v1/data-roots', async () => ({ dataRoots: opts.dataRoots.list }));
  app.put('/v1/data-roots', async (req: Req) => ({ dataRoots: await opts.dataRoots.replace(req.body) }));

  app.get('/v1/instances', (req: Req, reply) => {
    if (req.query.watch !== 'true' && req.query.watch !== '1') return reply.send({ instances: m.list() });
    watch(req, reply.raw);
    reply.hijack();
    return reply;
  });

  app.get('/v1/instances/:name', async (req: Req) => m.get(checkName('name', req.params.name)));

  app.post('/v1/instances', async (req: Req, reply) => {
    const request = parseCreateRequest(req.body, opts.dataRoots.list);
    await checkOnDisk(request.spec, opts.dataRoots.list);
    const r = m.create(request);
    return reply.code(r.created ? 201 : 200).send(r.instance);
  });

  app.delete('/v1/instances/:name', async (req: Req) => {
    const cleanup = req.query.cleanup;
    if (cleanup !== undefined && cleanup !== 'true' && cleanup !== 'false') throw new ImError('InvalidArgument', `cleanup must be true or false, not ${JSON.stringify(cleanup)}`);
    return m.delete(checkName('name', req.params.name), { cleanup: cleanup === 'true' });
  });

  app.delete('/v1/replica-data', async (req: Req) => {
    const dir = checkPath('dir', req.query.dir, opts.dataRoots.list);
    return { dir, removed: await m.removeReplicaData(dir) };
  });

  app.get('/v1/instances/:name/log', async (req: Req, reply) => {
    const n = req.query.lines;
    if (n !== undefined && !/^\d{1,7}$/.test(n)) throw new ImError('InvalidArgument', `lines must be a non-negative integer, not ${JSON.stringify(n)}`);
    const lines = m.logTail(checkName('name', req.params.name), n === undefined ? undefined : Number(n));
    return reply.type('text/plain; charset=utf-8').send(lines.map((l) => `${l}\n`).join(''));
  });

  // Each engine's control API (docs/instance-manager-api.md, "Engines").
  const control = (name: string) => {
    const c = m.engine(checkName('name', name)).control;
    if (!c) throw new ImError('Conflict', `Engine "${name}" is not running (${m.get(name).state})`);
    return c;
  };
  app.get('/v1/engines/:name', (req: Req, reply) => {
    const c = control(req.params.name);
    if (req.query.watch !== 'true' && req.query.watch !== '1') return reply.send(c.status());
    c.watch(req.raw, reply.raw);
    reply.hijack();
    return reply;
  });
  // A live engine upgrade (docs/upgrade.md): {"image": "<engine image>"}; the NBD connections stay open.
  app.post('/v1/engines/:name/swap', async (req: Req) => {
    const image = (req.body as { image?: unknown } | undefined)?.image;
    if (typeof image !== 'string' || image === '') throw new ImError('InvalidArgument', 'the body must be {"image": "<engine image>"}');
    return m.engine(checkName('name', req.params.name)).swapEngine(image, AbortSignal.timeout(60_000));
  });
  app.post('/v1/engines/:name/replicas', async (req: Req, reply) => reply.code(202).send(await control(req.params.name).addReplica(req.body)));
  app.delete('/v1/engines/:name/replicas/:replica', async (req: FastifyRequest<{ Params: { name: string; replica: string } }>) =>
    control(req.params.name).removeReplica(checkName('replica', req.params.replica)),
  );
  type SnapReq = FastifyRequest<{ Params: { name: string; snapshot: string } }>;
  app.get('/v1/engines/:name/snapshots', async (req: Req) => control(req.params.name).listSnapshots());
  app.post('/v1/engines/:name/snapshots', async (req: Req) => control(req.params.name).createSnapshot(req.body));
  app.delete('/v1/engines/:name/snapshots/:snapshot', async (req: SnapReq) => control(req.params.name).deleteSnapshot(checkName('snapshot', req.params.snapshot)));
  app.post('/v1/engines/:name/snapshots/:snapshot/revert', async (req: SnapReq) => control(req.params.name).revertSnapshot(checkName('snapshot', req.params.snapshot)));
  app.post('/v1/engines/:name/purge', async (req: Req) => control(req.params.name).purgeSnapshots());
  app.post('/v1/engines/:name/clone', async (req: Req, reply) => reply.code(202).send(control(req.params.name).startClone(req.body)));
  app.get('/v1/engines/:name/clone', async (req: Req) => control(req.params.name).cloneStatus());

  function watch(req: Req, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache', connection: 'keep-alive' });
    // HEAD (fastify's automatic one): a body is never sent, so the headers would wait for the first heartbeat.
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    watchers.add(res);
    // While the socket is full, events are coalesced per instance.
    const out = new CoalescingStream<WatchEvent>(res, (ev) => (ev.type === 'SNAPSHOT' ? '' : ev.instance.name));
    const unsubscribe = m.subscribe((ev) => out.send(ev));
    const beat = setInterval(() => out.heartbeat(), opts.heartbeatMs ?? 5000);
    req.raw.socket.setKeepAlive(true);
    res.on('close', () => {
      clearInterval(beat);
      unsubscribe();
      watchers.delete(res);
    });
  }

  await app.listen({ host: opts.host, port: opts.port });
  const a = app.server.address();
  const port = a && typeof a === 'object' ? a.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    app,
    close: async () => {
      for (const w of watchers) w.end();
      await app.close();
    },
  };
}
