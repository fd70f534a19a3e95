// The Kubernetes resource API: CRUD, patch, watch and delete-collection for every kind, on the URLs `kubectl`
// computes from discovery. Requests on an older served version (BackingImage v1beta1) are converted on the way in
// and out; the store only ever holds the storage version.

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { findKindByResource } from '../api/index.js';
import type { KindInfo } from '../api/kind.js';
import type { KubeObject } from '../api/meta.js';
import { StoreError, isConflict, isGone } from '../store/errors.js';
import { mergePatch } from '../store/merge-patch.js';
import type { DeleteOptions, PatchType, PropagationPolicy, Store, WriteOptions } from '../store/types.js';
import { parseResourcePath, type ResourcePath } from './paths.js';
import { handleScale } from './scale.js';
import { toStatus } from './status.js';
import { toTable, wantsTable } from './table.js';

export interface PodLogOptions {
  container?: string | undefined;
  follow: boolean;
  tailLines?: number | undefined;
  previous: boolean;
  signal: AbortSignal;
}

export interface ResourceHandlerOptions {
  store: Store;
  /** Streams a pod's log (served by the node agent that runs it). */
  podLogs?: (namespace: string, name: string, opts: PodLogOptions) => Promise<Readable>;
}

type Query = Record<string, string | undefined>;

interface Target {
  path: ResourcePath;
  info: KindInfo;
  /** Converter for a non-storage version of the URL, or undefined for the storage version. */
  version: NonNullable<KindInfo['otherVersions']>[number] | undefined;
}

