// Byte transfers through the manager: uploads go to the image's data-source pod, downloads come from a manager
// pod holding a ready copy. Both are streamed (never buffered) and keep the data-plane protocols' resumability:
//   POST /v1/backingimages/{name}?action=upload&size=N[&checksum=…]   declare (idempotent)
//   GET  /v1/backingimages/{name}/upload                             durable offset (Upload-Offset header)
//   PUT  /v1/backingimages/{name}/upload?offset=K                     bytes from K
//   GET  /v1/backingimages/{name}/download                            Range and gzip pass through

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { BackingImage } from '../../api/backing-image.js';
import type { BackingImageManager } from '../../api/backing-image-manager.js';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import type { Pod } from '../../api/pod.js';
import { bimPodName, dataSourcePodName } from '../../api/labels.js';
import { podEndpoint, podReady } from '../../api/pods.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';

const PASS_REQUEST = ['content-length', 'content-type', 'upload-offset', 'range', 'accept-encoding', 'if-range'];
const PASS_RESPONSE = ['content-length', 'content-type', 'content-range', 'content-encoding', 'accept-ranges', 'upload-offset', 'upload-length', 'content-disposition', 'etag', 'last-modified'];

/**
 * Streams one request to a pod and its answer back, bytes untouched. `node:http` rather than fetch: fetch
 * decodes gzip on its own, and a download asked for with `Accept-Encoding: gzip` must reach the client still
 * compressed.
 */
async function forward(req: FastifyRequest, reply: FastifyReply, url: string, method: string, dataPlane: DataPlaneAuth, body?: Readable): Promise<FastifyReply> {
  // The client's own Authorization (its API token) is not passed on: the pod gets the cluster's credential.
  const headers: Record<string, string> = { ...dataPlane.headers() };
  for (const h of PASS_REQUEST) {
    const v = req.headers[h];
    if (typeof v === 'string') headers[h] = v;
  }
  const upstream = await new Promise<IncomingMessage>((resolve, reject) => {
    const out = httpRequest(url, { method, headers }, resolve);
    out.once('error', (err) => reject(new StoreError('Internal', `cannot reach the pod at ${new URL(url).origin}: ${err.message}`)));
    // The client went away before our answer was written: stop the transfer to the pod too. (A request's own
    // 'close' fires as soon as its body was read, so it says nothing about the client.)
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) out.destroy();
    });
    if (body) body.pipe(out);
    else out.end();
  });
  reply.code(upstream.statusCode ?? 502);
  for (const h of PASS_RESPONSE) {
    const v = upstream.headers[h];
    if (typeof v === 'string') void reply.header(h, v);
  }
  return reply.send(upstream);
}

async function dataSourceEndpoint(store: Store, bi: BackingImage): Promise<string> {
  const name = bi.metadata.name ?? '';
  if (bi.spec?.sourceType !== 'upload') {
    throw new StoreError('BadRequest', `backing image "${name}" is a ${bi.spec?.sourceType ?? '?'} image: only upload images accept uploads`);
  }
  let pod: Pod | undefined;
  try {
    pod = await store.get<Pod>('Pod', bi.metadata.namespace ?? DEFAULT_NAMESPACE, dataSourcePodName(name));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const ep = podEndpoint(pod);
  if (!pod || !podReady(pod) || !ep) {
    throw new StoreError('Conflict', `backing image "${name}" cannot take an upload yet: its data source pod ${dataSourcePodName(name)} is ${pod ? (pod.status?.phase ?? 'Pending') : 'not created yet (is the image already ready?)'}; retry shortly`);
  }
  return ep;
}

/** How the manager authenticates to data-plane pods: the cluster credential's headers (read on every call: rotation). */
export interface DataPlaneAuth {
  headers(): Record<string, string>;
}

export async function uploadAction(store: Store, req: FastifyRequest, reply: FastifyReply, bi: BackingImage, dataPlane: DataPlaneAuth): Promise<unknown> {
  const ep = await dataSourceEndpoint(store, bi);
  const q = req.query as { size?: string; checksum?: string };
  const url = new URL(`${ep}/v1/upload`);
  if (q.size) url.searchParams.set('size', q.size);
  if (q.checksum) url.searchParams.set('checksum', q.checksum);
  return forward(req, reply, url.href, 'POST', dataPlane);
}

export async function downloadProxy(store: Store, req: FastifyRequest, reply: FastifyReply, bi: BackingImage, dataPlane: DataPlaneAuth): Promise<unknown> {
  const name = bi.metadata.name ?? '';
  const ns = bi.metadata.namespace ?? DEFAULT_NAMESPACE;
  const { items } = await store.list<BackingImageManager>('BackingImageManager', { namespace: ns });
  for (const m of items) {
    const f = m.status?.backingImageFileMap?.[name];
    if (m.status?.currentState !== 'running' || f?.state !== 'ready' || f.uuid !== bi.status?.uuid) continue;
    let pod: Pod | undefined;
    try {
      pod = await store.get<Pod>('Pod', ns, bimPodName(m.metadata.name ?? ''));
    } catch {
      continue;
    }
    const ep = podEndpoint(pod);
    if (!ep || !podReady(pod)) continue;
    return forward(req, reply, `${ep}/v1/files/${encodeURIComponent(name)}/download`, req.method, dataPlane);
  }
  throw new StoreError('Conflict', `backing image "${name}" has no ready copy to download from yet (see its diskFileStatusMap)`);
}

/** The content types an upload's bytes may be declared as; the bytes are streamed, never parsed or buffered. */
export const UPLOAD_CONTENT_TYPES = ['application/octet-stream', 'application/offset+octet-stream'];

export async function registerUploadRoutes(app: FastifyInstance, store: Store, dataPlane: DataPlaneAuth): Promise<void> {
  const image = async (req: FastifyRequest) => store.get<BackingImage>('BackingImage', DEFAULT_NAMESPACE, (req.params as { name: string }).name);
  app.get('/v1/backingimages/:name/upload', async (req, reply) => forward(req, reply, `${await dataSourceEndpoint(store, await image(req))}/v1/upload`, 'GET', dataPlane));
  await app.register(async (scope) => {
    scope.addContentTypeParser(UPLOAD_CONTENT_TYPES, (_req, payload, done) => done(null, payload));
    scope.put('/v1/backingimages/:name/upload', async (req, reply) => {
      const ep = await dataSourceEndpoint(store, await image(req));
      const offset = (req.query as { offset?: string }).offset ?? '';
      const body = req.body instanceof Readable ? req.body : Readable.from([]);
      return forward(req, reply, `${ep}/v1/upload?offset=${encodeURIComponent(offset)}`, 'PUT', dataPlane, body);
    });
  });
}
