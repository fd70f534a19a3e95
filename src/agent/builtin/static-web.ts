// The catalog's `registry.k8s.io/nginx-slim:0.8`: a small static file server, as the seed's StatefulSet expects
// nginx to be. It listens on $PORT and serves the pod's mount of `/usr/share/nginx/html` (the nginx image's `www`
// root) at `/`; every other mount under `/usr/share/nginx/` at its own prefix (`/html2/…`). Mounts come from
// STRATUM_MOUNTS (mountPath → host path), set by the node agent.
//
// Beyond nginx (Stratum's own, so tests and users can write through a pod): `PUT <path>` stores the body as that
// file (parent directories made) and answers 201; it is refused with 405 when the root is not mounted.

import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { dirname, join, normalize, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';

const ROOT = '/usr/share/nginx/html';
const port = Number(process.env['PORT'] ?? '80');
const host = process.env['HOST'] || undefined;
const mounts = JSON.parse(process.env['STRATUM_MOUNTS'] ?? '{}') as Record<string, string>;

/** URL prefix → host directory, longest prefix first. */
const roots: [string, string][] = Object.entries(mounts)
  .flatMap(([mountPath, hostPath]): [string, string][] => {
    if (mountPath === ROOT) return [['/', hostPath]];
    if (mountPath.startsWith('/usr/share/nginx/')) return [[`/${mountPath.slice('/usr/share/nginx/'.length)}/`, hostPath]];
    return [];
  })
  .sort((a, b) => b[0].length - a[0].length);

function resolvePath(urlPath: string): string | undefined {
  const path = decodeURIComponent(urlPath.split('?')[0] ?? '/');
  const hit = roots.find(([prefix]) => path.startsWith(prefix) || `${path}/` === prefix);
  if (!hit) return undefined;
  const rel = normalize(path.slice(hit[0].length - 1) || '/');
  const file = join(hit[1], rel);
  // normalize() already removed `..`; this guards against anything that still escapes the root.
  return file === hit[1] || file.startsWith(hit[1] + sep) ? file : undefined;
}

function send(res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { 'content-type': 'text/plain' });
  res.end(text);
}

const server = createServer((req, res) => {
  const file = resolvePath(req.url ?? '/');
  process.stdout.write(`${new Date().toISOString()} ${req.method ?? 'GET'} ${req.url ?? '/'}\n`);
  void (async () => {
    if (file === undefined) return send(res, 404, 'not found\n');
    if (req.method === 'PUT') {
      await mkdir(dirname(file), { recursive: true });
      await pipeline(req, createWriteStream(file));
      return send(res, 201, 'stored\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    let target = file;
    let st = await stat(target).catch(() => undefined);
    if (st?.isDirectory()) {
      target = join(target, 'index.html');
      st = await stat(target).catch(() => undefined);
    }
    if (!st?.isFile()) return send(res, 404, 'not found\n');
    res.writeHead(200, { 'content-length': st.size, 'content-type': target.endsWith('.html') ? 'text/html' : 'application/octet-stream' });
    if (req.method === 'HEAD') return res.end();
    await pipeline(createReadStream(target), res);
  })().catch((err: unknown) => {
    if (!res.headersSent) send(res, 500, `${(err as Error).message}\n`);
    else res.destroy();
  });
});

server.listen(port, host, () => {
  process.stdout.write(`static-web listening on port ${port}; serving ${roots.map(([p, d]) => `${p} from ${d}`).join(', ') || 'nothing (no mounts)'}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    server.close();
    process.exit(0);
  });
}
