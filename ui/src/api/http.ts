// Requests to the manager. Every one carries the token; a 401 logs out; a refusal becomes an ApiError whose
// message is the API's own (the /v1 error body or the Kubernetes Status), so the UI shows exactly what the
// server said.

import { clearToken, getToken } from './auth.js';

export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
  }
}

export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${getToken()}`);
  if (typeof init.body === 'string' && !headers.has('content-type')) headers.set('content-type', 'application/json');
  const res = await fetch(path, { ...init, headers });
  if (res.status === 401) {
    clearToken(true);
    throw new ApiError(401, 'Unauthorized', 'the token was not accepted: log in again');
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { message?: unknown; reason?: unknown; code?: unknown };
    const reason = typeof body.reason === 'string' ? body.reason : typeof body.code === 'string' ? body.code : res.statusText;
    if (typeof body.message === 'string') return new ApiError(res.status, reason, body.message);
  } catch {
    // not JSON: fall through to the text
  }
  return new ApiError(res.status, res.statusText, text || `HTTP ${res.status} ${res.statusText}`);
}

export async function apiJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await apiFetch(path, init);
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

/** A Longhorn /v1 call with a JSON body. */
export function v1<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  return apiJson<T>(`/v1${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
}
