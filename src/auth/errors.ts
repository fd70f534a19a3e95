// The auth package's one error class. Callers classify by `code` (`isAuthError(err, code)`), never by message text.

export type AuthErrorCode =
  /** No credential, or one that no token or cluster secret matches (HTTP 401). */
  | 'Unauthorized'
  /** A valid credential whose role may not do this (HTTP 403). */
  | 'Forbidden'
  /** The Host or Origin header names an address this server does not answer for (HTTP 403). */
  | 'BadOrigin'
  /** A credentials file (auth.json, kubeconfig, node credentials, cluster secret) is missing or malformed. */
  | 'InvalidCredentialsFile'
  /** A raw TCP handshake proof did not verify. */
  | 'HandshakeFailed'
  /** Too many concurrent watches for one client (HTTP 429). */
  | 'TooManyRequests';

export class AuthError extends Error {
  override readonly name = 'AuthError';
  readonly code: AuthErrorCode;

  constructor(code: AuthErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
  }
}

export function isAuthError(err: unknown, code?: AuthErrorCode): err is AuthError {
  return err instanceof AuthError && (code === undefined || err.code === code);
}

export const AUTH_HTTP_STATUS: Record<AuthErrorCode, number> = {
  Unauthorized: 401,
  Forbidden: 403,
  BadOrigin: 403,
  InvalidCredentialsFile: 500,
  HandshakeFailed: 401,
  TooManyRequests: 429,
};
