// The data source's one error class. Callers classify by `code` (through `isDataSourceError(err, code)`), never by
// message text; messages say what was attempted and why it failed, and never contain a header value or a URL's
// password. `httpStatusOf` is the only place that maps codes to HTTP statuses.

export type DataSourceErrorCode =
  /** A flag, name, uuid, URL or header file the process was started with is malformed. */
  | 'InvalidArgument'
  /** A request to the API is malformed (a query parameter that is not a number, ...). */
  | 'BadRequest'
  /** The API has no such thing (an upload route on a download source, ...). */
  | 'NotFound'
  /** The request does not fit the current state (transfer before the file is ready, a second upload declaration
   *  with another size, ...). */
  | 'WrongState'
  /** An upload chunk starts at an offset that is not the current one; `offset` says which is. */
  | 'OffsetMismatch'
  /** Another upload request is still streaming into the file. */
  | 'UploadBusy'
  /** More bytes than the declared size. */
  | 'TooLarge'
  /** The disk has less free space than the file needs. */
  | 'InsufficientStorage'
  /** The file's SHA-512 is not the expected one. */
  | 'ChecksumMismatch'
  /** The file is not a usable backing image (imagefmt refused it, or it is empty). */
  | 'ImageRefused'
  /** The source server answered with an HTTP status that will not change by retrying (404, 401, ...). */
  | 'SourceRefused'
  /** Redirects looped or exceeded the limit, or pointed at something that is not http(s). */
  | 'BadRedirect'
  /** The source could not be reached or dropped the connection, and retries were used up. */
  | 'SourceUnreachable'
  /** No bytes arrived for the stall timeout. */
  | 'Stalled'
  /** The body ended before the announced length. */
  | 'Truncated'
  /** A non-terminal state lasted longer than its timeout. */
  | 'Timeout'
  /** Anything unexpected; the message says what failed. */
  | 'Internal';

export class DataSourceError extends Error {
  override readonly name = 'DataSourceError';
  readonly code: DataSourceErrorCode;
  /** The current upload offset, for `OffsetMismatch` and `UploadBusy`. */
  readonly offset: number | undefined;

  constructor(code: DataSourceErrorCode, message: string, opts: { cause?: unknown; offset?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.offset = opts.offset;
  }
}

export function isDataSourceError(err: unknown, code?: DataSourceErrorCode): err is DataSourceError {
  return err instanceof DataSourceError && (code === undefined || err.code === code);
}

const STATUS: Record<DataSourceErrorCode, number> = {
  InvalidArgument: 400,
  BadRequest: 400,
  NotFound: 404,
  WrongState: 409,
  OffsetMismatch: 409,
  UploadBusy: 409,
  TooLarge: 413,
  InsufficientStorage: 507,
  ChecksumMismatch: 422,
  ImageRefused: 422,
  SourceRefused: 502,
  BadRedirect: 502,
  SourceUnreachable: 502,
  Stalled: 504,
  Truncated: 502,
  Timeout: 504,
  Internal: 500,
};

/** The HTTP status the API answers for an error (500 for anything that is not a DataSourceError). */
export function httpStatusOf(err: unknown): number {
  return isDataSourceError(err) ? STATUS[err.code] : 500;
}

/** The message of any thrown value, for a one-line report. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
