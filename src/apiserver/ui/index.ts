// The web UI's static files (built by `npm run build` into dist/ui), served by the manager at `/`. A small
// handler of its own instead of a static-file plugin: it serves exactly the files the build wrote (index.html and
// assets/*), never a path outside that folder, and leaves every API path (`/api`, `/apis`, `/openapi`,
// `/version`, `/healthz`, `/metrics`, `/v1`) to the routes that own them.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { statusFor } from '../status.js';

/** Where `npm run build` puts the UI: dist/ui, next to dist/src (this file runs from dist/src/apiserver/ui). */
export const DEFAULT_UI_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'ui');

/** Paths the UI serves. They carry no data, so they stay open when the API requires a token. */
export function isUiAssetPath(pathname: string): boolean {
  return pathname === '/' || pathname === '/index.html' || pathname === '/favicon.svg' || pathname.startsWith('/assets/');
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.map': 'application/json',
};

export function registerUiRoutes(app: FastifyInstance, opts: { dir?: string } = {}): void {
  const root = resolve(opts.dir ?? DEFAULT_UI_DIR);
  const send = async (file: string, immutable: boolean, reply: FastifyReply) => {
    const path = resolve(root, file);
    if (!path.startsWith(root + sep) || !existsSync(path)) {
      const hint = existsSync(join(root, 'index.html')) ? '' : ' (the web UI is not built: run `npm run build`)';
      return reply.code(404).send(statusFor(404, 'NotFound', `the server could not find the requested resource (GET /${file})${hint}`));
    }
    // Built asset names carry a content hash, so they never change; index.html names them and must be re-read.
    void reply.header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    void reply.header('x-content-type-options', 'nosniff');
    return reply.type(TYPES[extname(path)] ?? 'application/octet-stream').send(await readFile(path));
  };
  app.get('/', async (_req, reply) => send('index.html', false, reply));
  app.get('/index.html', async (_req, reply) => send('index.html', false, reply));
  app.get('/favicon.svg', async (_req, reply) => send('favicon.svg', false, reply));
  app.get('/assets/*', async (req, reply) => {
    const rest = (req.params as { '*': string })['*'];
    return send(join('assets', rest), true, reply);
  });
}
