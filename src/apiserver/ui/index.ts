// The web UI's static files (built by `npm run build` into dist/ui), served by the manager: index.html at `/` and
// every other file under `/ui/` (assets/*, favicon.svg). Exactly the paths the API guard leaves open
// (src/apiserver/guard.ts), so the page loads without a token and logs in itself. A small handler of its own
// instead of a static-file plugin: it serves only files the build wrote, never a path outside that folder, and
// leaves every API path (`/api`, `/apis`, `/openapi`, `/version`, `/healthz`, `/metrics`, `/v1`) to its routes.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { statusFor } from '../status.js';

/** Where `npm run build` puts the UI: dist/ui, next to dist/src (this file runs from dist/src/apiserver/ui). */
export const DEFAULT_UI_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'ui');

/** Where the built files are served (Vite's `base` in ui/vite.config.ts says the same). */
export const UI_PREFIX = '/ui/';

/** Paths the UI serves. They carry no data, so the API guard leaves them open. */
export function isUiAssetPath(pathname: string): boolean {
  return pathname === '/' || pathname.startsWith(UI_PREFIX);
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
    if (!path.startsWith(root + sep) || !statSync(path, { throwIfNoEntry: false })?.isFile()) {
      const hint = existsSync(join(root, 'index.html')) ? '' : ' (the web UI is not built: run `npm run build`)';
      return reply.code(404).send(statusFor(404, 'NotFound', `the server could not find the requested resource (GET ${reply.request.url})${hint}`));
    }
    // Built asset names carry a content hash, so they never change; index.html names them and must be re-read.
    void reply.header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    void reply.header('x-content-type-options', 'nosniff');
    return reply.type(TYPES[extname(path)] ?? 'application/octet-stream').send(await readFile(path));
  };
  app.get('/', async (_req, reply) => send('index.html', false, reply));
  app.get(`${UI_PREFIX}*`, async (req, reply) => {
    const rest = (req.params as { '*': string })['*'];
    return send(rest, rest.startsWith('assets/'), reply);
  });
}
