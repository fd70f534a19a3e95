// Raw HTTP calls of the CLI to the API server, for what the Store interface does not cover (tables, versions
// other than the storage one, logs). Errors come back as StoreErrors with the server's message.

import { errorFromResponse, describeFetchError } from '../client/http-store.js';
import { StoreError } from '../store/errors.js';

import { authHeaders } from './credentials.js';

export { authHeaders };

export const TABLE_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json';

export interface RawResponse {
  status: number;
  body: unknown;
  headers: Headers;
}

export async function request(
  method: string,
  url: string,
  opts: { body?: unknown; contentType?: string; accept?: string; signal?: AbortSignal } = {},
): Promise<RawResponse> {
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        ...authHeaders(),
        accept: opts.accept ?? 'application/json',
        ...(opts.body === undefined ? {} : { 'content-type': opts.contentType ?? 'application/json' }),
      },
      ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
      signal: opts.signal ?? AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new StoreError('Internal', `cannot reach the API server (${new URL(url).origin}): ${describeFetchError(err)}`);
  }
  if (!res.ok) throw await errorFromResponse(res, `${method} ${url}`);
  // 204 (a /v1 delete) has no body to parse.
  return { status: res.status, body: res.status === 204 ? undefined : await res.json(), headers: res.headers };
}
