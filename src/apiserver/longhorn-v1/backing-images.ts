// Longhorn's `/v1/backingimages` REST API (the UI's and Longhorn clients' view): list, get, create, delete, and the
// actions `backingImageCleanup`, `updateMinNumberOfCopies` and (Stratum) `scrub`. Resources have Longhorn's JSON shape
// (`diskFileStatusMap` keyed by disk UUID, `currentChecksum`, `deletionTimestamp`, `actions`); the objects behind
// them are the BackingImage resources of the store, so both APIs always agree.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { BackingImage, BackingImageDiskFileStatus } from '../../api/backing-image.js';
import { ANNOTATION_SCRUB_REQUESTED } from '../../api/labels.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import { StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { recordRefusal } from '../../controller-kit/refusal.js';
import { cleanupProblems } from './cleanup.js';
import { collection, requireObject } from './common.js';

const ACTIONS = ['backingImageCleanup', 'upload', 'updateMinNumberOfCopies', 'scrub'];

export function backingImageResource(bi: BackingImage, base: string): Record<string, unknown> {
  const name = bi.metadata.name ?? '';
  const spec = bi.spec ?? {};
  const status = bi.status ?? {};
  const files: Record<string, BackingImageDiskFileStatus> = { ...(status.diskFileStatusMap ?? {}) };
  for (const disk of Object.keys(spec.diskFileSpecMap ?? {})) {
    files[disk] ??= { state: '', progress: 0, message: 'File processing is not started' };
  }
  const self = `${base}/v1/backingimages/${encodeURIComponent(name)}`;
  return {
    id: name,
    type: 'backingImage',
    name,
    uuid: status.uuid ?? '',
    sourceType: spec.sourceType ?? '',
    parameters: spec.sourceParameters ?? {},
    diskSelector: spec.diskSelector ?? [],
    nodeSelector: spec.nodeSelector ?? [],
    minNumberOfCopies: spec.minNumberOfCopies ?? 0,
    expectedChecksum: spec.checksum ?? '',
    dataEngine: spec.dataEngine ?? 'v1',
    diskFileStatusMap: files,
    size: status.size ?? 0,
    virtualSize: status.virtualSize ?? 0,
    realSize: status.realSize ?? 0,
    currentChecksum: status.checksum ?? '',
    secret: spec.secret ?? '',
    secretNamespace: spec.secretNamespace ?? '',
    deletionTimestamp: bi.metadata.deletionTimestamp ?? '',
    scrubRequestedAt: bi.metadata.annotations?.[ANNOTATION_SCRUB_REQUESTED] ?? '',
    actions: Object.fromEntries(ACTIONS.map((a) => [a, `${self}?action=${a}`])),
    links: { self, download: `${self}/download` },
  };
}

interface CreateBody {
  name?: unknown;
  sourceType?: unknown;
  parameters?: unknown;
  expectedChecksum?: unknown;
  minNumberOfCopies?: unknown;
  nodeSelector?: unknown;
  diskSelector?: unknown;
  secret?: unknown;
  secretNamespace?: unknown;
  dataEngine?: unknown;
}

/** Maps the /v1 create body onto a BackingImage; type errors are left to the schema, which names the field. */
function fromCreateBody(body: CreateBody): BackingImage {
  if (typeof body.name !== 'string' || body.name === '') {
    throw new StoreError('Invalid', 'name is required', { causes: [{ field: 'name', reason: 'FieldValueRequired', message: 'name is required' }] });
  }
  const spec: Record<string, unknown> = { sourceType: body.sourceType, sourceParameters: body.parameters ?? {} };
  if (body.expectedChecksum !== undefined && body.expectedChecksum !== '') spec['checksum'] = body.expectedChecksum;
  if (body.minNumberOfCopies !== undefined && body.minNumberOfCopies !== 0) spec['minNumberOfCopies'] = body.minNumberOfCopies;
  for (const k of ['nodeSelector', 'diskSelector', 'secret', 'secretNamespace', 'dataEngine'] as const) {
    if (body[k] !== undefined && body[k] !== '') spec[k] = body[k];
  }
  return {
    apiVersion: LONGHORN_API_VERSION,
    kind: 'BackingImage',
    metadata: { name: body.name, namespace: DEFAULT_NAMESPACE },
    spec: spec as NonNullable<BackingImage['spec']>,
  };
}

