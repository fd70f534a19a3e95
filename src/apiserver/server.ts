// The HTTP server of `stratum manager`: discovery, the Kubernetes resource API, health and metrics. Bodies are
// JSON or YAML, size-limited; a malformed body is refused with 400 naming the position of the error.

import Fastify, { type FastifyInstance } from 'fastify';
import { parseDocument } from 'yaml';
import type { Registry } from 'prom-client';
import type { Store } from '../store/types.js';
import { apiGroupList, apiResourceList, apiVersions, SERVER_VERSION } from './discovery.js';
import { openApiGroupVersion, openApiRoot, openApiV2Protobuf } from './openapi.js';
import { resourceHandler, type ResourceHandlerOptions } from './resources.js';
import { statusFor, toStatus } from './status.js';
import { v1Error } from './longhorn-v1/common.js';
import { installApiGuard, type ApiGuardOptions } from './guard.js';
import { acceptTlsOnSamePort } from '../auth/index.js';
import { limitConnectionsPerClient } from '../util/connection-limit.js';

export interface ApiServerOptions {
  store: Store;
  host?: string;
  port?: number;
  /** Request body limit in bytes (Kubernetes uses 3 MiB). */
  bodyLimit?: number;
  metrics?: Registry;
  podLogs?: ResourceHandlerOptions['podLogs'];
  /** Credentials, roles, Host/Origin policy (guard.ts). Every production server has one; tests may omit it. */
  guard?: ApiGuardOptions;
  /** Serve HTTPS on the same port (and plain HTTP to loopback clients only, see guard.ts). */
  tls?: { certPem: string; keyPem: string };
  /** Extra routes (the Longhorn /v1 API, uploads) registered by later layers. */
  extend?: (app: FastifyInstance) => void | Promise<void>;
}

export interface ApiServer {
  readonly url: string;
  readonly app: FastifyInstance;
  /** Stop accepting, finish in-flight requests, end watches. */
  close(): Promise<void>;
}

const JSON_TYPES = [
  'application/json',
  'application/merge-patch+json',
  'application/json-patch+json',
  'application/strategic-merge-patch+json',
];
const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'application/apply-patch+yaml'];

export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw Object.assign(new Error(`malformed JSON in request body: ${msg}`), { statusCode: 400 });
  }
}

