// The backing-image manager's one error class. Callers classify by `code` (through `isBimError(err, code)`), never by
// message text; messages say what was attempted, why it failed and, where there is one, what a person can do.
// `httpStatusOf` is the only place that maps codes to HTTP statuses.

export const BIM_ERROR_CODES = [
  /** A request field or flag is missing or malformed (names with "/", "..", bad sizes, bad URLs). */
  'InvalidArgument',
  /** No file of that name (and uuid) on this disk. */
  'NotFound',
  /** The request contradicts what is on the disk: another operation runs on the file, the uuid differs. */
  'Conflict',
  /** The file exists but is not ready (download, data, chunks of a file still being prepared). */
  'NotReady',
  /** The sender refuses a new send: the per-file limit of concurrent sends is reached. */
  'Busy',
  /** A byte range outside the file. */
  'RangeNotSatisfiable',
  /** The manifest of a ready file is still being computed; ask again shortly. */
  'ManifestPending',
  /** The disk's longhorn-disk.cfg is missing, unreadable, or names another disk. */
  'DiskMismatch',
  /** Data did not hash to what it must: whole-file SHA-512 or a chunk's SHA-256. */
  'ChecksumMismatch',
  /** A peer could not be reached or answered with an error. */
  'PeerFailed',
  /** A non-terminal state lasted longer than its limit (stall, slow start). */
  'Timeout',
  /** The disk has no room for the copy (checked before receiving, or it filled up meanwhile). */
  'InsufficientStorage',
  /** Anything unexpected; the message says what failed. */
  'Internal',
] as const;

export type BimErrorCode = (typeof BIM_ERROR_CODES)[number];

export class BimError extends Error {
  override readonly name = 'BimError';
  readonly code: BimErrorCode;

  constructor(code: BimErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
  }
}

export function isBimError(err: unknown, code?: BimErrorCode): err is BimError {
  return err instanceof BimError && (code === undefined || err.code === code);
}

const STATUS: Record<BimErrorCode, number> = {
  InvalidArgument: 400,
  NotFound: 404,
  Conflict: 409,
  NotReady: 409,
  Busy: 429,
  RangeNotSatisfiable: 416,
  ManifestPending: 503,
  DiskMismatch: 500,
  ChecksumMismatch: 422,
  PeerFailed: 502,
  Timeout: 504,
  InsufficientStorage: 507,
  Internal: 500,
};

/** The HTTP status for an error code; the server sends `{code, message}` with it. */
export function httpStatusOf(code: BimErrorCode): number {
  return STATUS[code];
}

/** The error's message, for any thrown value. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