export function resourceHandler(opts: ResourceHandlerOptions) {
  const { store } = opts;

  return async function handle(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const url = new URL(req.url, 'http://localhost');
    const query = Object.fromEntries(url.searchParams) as Query;
    const target = resolve(url.pathname);
    const { path, info } = target;
    const ns = info.namespaced ? path.namespace : '';
    // Objects read through an older version's URL carry that version (kubectl's apply compares apiVersion).
    const out = (obj: KubeObject): KubeObject => {
      const v = target.version;
      if (!v) return obj;
      return { ...(v.fromStorage ? v.fromStorage(obj) : obj), apiVersion: apiVersionFor(target) };
    };
    const write: WriteOptions = {
      dryRun: query['dryRun'] === 'All',
      strictFields: query['fieldValidation'] === 'Strict',
      ...(path.subresource === 'status' ? { subresource: 'status' as const } : {}),
    };
    if (path.subresource === 'scale' && info.scale && path.name) {
      const type = req.method === 'PATCH' ? patchType(req.headers['content-type']) : 'merge';
      return handleScale(store, info, ns, path.name, req.method, req.body, type === 'json' ? 'json' : 'merge', write);
    }
    if (path.subresource && path.subresource !== 'status' && !(path.subresource === 'log' && info.kind === 'Pod')) {
      throw new StoreError('NotFound', `the server could not find the requested resource (${path.plural}/${path.subresource})`);
    }
    if (path.subresource === 'status' && !info.hasStatusSubresource) {
      throw new StoreError('NotFound', `${info.plural} has no status subresource`);
    }

    switch (req.method) {
      case 'GET': {
        if (!path.name) {
          if (query['watch'] === 'true' || query['watch'] === '1') return watch(req, reply, target, query, out);
          const list = await store.list(info.kind, listOpts(ns, query));
          if (wantsTable(req.headers.accept)) return toTable(info, list.items, list.resourceVersion);
          return {
            kind: info.listKind,
            apiVersion: apiVersionFor(target),
            metadata: { resourceVersion: list.resourceVersion },
            items: list.items.map(out),
          };
        }
        if (path.subresource === 'log') return podLog(req, reply, ns, path.name, query);
        const obj = await store.get(info.kind, ns, path.name);
        return wantsTable(req.headers.accept) ? toTable(info, [obj], obj.metadata.resourceVersion) : out(obj);
      }
      case 'POST': {
        if (path.name) throw new StoreError('MethodNotAllowed', 'POST is only allowed on a collection');
        const body = bodyObject(req.body);
        checkIdentity(target, body, ns, undefined);
        const res = await store.create({ ...body, kind: info.kind }, write);
        warn(reply, res.warnings);
        return reply.code(201).send(out(res.object));
      }
      case 'PUT': {
        if (!path.name) throw new StoreError('MethodNotAllowed', 'PUT needs a resource name');
        const body = bodyObject(req.body);
        checkIdentity(target, body, ns, path.name);
        const res = await store.update({ ...body, kind: info.kind }, write);
        warn(reply, res.warnings);
        return out(res.object);
      }
      case 'PATCH': {
        if (!path.name) throw new StoreError('MethodNotAllowed', 'PATCH needs a resource name');
        const type = patchType(req.headers['content-type']);
        let patch = req.body;
        if (type === 'strategic') patch = stripDirectives(patch);
        if (target.version) return out(await patchOtherVersion(store, target, ns, path.name, type === 'json' ? 'json' : 'merge', patch, write, reply));
        const res = await store.patch(info.kind, ns, path.name, type === 'json' ? 'json' : 'merge', patch, write);
        warn(reply, res.warnings);
        return out(res.object);
      }
      case 'DELETE': {
        const del = deleteOpts(req.body, query);
        if (!path.name) {
          const list = await store.list(info.kind, listOpts(ns, query));
          for (const item of list.items) {
            await store.delete(info.kind, item.metadata.namespace ?? '', item.metadata.name ?? '', del).catch((err: unknown) => {
              if (!(err instanceof StoreError && err.code === 'NotFound')) throw err;
            });
          }
          return { kind: info.listKind, apiVersion: apiVersionFor(target), metadata: {}, items: list.items.map(out) };
        }
        const res = await store.delete(info.kind, ns, path.name, del);
        return reply.code(res.deleted ? 200 : 202).send(out(res.object));
      }
      default:
        throw new StoreError('MethodNotAllowed', `method ${req.method} is not supported`);
    }
  };

  async function watch(req: FastifyRequest, reply: FastifyReply, target: Target, query: Query, out: (o: KubeObject) => KubeObject) {
    const { info, path } = target;
    const table = wantsTable(req.headers.accept);
    const ac = new AbortController();
    const timeout = Number(query['timeoutSeconds'] ?? 0);
    const timer = timeout > 0 ? setTimeout(() => ac.abort(), timeout * 1000) : undefined;
    reply.hijack();
    const res = reply.raw;
    res.on('close', () => ac.abort());
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const send = async (ev: unknown) => {
      if (!res.write(`${JSON.stringify(ev)}\n`)) {
        await new Promise<void>((resolve) => {
          res.once('drain', resolve);
          res.once('close', resolve);
        });
      }
    };
    try {
      const events = store.watch(info.kind, {
        ...listOpts(info.namespaced ? path.namespace : '', query),
        resourceVersion: query['resourceVersion'],
        signal: ac.signal,
      });
      for await (const ev of events) {
        if (ac.signal.aborted) break;
        const object = table ? toTable(info, [ev.object], ev.object.metadata.resourceVersion) : out(ev.object);
        await send({ type: ev.type, object });
      }
    } catch (err) {
      if (!ac.signal.aborted) {
        const status = toStatus(err);
        if (isGone(err)) status.code = 410;
        await send({ type: 'ERROR', object: status }).catch(() => undefined);
      }
    } finally {
      if (timer) clearTimeout(timer);
      res.end();
    }
  }

  async function podLog(req: FastifyRequest, reply: FastifyReply, ns: string, name: string, query: Query) {
    await store.get('Pod', ns, name);
    if (!opts.podLogs) throw new StoreError('NotFound', `logs of pod "${name}" are not available: no node agent serves them`);
    const ac = new AbortController();
    req.raw.on('close', () => ac.abort());
    const tail = query['tailLines'] === undefined ? undefined : Number(query['tailLines']);
    const stream = await opts.podLogs(ns, name, {
      container: query['container'],
      follow: query['follow'] === 'true',
      tailLines: tail,
      previous: query['previous'] === 'true',
      signal: ac.signal,
    });
    return reply.type('text/plain').send(stream);
  }
}

function resolve(pathname: string): Target {
  const path = parseResourcePath(pathname);
  if (!path) throw new StoreError('NotFound', `the server could not find the requested resource (${pathname})`);
  const info = findKindByResource(path.group, path.plural);
  if (!info) {
    const gv = path.group ? `${path.group}/${path.version}` : path.version;
    throw new StoreError('NotFound', `the server doesn't have a resource type "${path.plural}" in ${gv}`);
  }
  let version: Target['version'];
  if (path.version !== info.version) {
    version = info.otherVersions?.find((v) => v.version === path.version);
    if (!version) throw new StoreError('NotFound', `${info.plural} is not served in version ${path.version}`);
  }
  return { path, info, version };
}

function apiVersionFor(t: Target): string {
  const version = t.version?.version ?? t.info.version;
  return t.info.group ? `${t.info.group}/${version}` : version;
}

function listOpts(namespace: string, query: Query) {
  return { namespace, labelSelector: query['labelSelector'], fieldSelector: query['fieldSelector'] };
}

function bodyObject(body: unknown): KubeObject {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new StoreError('BadRequest', 'the request body must be a single object');
  }
  const obj = body as KubeObject;
  if (obj.metadata !== undefined && (typeof obj.metadata !== 'object' || obj.metadata === null || Array.isArray(obj.metadata))) {
    throw new StoreError('BadRequest', 'metadata must be an object');
  }
  obj.metadata ??= {};
  return obj;
}

