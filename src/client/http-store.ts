// The Store interface over HTTP: what the CLI and node agents use to talk to `stratum manager`. It speaks the same
// Kubernetes resource API that kubectl does, and turns `Status` replies back into StoreErrors with the same codes,
// so callers classify errors the same way in-process and remote. Given several managers (`a,b,c`), it talks to
// one and moves to the next when that one cannot be reached (see ./failover.ts).

import { findKind } from '../api/index.js';
import type { KindInfo } from '../api/kind.js';
import type { KubeObject } from '../api/meta.js';
import { StoreError, type StoreErrorCode } from '../store/errors.js';
import { ServerList } from './failover.js';
import type {
  DeleteOptions,
  DeleteResult,
  ListOptions,
  ListResult,
  PatchType,
  Store,
  WatchEvent,
  WatchOptions,
  WriteOptions,
  WriteResult,
} from '../store/types.js';

const CODE_BY_REASON: Record<string, StoreErrorCode> = {
  NotFound: 'NotFound',
  AlreadyExists: 'AlreadyExists',
  Conflict: 'Conflict',
  Invalid: 'Invalid',
  Expired: 'Gone',
  Gone: 'Gone',
  BadRequest: 'BadRequest',
  Forbidden: 'Forbidden',
  Unauthorized: 'Forbidden',
  MethodNotAllowed: 'MethodNotAllowed',
  ServiceUnavailable: 'Unavailable',
};

const CODE_BY_HTTP: Record<number, StoreErrorCode> = {
  400: 'BadRequest',
  // No StoreError code of its own: a missing or bad credential is a refusal like 403; the message says which.
  401: 'Forbidden',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'BadRequest',
  415: 'BadRequest',
  422: 'Invalid',
  503: 'Unavailable',
};

export interface HttpStoreOptions {
  /** Base URL of the API server, e.g. http://127.0.0.1:9500, or several, comma-separated (one per manager). */
  server: string;
  /** Per-request timeout for non-watch calls (ms). */
  timeoutMs?: number;
  /** Bearer token sent on every request (kubeconfig or node credentials). */
  token?: string | undefined;
}