export function parseYamlBody(text: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : `offset ${first.pos[0]}`;
    throw Object.assign(new Error(`malformed YAML in request body at ${where}: ${first.message.split('\n')[0]}`), {
      statusCode: 400,
    });
  }
  return doc.toJS();
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const bodyLimit = opts.bodyLimit ?? 3 * 1024 * 1024;
  const app = Fastify({ bodyLimit, logger: false, forceCloseConnections: true, return503OnClosing: true });
  // A client gets 15 s to send its request line and headers (slow-loris); bodies and watches are not bounded in
  // time (uploads stream for long, watches idle for hours), but bodies are in size.
  app.server.headersTimeout = 15_000;
  if (opts.tls) acceptTlsOnSamePort(app.server, opts.tls);
  limitConnectionsPerClient(app.server);
  // First: nobody is answered, not even with a 413, before their credential checked out.
  if (opts.guard) installApiGuard(app, { ...opts.guard, plainHttpFromLoopbackOnly: opts.tls !== undefined });

  // Only declared content types are parsed; anything else is a 415, never a raw stream handed to a route (a
  // browser's text/plain form POST must not count as a request). The upload route declares its own (transfer.ts).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    try {
      done(null, body === '' ? undefined : parseJsonBody(body as string));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    try {
      done(null, parseYamlBody(body as string));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  // An oversized body is refused before it is parsed, but still read off the socket (up to a bound) so the client
  // receives the 413 instead of a connection reset in the middle of its upload.
  app.addHook('onRequest', async (req, reply) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (!(declared > bodyLimit) || !req.url.startsWith('/api')) return;
    if (declared <= 64 * 1024 * 1024) {
      req.raw.resume();
      await new Promise<void>((resolve) => {
        req.raw.once('end', resolve);
        req.raw.once('error', () => resolve());
        setTimeout(resolve, 10_000).unref();
      });
    }
    const st = statusFor(413, 'RequestEntityTooLarge', `request body is larger than the limit of ${bodyLimit} bytes`);
    return reply.code(413).send(st);
  });
  app.setErrorHandler((err, req, reply) => {
    const e = err as { code?: string; statusCode?: number; message: string };
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const st = statusFor(413, 'RequestEntityTooLarge', `request body is larger than the limit of ${bodyLimit} bytes`);
      return reply.code(413).send(st);
    }
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      const st = statusFor(415, 'UnsupportedMediaType', `${e.message}: only JSON and YAML bodies are read (uploads: application/octet-stream)`);
      return reply.code(415).send(req.url.startsWith('/v1/') ? v1Error(st) : st);
    }
    const st = toStatus(err);
    return reply.code(st.code).send(req.url.startsWith('/v1/') ? v1Error(st) : st);
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(statusFor(404, 'NotFound', `the server could not find the requested resource (${req.method} ${req.url})`));
  });

  const serverAddress = () => {
    const a = app.server.address();
    return a && typeof a === 'object' ? `${a.address}:${a.port}` : '';
  };
  app.get('/version', async () => SERVER_VERSION);
  app.get('/healthz', async () => 'ok');
  app.get('/readyz', async () => 'ok');
  app.get('/livez', async () => 'ok');
  app.get('/api', async () => apiVersions(serverAddress()));
  app.get('/apis', async () => apiGroupList());
  app.get('/api/:version', async (req, reply) => {
    const { version } = req.params as { version: string };
    return apiResourceList('', version) ?? reply.callNotFound();
  });
  app.get('/apis/:group/:version', async (req, reply) => {
    const { group, version } = req.params as { group: string; version: string };
    return apiResourceList(group, version) ?? reply.callNotFound();
  });
  app.get('/openapi/v3', async () => openApiRoot());
  app.get('/openapi/v2', async (req, reply) => {
    if (!/protobuf/.test(req.headers.accept ?? '')) return { swagger: '2.0', info: { title: 'Stratum', version: SERVER_VERSION.gitVersion }, paths: {} };
    return reply.type('application/com.github.proto-openapi.spec.v2@v1.0+protobuf').send(openApiV2Protobuf());
  });
  app.get('/openapi/v3/*', async (req, reply) => {
    const path = new URL(req.url, 'http://localhost').pathname.replace(/^\/openapi\/v3\//, '').split('/');
    const doc = path[0] === 'api' ? openApiGroupVersion('', path[1] ?? '') : openApiGroupVersion(path[1] ?? '', path[2] ?? '');
    return doc ?? reply.callNotFound();
  });
  // Namespaces are not stored objects here: every valid name exists and is Active (kubectl checks on apply).
  app.get('/api/v1/namespaces/:ns', async (req, reply) => {
    const { ns } = req.params as { ns: string };
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) return reply.callNotFound();
    return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
  });
  app.get('/metrics', async (_req, reply) => {
    if (!opts.metrics) return reply.callNotFound();
    reply.type(opts.metrics.contentType);
    return opts.metrics.metrics();
  });

  const handler = resourceHandler({ store: opts.store, ...(opts.podLogs ? { podLogs: opts.podLogs } : {}) });
  const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
  app.route({ method: [...methods], url: '/api/v1/*', handler });
  app.route({ method: [...methods], url: '/apis/:group/:version/*', handler });

  if (opts.extend) await opts.extend(app);

  await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 9500 });
  const addr = app.server.address();
  const port = addr && typeof addr === 'object' ? addr.port : opts.port;
  const host = opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1';
  return {
    url: `http://${host}:${port}`,
    app,
    close: () => app.close(),
  };
}