/** The URL decides namespace, name and kind; a body that disagrees is refused rather than silently rewritten. */
function checkIdentity(t: Target, body: KubeObject, namespace: string, name: string | undefined): void {
  const { info } = t;
  if (body.kind !== undefined && body.kind !== info.kind) {
    throw new StoreError('BadRequest', `the body's kind "${String(body.kind)}" does not match the URL's resource ${info.plural} (${info.kind})`);
  }
  const want = apiVersionFor(t);
  if (body.apiVersion !== undefined && body.apiVersion !== want) {
    throw new StoreError('BadRequest', `the body's apiVersion "${body.apiVersion}" does not match the URL's version ${want}`);
  }
  body.apiVersion = want;
  if (info.namespaced) {
    if (body.metadata.namespace && body.metadata.namespace !== namespace) {
      throw new StoreError('BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    }
    body.metadata.namespace = namespace;
  }
  if (name !== undefined && body.metadata.name !== undefined && body.metadata.name !== name) {
    throw new StoreError('BadRequest', `the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`);
  }
  if (name !== undefined) body.metadata.name = name;
  if (t.version) {
    const converted = t.version.toStorage(body);
    for (const k of Object.keys(body)) delete body[k];
    Object.assign(body, converted);
  }
}

function patchType(contentType: string | undefined): PatchType | 'strategic' {
  const ct = (contentType ?? '').split(';')[0]?.trim();
  if (ct === 'application/merge-patch+json') return 'merge';
  if (ct === 'application/json-patch+json') return 'json';
  if (ct === 'application/strategic-merge-patch+json') return 'strategic';
  throw Object.assign(new Error(`unsupported patch content type "${ct}": use application/merge-patch+json or application/json-patch+json`), { statusCode: 415 });
}

/**
 * kubectl sends strategic merge patches for built-in kinds (Pod). We apply them as merge patches after removing
 * the `$patch`/`$setElementOrder`/`$retainKeys` directives; lists are replaced whole, which is what our callers need.
 */
function stripDirectives(patch: unknown): unknown {
  if (Array.isArray(patch)) return patch.map(stripDirectives);
  if (patch === null || typeof patch !== 'object') return patch;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(patch)) if (!k.startsWith('$')) out[k] = stripDirectives(v);
  return out;
}

async function patchOtherVersion(
  store: Store,
  t: Target,
  ns: string,
  name: string,
  type: PatchType,
  patch: unknown,
  write: WriteOptions,
  reply: FastifyReply,
): Promise<KubeObject> {
  const convert = t.version as NonNullable<Target['version']>;
  for (let attempt = 0; ; attempt++) {
    const current = await store.get(t.info.kind, ns, name);
    const view = { ...(convert.fromStorage ? convert.fromStorage(current) : current), apiVersion: apiVersionFor(t) };
    let patched: KubeObject;
    if (type === 'merge') patched = mergePatch(view, patch) as KubeObject;
    else {
      const { default: jp } = await import('fast-json-patch');
      patched = jp.applyPatch(structuredClone(view), patch as never, true, false).newDocument as KubeObject;
    }
    const stored = convert.toStorage(patched);
    stored.metadata = { ...stored.metadata, resourceVersion: current.metadata.resourceVersion ?? '' };
    try {
      const res = await store.update(stored, write);
      warn(reply, res.warnings);
      return res.object;
    } catch (err) {
      if (!isConflict(err) || attempt > 8) throw err;
    }
  }
}

function deleteOpts(body: unknown, query: Query): DeleteOptions {
  const b = (body && typeof body === 'object' ? body : {}) as {
    propagationPolicy?: string;
    orphanDependents?: boolean;
    preconditions?: { uid?: string; resourceVersion?: string };
    dryRun?: string[];
  };
  const policy = query['propagationPolicy'] ?? b.propagationPolicy ?? (b.orphanDependents ? 'Orphan' : undefined);
  if (policy !== undefined && !['Orphan', 'Background', 'Foreground'].includes(policy)) {
    throw new StoreError('BadRequest', `propagationPolicy "${policy}" is not one of Orphan, Background, Foreground`);
  }
  return {
    propagationPolicy: policy as PropagationPolicy | undefined,
    preconditions: b.preconditions,
    dryRun: query['dryRun'] === 'All' || (b.dryRun ?? []).includes('All'),
  };
}

function warn(reply: FastifyReply, warnings: string[]): void {
  if (warnings.length === 0) return;
  reply.header('Warning', warnings.map((w) => `299 - ${JSON.stringify(w)}`).join(', '));
}

export { toStatus };
