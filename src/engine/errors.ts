// The one error class of the engine. Callers classify by `code` through `isEngineError(err, code)`. I/O failures
// that reach the NBD frontend carry `nbdErrno` (EIO, or ENOSPC when every replica ran out of space), which the NBD
// server answers as is.

export const ENGINE_ERROR_CODES = [
  /** An argument of the engine's API is invalid (replica name, address, size). */
  'InvalidArgument',
  /** No replica in mode RW could serve the operation: the volume is faulted. */
  'NoHealthyReplica',
  /** No RW replica could read the range because the backing image's bytes there cannot be decoded (EIO). */
  'ImageUnreadable',
  /** `addReplica` with a name the engine already has. */
  'ReplicaExists',
  /** The replica named is not part of the engine. */
  'ReplicaUnknown',
  /** A replica that does not belong to this volume: different size, block size or backing image. */
  'ReplicaMismatch',
  /** `removeReplica` of the last RW replica, or `rebuild` of a replica that is not WO. */
  'InvalidState',
  /** A rebuild is already running (one at a time), or the rebuild failed (`cause` says why). */
  'RebuildRunning',
  'RebuildFailed',
  /** The engine is closing or closed. */
  'Closed',
  /** A snapshot operation named a snapshot the volume does not have. */
  'SnapshotUnknown',
  /** A snapshot was to be created with a name the volume already has. */
  'SnapshotExists',
  /** The clone status of an engine that was asked for no clone (or restarted since). */
  'CloneUnknown',
] as const;

export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number];

/** NBD error values used here (from the NBD protocol; the frontend maps them on the wire). */
export const NBD_EIO = 5;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;

export class EngineError extends Error {
  override readonly name = 'EngineError';
  readonly code: EngineErrorCode;
  /** For the NBD frontend: the error value to answer with. */
  readonly nbdErrno: number | undefined;

  constructor(code: EngineErrorCode, message: string, details: { cause?: unknown; nbdErrno?: number } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.nbdErrno = details.nbdErrno;
  }
}

export function isEngineError(err: unknown, code?: EngineErrorCode): err is EngineError {
  return err instanceof EngineError && (code === undefined || err.code === code);
}
