// The one error class of the replica package (storage, wire protocol, server and client). Callers classify by
// `code` through `isReplicaError(err, code)`, never by message text. Protocol and on-disk corruption errors carry the
// byte offset of the offending field (in the stream, or in the named file) so a capture points at the culprit.

export const REPLICA_ERROR_CODES = [
  /** An argument of this package's API is invalid (size, block size, name, endpoint). */
  'InvalidArgument',
  /** No replica at the directory (its metadata file is missing). */
  'NotFound',
  /** `create` on a directory that already holds a replica. */
  'AlreadyExists',
  /** A replica file (metadata, map checkpoint, map journal) is damaged; `file` and `offset` say where. */
  'Corrupt',
  /** The backing file is not the one the replica was created over, or is larger than the volume. */
  'BackingMismatch',
  /** An I/O range outside the volume, or a rebuild range that is not block-aligned. */
  'OutOfRange',
  /** The replica (store, server or client) is closed or closing. */
  'Closed',
  /** An earlier durability failure (fdatasync) left the head in an unknown state: every later call fails. */
  'Failed',
  /** The peer sent bytes that violate the replica wire protocol; `offset` is the stream offset. */
  'Protocol',
  /** A request to a replica got no answer within its timeout. */
  'Timeout',
  /** The connection to the replica closed (or could not be opened) while something waited on it. */
  'ConnectionClosed',
  /** The replica answered a request with an error; `status` is the wire status. */
  'Remote',
  /** A shared replica listener does not serve the named replica (or a request came before OPEN). */
  'NoReplica',
  /** The replica directory is open by another holder (its lock names who). */
  'Locked',
  /**
   * The cluster credential of OPEN was missing or wrong (server: the connection is closed), or the server did not
   * prove it holds the cluster secret (client).
   */
  'Unauthenticated',
] as const;

export type ReplicaErrorCode = (typeof REPLICA_ERROR_CODES)[number];

export interface ReplicaErrorDetails {
  cause?: unknown;
  /** Byte offset in the stream (`Protocol`) or in `file` (`Corrupt`). */
  offset?: number;
  /** The replica file a `Corrupt` error is about. */
  file?: string;
  /** Wire status of a `Remote` error (a `WireStatus` value). */
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

/** A `Corrupt` error about `file` at `offset`. */
export function corrupt(file: string, offset: number, message: string): ReplicaError {
  return new ReplicaError('Corrupt', `replica file ${file} is corrupt at byte ${offset}: ${message}`, { file, offset });
}

/** A `Protocol` error at stream `offset`. */
export function protocolError(offset: number, message: string): ReplicaError {
  return new ReplicaError('Protocol', `replica protocol error at byte ${offset}: ${message}`, { offset });
}
