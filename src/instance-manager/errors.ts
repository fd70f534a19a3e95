// The instance manager's one error class. Callers classify by `code` (through `isImError(err, code)`), never by
// message text; `httpStatusOf` is the only place that maps codes to HTTP statuses.

export const IM_ERROR_CODES = [
  /** A request field or flag is missing or malformed (bad name, relative dir, dir outside the data roots). */
  'InvalidArgument',
  /** No instance of that name. */
  'NotFound',
  /** An instance of that name exists with another spec, or is stopping, stopped or errored (DELETE it first). */
  'Conflict',
  /** The manager is shutting down and starts nothing new. */
  'Closing',
  /** Anything unexpected (a cleanup that could not remove the directory); the message says what failed. */
  'Internal',
] as const;

export type ImErrorCode = (typeof IM_ERROR_CODES)[number];

export class ImError extends Error {
  override readonly name = 'ImError';
  readonly code: ImErrorCode;

  constructor(code: ImErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
  }
}

export function isImError(err: unknown, code?: ImErrorCode): err is ImError {
  return err instanceof ImError && (code === undefined || err.code === code);
}

const STATUS: Record<ImErrorCode, number> = {
  InvalidArgument: 400,
  NotFound: 404,
  Conflict: 409,
  Closing: 503,
  Internal: 500,
};

/** The HTTP status for an error code; the server sends `{code, message}` with it. */
export function httpStatusOf(code: ImErrorCode): number {
  return STATUS[code];
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
