// The data plane's credential: one per-cluster secret (auth.json's `clusterSecret`) that every component of the
// cluster holds and nobody else. The secret itself never travels; what travels is derived from it:
//
//   HTTP (backing-image manager, data source, node agent, instance manager, engine control):
//     Authorization: Bearer <dataPlaneToken(secret)>            checked by requireClusterCredential / checkClusterAuthorization
//   raw TCP (replica protocol, and anything else without HTTP): a challenge/response handshake
//     server → client   nonce_s (32 random bytes)
//     client → server   name, nonce_c (32 bytes), proof_c = HMAC(secret, "client" | purpose | name | nonce_s | nonce_c)
//     server → client   proof_s = HMAC(secret, "server" | purpose | name | nonce_s | nonce_c)
//     Both sides prove they hold the secret; a recorded exchange cannot be replayed (fresh nonces), and the proof is
//     bound to the name (a proof for replica "a" does not open replica "b").
//   NBD (tools the operator runs: qemu-img, nbdcopy): TLS-PSK with a per-export key, nbdPsk(secret, export), so a
//     key handed out for one volume opens that volume only.
//
// How a component learns the secret: the node agent holds it (node credentials file written by `stratum up` or
// `stratum token create --role node`) and starts every pod with STRATUM_CLUSTER_SECRET_FILE naming a 0600 copy;
// the manager reads it from auth.json.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AuthError } from './errors.js';

/** The environment variable through which the node agent tells a pod where the cluster secret is. */
export const CLUSTER_SECRET_ENV = 'STRATUM_CLUSTER_SECRET_FILE';

const HTTP_PURPOSE = 'stratum/data-plane-http/v1';

/** Reads a cluster secret file (hex, at least 32 bytes; surrounding white space ignored). */
export function readClusterSecret(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new AuthError('InvalidCredentialsFile', `cannot read the cluster secret at ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!/^[0-9a-f]{64,}$/.test(text)) throw new AuthError('InvalidCredentialsFile', `${file} does not hold a cluster secret (64 or more hex digits)`);
  return text;
}

/**
 * The secret a data-plane process runs with: the file named by `flag`, else by $STRATUM_CLUSTER_SECRET_FILE. A
 * data-plane process without one refuses to start: it would otherwise serve whoever connects.
 */
export function clusterSecretFromEnv(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const file = flag ?? env[CLUSTER_SECRET_ENV];
  if (!file) {
    throw new AuthError('InvalidCredentialsFile', `no cluster secret: pass --cluster-secret-file FILE or set ${CLUSTER_SECRET_ENV} (the node agent sets it for the pods it runs)`);
  }
  return readClusterSecret(file);
}

function hmac(secret: string, ...parts: (string | Buffer)[]): Buffer {
  const h = createHmac('sha256', Buffer.from(secret, 'hex'));
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p) : p;
    // Length-prefixed, so ("ab","c") and ("a","bc") differ.
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    h.update(len).update(b);
  }
  return h.digest();
}

export function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The bearer token data-plane HTTP servers accept. */
export function dataPlaneToken(secret: string): string {
  return hmac(secret, HTTP_PURPOSE).toString('base64url');
}

/** Headers a client of a data-plane HTTP server adds to every request. */
export function clusterAuthHeaders(secret: string): { authorization: string } {
  return { authorization: `Bearer ${dataPlaneToken(secret)}` };
}

/** True when an Authorization header value carries the cluster's data-plane token. */
export function checkClusterAuthorization(header: string | string[] | undefined, secret: string): boolean {
  if (typeof header !== 'string') return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m?.[1]) return false;
  return safeEqual(Buffer.from(m[1]), Buffer.from(dataPlaneToken(secret)));
}

export interface ClusterCredentialOptions {
  secret: string;
  /** Paths (exact, without query) served to anyone: health checks only. */
  open?: string[];
  /** The error body the server uses elsewhere, so 401s look like its other errors. */
  errorBody?: (code: 'Unauthorized', message: string) => unknown;
}

/**
 * A fastify onRequest hook that answers 401 to any request without the cluster's data-plane token, before routing
 * and before any body is read. `requireClusterCredential(app, { secret, open: ['/healthz'] })`.
 */
export function requireClusterCredential(app: FastifyInstance, o: ClusterCredentialOptions): void {
  const open = new Set(o.open ?? ['/healthz']);
  const body = o.errorBody ?? ((code, message) => ({ code, message }));
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const path = req.url.split('?')[0] ?? '';
    if (open.has(path)) return;
    if (checkClusterAuthorization(req.headers.authorization, o.secret)) return;
    reply.header('www-authenticate', 'Bearer realm="stratum-data-plane"');
    return reply.code(401).send(body('Unauthorized', `${req.method} ${path} needs the cluster credential (only the cluster's own components may call this endpoint)`));
  });
}

// ---- raw TCP handshakes ----

export const NONCE_BYTES = 32;

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export interface HandshakeInput {
  /** What is being opened, e.g. "replica" or "engine-control": a proof for one purpose is useless for another. */
  purpose: string;
  /** The name asked for in the handshake (replica, volume, export). */
  name: string;
  serverNonce: Buffer;
  clientNonce: Buffer;
}

/** The client's proof (sent after the server's nonce). */
export function clientProof(secret: string, h: HandshakeInput): Buffer {
  return hmac(secret, 'client', h.purpose, h.name, h.serverNonce, h.clientNonce);
}

/** The server's proof (sent back once the client's verified), so the client knows it reached the cluster. */
export function serverProof(secret: string, h: HandshakeInput): Buffer {
  return hmac(secret, 'server', h.purpose, h.name, h.serverNonce, h.clientNonce);
}

/** Throws HandshakeFailed unless `proof` is the client proof for `h`. */
export function verifyClientProof(secret: string, h: HandshakeInput, proof: Buffer): void {
  if (h.serverNonce.length !== NONCE_BYTES || h.clientNonce.length !== NONCE_BYTES || !safeEqual(proof, clientProof(secret, h))) {
    throw new AuthError('HandshakeFailed', `handshake for ${h.purpose} "${h.name}" failed: the peer does not hold the cluster secret`);
  }
}

/** Throws HandshakeFailed unless `proof` is the server proof for `h`. */
export function verifyServerProof(secret: string, h: HandshakeInput, proof: Buffer): void {
  if (!safeEqual(proof, serverProof(secret, h))) {
    throw new AuthError('HandshakeFailed', `handshake for ${h.purpose} "${h.name}" failed: the server does not hold the cluster secret`);
  }
}

/** The TLS-PSK key of one NBD export (hex), for `--tls-psk` servers and the operator's psk file. */
export function nbdPsk(secret: string, exportName: string): string {
  return hmac(secret, 'stratum/nbd-psk/v1', exportName).toString('hex');
}

/** A line of a GnuTLS psk file (`username:hexkey`) as qemu's tls-creds-psk and nbdcopy's tls-psk-file read it. */
export function nbdPskFileLine(secret: string, exportName: string): string {
  return `${exportName}:${nbdPsk(secret, exportName)}`;
}
