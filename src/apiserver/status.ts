// Error → HTTP status and Kubernetes `Status` body, in one place. Every refusal the API server sends goes through
// here, so `kubectl` prints the message as-is and clients can rely on `reason` and `code`.

import { isReleaseError, type ReleaseErrorCode } from '../release/errors.js';
import { StoreError, type StoreErrorCode } from '../store/errors.js';

const HTTP: Record<StoreErrorCode, number> = {
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Invalid: 422,
  Gone: 410,
  BadRequest: 400,
  Forbidden: 403,
  MethodNotAllowed: 405,
  Unavailable: 503,
  Internal: 500,
};

/** Kubernetes StatusReason strings. */
const REASON: Record<StoreErrorCode, string> = {
  NotFound: 'NotFound',
  AlreadyExists: 'AlreadyExists',
  Conflict: 'Conflict',
  Invalid: 'Invalid',
  Gone: 'Expired',
  BadRequest: 'BadRequest',
  Forbidden: 'Forbidden',
  MethodNotAllowed: 'MethodNotAllowed',
  Unavailable: 'ServiceUnavailable',
  Internal: 'InternalError',
};

export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message: string;
  reason: string;
  code: number;
  details?: { name?: string; kind?: string; causes?: { field: string; reason: string; message: string }[] };
}

export function statusFor(code: number, reason: string, message: string): KubeStatus {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** Maps any thrown value to a Status. Unknown errors are 500s whose message still says what failed. */
const RELEASE: Record<ReleaseErrorCode, StoreErrorCode> = {
  InvalidRelease: 'Invalid',
  IncompatibleRelease: 'Conflict',
  UntrustedRelease: 'Forbidden',
  UpgradeUnavailable: 'Conflict',
};

export function toStatus(err: unknown): KubeStatus {
  if (isReleaseError(err)) {
    const code = RELEASE[err.code];
    return statusFor(HTTP[code], REASON[code], err.message);
  }
  if (err instanceof StoreError) {
    const st = statusFor(HTTP[err.code], REASON[err.code], err.message);
    if (err.details || err.causes.length > 0) {
      st.details = { ...(err.details ?? {}), ...(err.causes.length > 0 ? { causes: err.causes } : {}) };
    }
    return st;
  }
  const e = err as { statusCode?: number; message?: string; code?: string };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const reason = e.statusCode === 413 ? 'RequestEntityTooLarge' : e.statusCode === 415 ? 'UnsupportedMediaType' : 'BadRequest';
    return statusFor(e.statusCode, reason, e.message ?? 'bad request');
  }
  return statusFor(500, 'InternalError', `internal error: ${e?.message ?? String(err)}`);
}
