// The one error class of the NBD frontend. Callers classify by `code` (or the predicates below), never by message
// text. Protocol errors carry the byte offset in the peer's stream where the bad field starts, so a capture of the
// stream (or a fuzz seed) points straight at the culprit.

export type NbdErrorCode =
  /** The peer sent bytes that violate the protocol (bad magic, impossible length, unknown client flag, ...). */
  | 'NbdProtocol'
  /** A client did not finish option haggling within the handshake timeout. */
  | 'NbdHandshakeTimeout'
  /** An argument given to this module's API is invalid (export name, size, endpoint). */
  | 'NbdInvalidArgument'
  /** `addExport` with a name that is already exported. */
  | 'NbdExportExists'
  /** The export named does not exist (server API, or the server's answer to a client). */
  | 'NbdExportUnknown'
  /** The server is closing or closed; no new listeners, exports or connections. */
  | 'NbdServerClosed'
  /** `listen` for a transport that already has a listener. */
  | 'NbdAlreadyListening'
  /** The operating system refused the listening socket (address in use, permission, bad path). */
  | 'NbdListenFailed'
  /** A write-type call on a read-only device (carries `nbdErrno` EPERM). */
  | 'NbdDeviceReadOnly'
  /** Client side: the server answered an option with an error reply (`replyType` says which). */
  | 'NbdOptionFailed'
  /** Client side: the server answered a transmission request with a non-zero error (`nbdErrno` says which). */
  | 'NbdRequestFailed'
  /** The connection closed (or was closed) while something still waited on it. */
  | 'NbdConnectionClosed';

export interface NbdErrorDetails {
  cause?: unknown;
  /** Byte offset in the inbound stream where the offending field starts. */
  offset?: number;
  /** NBD error value (`NbdErrno`) for request failures. */
  nbdErrno?: number;
  /** Option reply type for option failures. */
  replyType?: number;
}

export class NbdError extends Error {
  readonly code: NbdErrorCode;
  readonly offset: number | undefined;
  readonly nbdErrno: number | undefined;
  readonly replyType: number | undefined;

  constructor(code: NbdErrorCode, message: string, details: NbdErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'NbdError';
    this.code = code;
    this.offset = details.offset;
    this.nbdErrno = details.nbdErrno;
    this.replyType = details.replyType;
  }
}

export function isNbdError(err: unknown, code?: NbdErrorCode): err is NbdError {
  return err instanceof NbdError && (code === undefined || err.code === code);
}

export function isProtocolError(err: unknown): err is NbdError {
  return isNbdError(err, 'NbdProtocol');
}

/** Shorthand for the parsers: a protocol error at `offset`. */
export function protocolError(offset: number, message: string): NbdError {
  return new NbdError('NbdProtocol', `NBD protocol error at byte ${offset}: ${message}`, { offset });
}
