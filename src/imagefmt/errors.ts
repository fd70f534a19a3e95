// The one error class of the image-format layer. Callers classify failures by `code` (through
// `isImageFormatError(err, code)`), never by message text; the message says what was wrong and where.
//
// File-system errors (ENOENT, EIO, ...) and AbortError are not wrapped: they pass through unchanged so that callers
// keep Node's `code`/`name` for them. Everything this layer decides about the bytes themselves is an ImageFormatError.

export const IMAGE_FORMAT_ERROR_CODES = [
  /** The bytes end before a structure that must be there (a header cut short, an extension past the buffer). */
  'Truncated',
  /** `parseQcow2Header` was given bytes that do not start with the qcow2 magic. */
  'BadMagic',
  /** A qcow2 version other than 2 or 3 (qcow version 1 included). */
  'UnsupportedVersion',
  /** The qcow2 image refers to a backing file: a backing image must be self-contained. */
  'BackingFile',
  /** The qcow2 image keeps its data in an external data file. */
  'ExternalDataFile',
  /** The qcow2 image is encrypted (AES or LUKS). */
  'Encrypted',
  /** A valid feature this implementation does not read: zstd compression, unknown incompatible bits, huge clusters. */
  'UnsupportedFeature',
  /** A size that cannot be served: not a multiple of 512, beyond 2^53, or an L1 table beyond the 32 MiB limit. */
  'BadSize',
  /** The image's own structures are inconsistent: misaligned or out-of-file offsets, bad deflate data, the corrupt bit. */
  'Corrupt',
  /** The path is not a regular file. */
  'NotAFile',
  /** The reader was used after `close()`. */
  'Closed',
] as const;

export type ImageFormatErrorCode = (typeof IMAGE_FORMAT_ERROR_CODES)[number];

export interface ImageFormatErrorOptions {
  /** Byte offset in the image file of the field or structure that was wrong. */
  offset?: number;
  cause?: unknown;
}

export class ImageFormatError extends Error {
  override readonly name = 'ImageFormatError';
  readonly code: ImageFormatErrorCode;
  /** Byte offset in the image file where the problem is, when there is one place to point at. */
  readonly offset: number | undefined;

  constructor(code: ImageFormatErrorCode, message: string, options: ImageFormatErrorOptions = {}) {
    super(message, 'cause' in options ? { cause: options.cause } : undefined);
    this.code = code;
    this.offset = options.offset;
  }
}

/** True when `err` is an ImageFormatError (and, if `code` is given, has that code). */
export function isImageFormatError(err: unknown, code?: ImageFormatErrorCode): err is ImageFormatError {
  return err instanceof ImageFormatError && (code === undefined || err.code === code);
}
