// The one error class of the replica package (storage, wire protocol, server and client). Callers classify by
// `code` through `isReplicaError(err, code)`, never by message text. Protocol and on-disk corruption errors carry the
// byte offset of the offending field (in the stream, or in the named file) so a capture points at the culprit.

export const REPLICA_ERROR_CODES = [
  /** An argument of this package's API is invalid (size, block size, name, endpoint). */
  'INVALID_ARGUMENT',
  /** No replica at the directory (its metadata file is missing). */
  'NOT_FOUND',
  /** `create` on a directory that already holds a replica. */
  'ALREADY_EXISTS',
  /** A replica file (metadata, map checkpoint, map journal) is damaged; `file` and `offset` say where. */
  'CORRUPT',
  /** The backing file is not the one the replica was created over, or is larger than the volume. */
  'BACKING_MISMATCH',
  /** An I/O range outside the volume, or a rebuild range that is not block-aligned. */
  'OUT_OF_RANGE',
  /** The replica (store, server or client) is closed or closing. */
  'CLOSED',
  /** An earlier durability failure (fdatasync) left the head in an unknown state: every later call fails. */
  'FAILED',
  /** The peer sent bytes that violate the replica wire protocol; `offset` is the stream offset. */
  'PROTOCOL',
  /** A request to a replica got no answer within its timeout. */
  'TIMEOUT',
  /** The connection to the replica closed (or could not be opened) while something waited on it. */
  'CONNECTION_CLOSED',
  /** The replica answered a request with an error; `status` is the wire status. */
  'REMOTE',
  /** A shared replica listener does not serve the named replica (or a request came before OPEN). */
  'NO_REPLICA',
  /** The replica directory is open by another holder (its lock names who). */
  'LOCKED',
  /**
   * The cluster credential of OPEN was missing or wrong (server: the connection is closed), or the server did not
   * prove it holds the cluster secret (client).
   */
  'UNAUTHENTICATED',
] as const;

export type ReplicaErrorCode = (typeof REPLICA_ERROR_CODES)[number];

export interface ReplicaErrorDetails {
  cause?: unknown;
  /** Byte offset in the stream (PROTOCOL) or in `file` (CORRUPT). */
  offset?: number;
  /** The replica file a CORRUPT error is about. */
  file?: string;
  /** Wire status of a REMOTE error (a `WireStatus` value). */
  status?: number;
}

export class ReplicaError extends Error {
  override readonly name = 'ReplicaError';
  readonly code: ReplicaErrorCode;
  readonly offset: number | undefined;
  readonly file: string | undefined;
  readonly status: number | undefined;

  constructor(code: ReplicaErrorCode, message: string, details: ReplicaErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.offset = details.offset;
    this.file = details.file;
    this.status = details.status;
  }
}

export function isReplicaError(err: unknown, code?: ReplicaErrorCode): err is ReplicaError {
  return err instanceof ReplicaError && (code === undefined || err.code === code);
}

/** A CORRUPT error about `file` at `offset`. */
export function corrupt(file: string, offset: number, message: string): ReplicaError {
  return new ReplicaError('CORRUPT', `replica file ${file} is corrupt at byte ${offset}: ${message}`, { file, offset });
}

/** A PROTOCOL error at stream `offset`. */
export function protocolError(offset: number, message: string): ReplicaError {
  return new ReplicaError('PROTOCOL', `replica protocol error at byte ${offset}: ${message}`, { offset });
}
