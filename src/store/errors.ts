// Store errors: one class with a stable `code`, classified by predicate. The API server maps codes to HTTP
// statuses in one place (src/apiserver/status.ts); nothing classifies by message text.

import type { FieldError } from '../api/kind.js';

export type StoreErrorCode =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Gone'
  | 'BadRequest'
  | 'Forbidden'
  | 'MethodNotAllowed'
  | 'Unavailable'
  | 'Internal';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;
  /** Field-level causes, for `Invalid`. */
  readonly causes: FieldError[];
  /** The object the error is about, when known (kind and name), for the Status `details`. */
  readonly details: { kind?: string; name?: string } | undefined;

  constructor(
    code: StoreErrorCode,
    message: string,
    opts: { causes?: FieldError[]; details?: { kind?: string; name?: string }; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.causes = opts.causes ?? [];
    this.details = opts.details;
  }
}

const has = (code: StoreErrorCode) => (err: unknown): err is StoreError =>
  err instanceof StoreError && err.code === code;

export const isNotFound = has('NotFound');
export const isAlreadyExists = has('AlreadyExists');
export const isConflict = has('Conflict');
export const isInvalid = has('Invalid');
export const isGone = has('Gone');
export const isBadRequest = has('BadRequest');
export const isForbidden = has('Forbidden');
export const isUnavailable = has('Unavailable');
export const isStoreError = (err: unknown): err is StoreError => err instanceof StoreError;