/** The Authorization header of a bearer token, or nothing. */
export function bearer(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function resourceUrl(server: string, info: KindInfo, namespace: string, name?: string, sub?: string): string {
  const base = info.group ? `${server}/apis/${info.group}/${info.version}` : `${server}/api/${info.version}`;
  const ns = info.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const n = name ? `/${encodeURIComponent(name)}` : '';
  const s = sub ? `/${sub}` : '';
  return `${base}${ns}/${info.plural}${n}${s}`;
}

/** Turns a non-2xx reply into a StoreError carrying the server's message. */
export async function errorFromResponse(res: Response, what: string): Promise<StoreError> {
  const text = await res.text().catch(() => '');
  let status: { message?: string; reason?: string; details?: { causes?: { field: string; reason: string; message: string }[] } } = {};
  try {
    status = JSON.parse(text) as typeof status;
  } catch {
    status = { message: text.trim() || res.statusText };
  }
  const code = CODE_BY_REASON[status.reason ?? ''] ?? CODE_BY_HTTP[res.status] ?? 'Internal';
  return new StoreError(code, status.message ?? `${what}: HTTP ${res.status}`, {
    ...(status.details?.causes ? { causes: status.details.causes } : {}),
  });
}

export class HttpStore implements Store {
  readonly #servers: ServerList;
  readonly #timeoutMs: number;
  readonly #auth: Record<string, string>;

  constructor(opts: HttpStoreOptions) {
    this.#servers = new ServerList(opts.server);
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#auth = bearer(opts.token);
  }

  /** The manager currently talked to. */
  get server(): string {
    return this.#servers.current;
  }

  get #server(): string {
    return this.#servers.current;
  }

  #info(kind: string): KindInfo {
    const info = findKind(kind);
    if (!info) throw new StoreError('NotFound', `the server doesn't have a resource type "${kind}"`);
    return info;
  }

  async #call<T>(method: string, url: string, body?: unknown, contentType = 'application/json'): Promise<{ value: T; status: number }> {
    const res = await this.#servers.fetch(url, {
      method,
      headers: { ...this.#auth, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': contentType }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (!res.ok) throw await errorFromResponse(res, `${method} ${url}`);
    return { value: (await res.json()) as T, status: res.status };
  }

  async get<T extends KubeObject>(kind: string, namespace: string, name: string): Promise<T> {
    const info = this.#info(kind);
    return (await this.#call<T>('GET', resourceUrl(this.#server, info, namespace, name))).value;
  }

  async list<T extends KubeObject>(kind: string, opts: ListOptions = {}): Promise<ListResult<T>> {
    const info = this.#info(kind);
    const url = new URL(resourceUrl(this.#server, info, opts.namespace ?? ''));
    if (opts.labelSelector) url.searchParams.set('labelSelector', opts.labelSelector);
    if (opts.fieldSelector) url.searchParams.set('fieldSelector', opts.fieldSelector);
    const { value } = await this.#call<{ items: T[]; metadata: { resourceVersion: string } }>('GET', url.href);
    return { items: value.items.map((i) => ({ ...i, kind: info.kind })), resourceVersion: value.metadata.resourceVersion };
  }

  async create<T extends KubeObject>(obj: T, opts: WriteOptions = {}): Promise<WriteResult<T>> {
    const info = this.#info(obj.kind);
    const url = withWriteQuery(resourceUrl(this.#server, info, obj.metadata.namespace ?? ''), opts);
    return { object: (await this.#call<T>('POST', url, obj)).value, warnings: [] };
  }

  async update<T extends KubeObject>(obj: T, opts: WriteOptions = {}): Promise<WriteResult<T>> {
    const info = this.#info(obj.kind);
    const url = resourceUrl(this.#server, info, obj.metadata.namespace ?? '', obj.metadata.name, opts.subresource);
    return { object: (await this.#call<T>('PUT', withWriteQuery(url, opts), obj)).value, warnings: [] };
  }

  async patch<T extends KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    type: PatchType,
    patch: unknown,
    opts: WriteOptions = {},
  ): Promise<WriteResult<T>> {
    const info = this.#info(kind);
    const url = resourceUrl(this.#server, info, namespace, name, opts.subresource);
    const ct = type === 'merge' ? 'application/merge-patch+json' : 'application/json-patch+json';
    return { object: (await this.#call<T>('PATCH', withWriteQuery(url, opts), patch, ct)).value, warnings: [] };
  }

  async delete<T extends KubeObject>(kind: string, namespace: string, name: string, opts: DeleteOptions = {}): Promise<DeleteResult<T>> {
    const info = this.#info(kind);
    const body = {
      kind: 'DeleteOptions',
      apiVersion: 'v1',
      ...(opts.propagationPolicy ? { propagationPolicy: opts.propagationPolicy } : {}),
      ...(opts.preconditions ? { preconditions: opts.preconditions } : {}),
      ...(opts.dryRun ? { dryRun: ['All'] } : {}),
    };
    const { value, status } = await this.#call<T>('DELETE', resourceUrl(this.#server, info, namespace, name), body);
    return { object: value, deleted: status === 200 };
  }

  async *watch<T extends KubeObject>(kind: string, opts: WatchOptions): AsyncIterable<WatchEvent<T>> {
    const info = this.#info(kind);
    const url = new URL(resourceUrl(this.#server, info, opts.namespace ?? ''));
    url.searchParams.set('watch', 'true');
    if (opts.resourceVersion) url.searchParams.set('resourceVersion', opts.resourceVersion);
    if (opts.labelSelector) url.searchParams.set('labelSelector', opts.labelSelector);
    if (opts.fieldSelector) url.searchParams.set('fieldSelector', opts.fieldSelector);
    let res: Response;
    try {
      res = await this.#servers.fetch(url.href, { headers: { ...this.#auth, accept: 'application/json' }, signal: opts.signal });
    } catch (err) {
      if (opts.signal.aborted) return;
      throw err;
    }
    if (!res.ok || !res.body) throw await errorFromResponse(res, `watch ${info.plural}`);
    try {
      for await (const value of ndjson(res.body)) {
        const ev = value as { type: string; object: KubeObject & { code?: number; message?: string; reason?: string } };
        if (ev.type === 'ERROR') {
          const code = ev.object.code === 410 ? 'Gone' : (CODE_BY_HTTP[ev.object.code ?? 0] ?? 'Internal');
          throw new StoreError(code, ev.object.message ?? 'watch error');
        }
        yield { type: ev.type as WatchEvent['type'], object: { ...ev.object, kind: info.kind } as T };
      }
    } catch (err) {
      if (opts.signal.aborted) return;
      if (err instanceof StoreError) throw err;
      throw new StoreError('Internal', `watch of ${info.plural} broke: ${describeFetchError(err)}`, { cause: err });
    }
  }
}

/** The JSON values of a newline-delimited JSON stream (a watch), one per non-empty line. */
export async function* ndjson(body: AsyncIterable<Uint8Array>): AsyncIterable<unknown> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) yield JSON.parse(line) as unknown;
    }
  }
}

function withWriteQuery(url: string, opts: WriteOptions): string {
  const u = new URL(url);
  if (opts.dryRun) u.searchParams.set('dryRun', 'All');
  if (opts.strictFields) u.searchParams.set('fieldValidation', 'Strict');
  return u.href;
}

export function describeFetchError(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}
