// Numbers of the NBD fixed-newstyle protocol (magic values, flags, option, reply, info and command codes, error
// values), named as in the NBD protocol specification (`doc/proto.md` of NetworkBlockDevice/nbd). Everything on
// the wire is big-endian. Only constants live here; encoders and decoders are in handshake.ts and transmission.ts.

/** 'NBDMAGIC', first 8 bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT', second 8 bytes of the greeting and the prefix of every client option. */
export const NBD_IHAVEOPT = 0x49484156454f5054n;
/** Prefix of every option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server → client, 16 bits). */
export const NbdHandshakeFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags (client → server, 32 bits). Any other bit set means the server must drop the connection. */
export const NbdClientFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Transmission flags (16 bits), sent with the export size. */
export const NbdFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Option codes (client → server during haggling). */
export const NbdOpt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const ERR = 0x80000000;

/** Option reply types. Error replies have bit 31 set. */
export const NbdRep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const;

export function isErrorReply(replyType: number): boolean {
  return replyType >= ERR;
}

/** Information types of `NBD_REP_INFO` (answers to `NBD_OPT_INFO` / `NBD_OPT_GO`). */
export const NbdInfo = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission request types. */
export const NbdCmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

/** Command flags (16 bits, per request). */
export const NbdCmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
  PAYLOAD_LEN: 1 << 5,
} as const;

/** Error values of simple replies. They equal Linux errno numbers but are protocol constants, not host errno. */
export const NbdErrno = {
  OK: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

const errnoNames = new Map<number, string>(Object.entries(NbdErrno).map(([k, v]) => [v, k]));

/** `EIO` for 5 and so on; `E#<n>` for values the protocol does not define. */
export function nbdErrnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E#${errno}`;
}

export function isKnownNbdErrno(value: unknown): value is number {
  return typeof value === 'number' && value !== 0 && errnoNames.has(value);
}

/** Protocol limits and defaults. */
export const NBD_MAX_STRING = 4096;
/** Default largest READ/WRITE payload (2^25). The spec says no client should treat less as a DoS. */
export const NBD_DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;
export const NBD_REQUEST_HEADER_SIZE = 28;
export const NBD_SIMPLE_REPLY_SIZE = 16;
export const NBD_OPTION_HEADER_SIZE = 16;
export const NBD_OPTION_REPLY_HEADER_SIZE = 20;
export const NBD_GREETING_SIZE = 18;
/** Zero padding after the `NBD_OPT_EXPORT_NAME` reply unless both sides agreed on NO_ZEROES. */
export const NBD_EXPORT_NAME_ZEROES = 124;
