// JSON over HTTP to data-plane pods, as controllers call it: one request with a timeout (combined with the caller's
// signal), the body parsed, and a non-2xx answer turned into a RemoteError carrying the pod's own message and the
// HTTP status, so callers can tell "not found" from a failure without reading the text.
//
// Every call carries the cluster's data-plane credential (src/auth/cluster-credential.ts): the manager sets it once
// at start with `useDataPlaneCredential`, so every controller's client (backing-image manager, data source,
// instance manager, engine control) and change stream (monitor.ts) presents it without passing it around.

let credentialHeaders: () => Record<string, string> = () => ({});

/** Sets the headers every call to a data-plane pod carries (read per call, so a rotated secret takes effect). */
export function useDataPlaneCredential(headers: () => Record<string, string>): void {
  credentialHeaders = headers;
}

/** The data-plane credential headers, for controllers' own fetch calls. */
export function dataPlaneHeaders(): Record<string, string> {
  return credentialHeaders();
}

export class RemoteError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.name = 'RemoteError';
    this.status = status;
  }
}

export const isRemoteNotFound = (err: unknown) => err instanceof RemoteError && err.status === 404;
/** The peer is busy (429): ask again later. */
export const isRemoteBusy = (err: unknown) => err instanceof RemoteError && err.status === 429;

export async function callJson<T>(base: string, method: string, path: string, timeoutMs: number, body?: unknown, signal?: AbortSignal): Promise<T> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...credentialHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  });
  const text = await res.text();
  if (!res.ok) {
    let msg = text;
    try {
      msg = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // plain-text error body
    }
    throw new RemoteError(`${method} ${base}${path}: HTTP ${res.status}: ${msg.trim()}`, res.status);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}
