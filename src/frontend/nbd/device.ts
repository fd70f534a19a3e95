// The contract between the NBD server and whatever stores the bytes (a file, a replica engine, a test double), and
// the mapping from a device's errors to NBD error values.

import { NbdErrno, isKnownNbdErrno } from './constants.js';

/**
 * A block device served as an NBD export. All offsets and lengths are in bytes and already range-checked by the
 * server. A promise that resolves is the durability contract: with `fua` the data must be on stable storage, and
 * `flush` must make every write that resolved before it stable. Rejections become NBD errors: EIO unless the
 * error carries an `nbdErrno` property (an `NbdErrno` value) or a recognised Node errno `code`.
 */
export interface BlockDevice {
  readonly size: number;
  readonly readOnly?: boolean;
  /** True when flush/FUA on one connection covers writes from all connections (NBD_FLAG_CAN_MULTI_CONN). */
  readonly multiConn?: boolean;
  read(offset: number, length: number, opts: { signal?: AbortSignal }): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array, opts: { fua: boolean; signal?: AbortSignal }): Promise<void>;
  flush(opts: { signal?: AbortSignal }): Promise<void>;
  trim(offset: number, length: number, opts: { fua: boolean; signal?: AbortSignal }): Promise<void>;
  writeZeroes(
    offset: number,
    length: number,
    opts: { fua: boolean; noHole: boolean; signal?: AbortSignal },
  ): Promise<void>;
  /**
   * Optional flow control, asked before a write of `bytes` payload is handed over: false means "not now" (a device
   * holding requests in memory is full), and the connection leaves the request unstarted and stops reading its
   * socket until `wake` is called. Writes only: other requests carry no payload to hold.
   */
  admit?(bytes: number, wake: () => void): boolean;
}

const byNodeCode: Readonly<Record<string, number>> = {
  ENOSPC: NbdErrno.ENOSPC,
  // The spec asks servers to report quota and file-size limits as ENOSPC.
  EDQUOT: NbdErrno.ENOSPC,
  EFBIG: NbdErrno.ENOSPC,
  EPERM: NbdErrno.EPERM,
  EACCES: NbdErrno.EPERM,
  EROFS: NbdErrno.EPERM,
  EINVAL: NbdErrno.EINVAL,
  ENOTSUP: NbdErrno.ENOTSUP,
  EOPNOTSUPP: NbdErrno.ENOTSUP,
  EOVERFLOW: NbdErrno.EOVERFLOW,
};

/** The NBD error value to answer for a device failure. Never 0 and never ENOMEM (the spec discourages it). */
export function nbdErrnoFromError(err: unknown): number {
  if (typeof err === 'object' && err !== null) {
    const explicit = (err as { nbdErrno?: unknown }).nbdErrno;
    if (isKnownNbdErrno(explicit) && explicit !== NbdErrno.ENOMEM) return explicit;
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') {
      const mapped = byNodeCode[code];
      if (mapped !== undefined) return mapped;
    }
  }
  return NbdErrno.EIO;
}
