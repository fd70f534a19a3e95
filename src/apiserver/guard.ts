// The one place the manager's API checks who is calling and whether they may: installed on the API server before
// any route. In order, per request:
//   1. open paths (`/healthz`, `/readyz`, `/livez`, `/`, `/ui/…`) pass;
//   2. Host must name this server and Origin must be same-origin or a configured CORS origin (DNS rebinding, CSRF);
//   3. a bearer token must match a token of auth.json (401 otherwise), before any body is read;
//   4. the role must allow the request (403), decided in preHandler, once a create's body (its name) is parsed;
//   5. watches per client are bounded (429).
// Refusals are Kubernetes `Status` bodies, or the `/v1` error shape under /v1.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AUTH_HTTP_STATUS, hostProblem, originProblem, refusal, type AuthErrorCode, type Identity, type OriginPolicy, type PolicyContext, type TokenTable } from '../auth/index.js';
import { v1Error } from './longhorn-v1/common.js';
import { statusFor } from './status.js';

export interface ApiGuardOptions {
  tokens: TokenTable;
  origins: OriginPolicy;
  policy: PolicyContext;
  /** Refuse plain HTTP from anything but loopback (the server also speaks HTTPS on its port). */
  plainHttpFromLoopbackOnly?: boolean;
  /** Concurrent watch streams one identity may hold (default 128). */
  maxWatchesPerClient?: number;
}

const OPEN = /^\/(healthz|readyz|livez|ui(\/.*)?|favicon\.ico)?$/;
const HEALTH = /^\/(healthz|readyz|livez)$/;

declare module 'fastify' {
  interface FastifyRequest {
    identity?: Identity;
  }
}

const REASON: Record<AuthErrorCode, string> = {
  Unauthorized: 'Unauthorized',
  Forbidden: 'Forbidden',
  BadOrigin: 'Forbidden',
  InvalidCredentialsFile: 'InternalError',
  HandshakeFailed: 'Unauthorized',
  TooManyRequests: 'TooManyRequests',
};

function refuse(req: FastifyRequest, reply: FastifyReply, code: AuthErrorCode, message: string): FastifyReply {
  const status = AUTH_HTTP_STATUS[code];
  const st = statusFor(status, REASON[code], message);
  if (code === 'Unauthorized') void reply.header('www-authenticate', 'Bearer realm="stratum"');
  return reply.code(status).send(req.url.startsWith('/v1/') ? v1Error(st) : st);
}

function isLoopback(addr: string | undefined): boolean {
  return addr !== undefined && (addr === '::1' || /^(::ffff:)?127\./.test(addr));
}

function segmentsOf(pathname: string): string[] | undefined {
  try {
    return pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
  } catch {
    return undefined;
  }
}

export function installApiGuard(app: FastifyInstance, o: ApiGuardOptions): void {
  const maxWatches = o.maxWatchesPerClient ?? 128;
  const watches = new Map<string, number>();

  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    if (HEALTH.test(path)) return;
    if (o.plainHttpFromLoopbackOnly && !(req.socket as { encrypted?: boolean }).encrypted && !isLoopback(req.socket.remoteAddress)) {
      return refuse(req, reply, 'BadOrigin', 'plain HTTP is served to this machine only: use https:// with the cluster CA (in the kubeconfig)');
    }
    const badHost = hostProblem(req.headers.host, o.origins);
    if (badHost) return refuse(req, reply, 'BadOrigin', badHost);
    const origin = req.headers.origin;
    const badOrigin = originProblem(origin, req.headers.host, o.origins);
    if (badOrigin) return refuse(req, reply, 'BadOrigin', badOrigin);
    if (origin !== undefined && o.origins.corsOrigins.includes(origin)) {
      void reply.header('access-control-allow-origin', origin).header('vary', 'origin');
      if (req.method === 'OPTIONS') {
        return reply
          .code(204)
          .header('access-control-allow-methods', 'GET, POST, PUT, PATCH, DELETE')
          .header('access-control-allow-headers', 'authorization, content-type, accept')
          .header('access-control-max-age', '600')
          .send();
      }
    }
    if (OPEN.test(path) && (req.method === 'GET' || req.method === 'HEAD')) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const id = m?.[1] ? o.tokens.authenticate(m[1]) : undefined;
    if (!id) return refuse(req, reply, 'Unauthorized', m ? 'the bearer token is not valid (revoked or rotated?)' : 'this API needs a credential: Authorization: Bearer <token> (see DIR/kubeconfig)');
    req.identity = id;
  });

  app.addHook('preHandler', async (req, reply) => {
    const id = req.identity;
    if (!id) return; // open path
    // Prefixed, not resolved against a base: `//x` is a path here, not a protocol-relative URL.
    const url = new URL(`http://localhost${req.url.startsWith('/') ? '' : '/'}${req.url}`);
    const segments = segmentsOf(url.pathname);
    if (!segments) {
      const st = statusFor(400, 'BadRequest', 'malformed percent-encoding in the request path');
      return reply.code(400).send(req.url.startsWith('/v1/') ? v1Error(st) : st);
    }
    const why = await refusal(id, { method: req.method, segments, query: url.searchParams, body: req.body }, o.policy);
    if (why) return refuse(req, reply, 'Forbidden', `${id.name} (role ${id.role}): ${why}`);
    const watching = url.searchParams.get('watch');
    if (watching === 'true' || watching === '1') {
      const n = watches.get(id.name) ?? 0;
      if (n >= maxWatches) return refuse(req, reply, 'TooManyRequests', `${id.name} already holds ${n} watches (the limit per client)`);
      watches.set(id.name, n + 1);
      reply.raw.once('close', () => {
        const left = (watches.get(id.name) ?? 1) - 1;
        if (left <= 0) watches.delete(id.name);
        else watches.set(id.name, left);
      });
    }
  });
}