export function registerBackingImageRoutes(app: FastifyInstance, store: Store, opts: { download?: DownloadProxy; upload?: UploadProxy }): void {
  const base = (req: FastifyRequest) => `${req.protocol}://${req.headers.host ?? 'localhost'}`;
  const get = (name: string) => store.get<BackingImage>('BackingImage', DEFAULT_NAMESPACE, name);

  app.get('/v1/backingimages', async (req) => {
    const { items } = await store.list<BackingImage>('BackingImage', { namespace: DEFAULT_NAMESPACE });
    items.sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
    return collection('backingImage', items.map((bi) => backingImageResource(bi, base(req))), `${base(req)}/v1/backingimages`);
  });

  app.get('/v1/backingimages/:name', async (req) => {
    const { name } = req.params as { name: string };
    return backingImageResource(await get(name), base(req));
  });

  app.post('/v1/backingimages', async (req, reply) => {
    const body = requireObject(req.body) as CreateBody;
    const { object } = await store.create(fromCreateBody(body));
    return reply.code(200).send(backingImageResource(object, base(req)));
  });

  app.delete('/v1/backingimages/:name', async (req, reply) => {
    const { name } = req.params as { name: string };
    await store.delete('BackingImage', DEFAULT_NAMESPACE, name);
    return reply.code(204).send();
  });

  app.post('/v1/backingimages/:name', async (req, reply) => {
    const { name } = req.params as { name: string };
    const action = (req.query as { action?: string }).action;
    switch (action) {
      case 'backingImageCleanup': {
        const body = requireObject(req.body) as { disks?: unknown };
        if (!Array.isArray(body.disks) || body.disks.some((d) => typeof d !== 'string')) {
          throw new StoreError('BadRequest', 'backingImageCleanup needs {"disks": ["<disk UUID>", ...]}');
        }
        return backingImageResource(await cleanup(store, name, body.disks as string[]), base(req));
      }
      case 'updateMinNumberOfCopies': {
        const body = requireObject(req.body) as { minNumberOfCopies?: unknown };
        const { object } = await store.patch<BackingImage>('BackingImage', DEFAULT_NAMESPACE, name, 'merge', {
          spec: { minNumberOfCopies: body.minNumberOfCopies },
        });
        return backingImageResource(object, base(req));
      }
      case 'scrub': {
        // Every ready copy is read again now and checked against the checksum (the backing-image-manager
        // controller acts on the annotation; docs/api.md).
        const bi = await get(name);
        if (!Object.values(bi.status?.diskFileStatusMap ?? {}).some((f) => f.state === 'ready')) {
          throw new StoreError('Conflict', `backing image "${name}" has no ready copy to scrub`);
        }
        const { object } = await store.patch<BackingImage>('BackingImage', DEFAULT_NAMESPACE, name, 'merge', {
          metadata: { annotations: { [ANNOTATION_SCRUB_REQUESTED]: new Date().toISOString() } },
        });
        return backingImageResource(object, base(req));
      }
      case 'upload':
        if (!opts.upload) throw new StoreError('NotFound', 'uploads are not available on this server');
        return opts.upload(req, reply, await get(name));
      default:
        throw new StoreError('BadRequest', `unknown action "${action ?? ''}" on backing image "${name}": use one of ${ACTIONS.join(', ')}`);
    }
  });

  app.get('/v1/backingimages/:name/download', async (req, reply) => {
    const { name } = req.params as { name: string };
    const bi = await get(name);
    if (!opts.download) throw new StoreError('NotFound', 'downloads are not available on this server');
    return opts.download(req, reply, bi);
  });
}

export type DownloadProxy = (req: FastifyRequest, reply: FastifyReply, bi: BackingImage) => Promise<unknown>;
export type UploadProxy = (req: FastifyRequest, reply: FastifyReply, bi: BackingImage) => Promise<unknown>;

/** Removes disks from the image's copies, all or nothing, after the checks in cleanup.ts. */
async function cleanup(store: Store, name: string, disks: string[]): Promise<BackingImage> {
  for (let attempt = 0; ; attempt++) {
    const bi = await store.get<BackingImage>('BackingImage', DEFAULT_NAMESPACE, name);
    const problems = await cleanupProblems(store, bi, disks);
    if (problems) {
      recordRefusal(store, bi, 'CleanupRefused', problems.message);
      throw problems;
    }
    const next = structuredClone(bi);
    const map = { ...(next.spec?.diskFileSpecMap ?? {}) };
    for (const d of disks) delete map[d];
    next.spec = { ...(next.spec ?? {}), diskFileSpecMap: map };
    try {
      return (await store.update(next)).object;
    } catch (err) {
      if (!(err instanceof StoreError && err.code === 'Conflict') || attempt > 5) throw err;
    }
  }
}
