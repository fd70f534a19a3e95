// The one error class of the blockdev frontend. Callers classify by `code` through `isBlockdevError(err, code)`,
// never by message text; a failed command's message names the command line and its stderr.

export type BlockdevErrorCode =
  /** An argument is invalid (volume name with "/", relative directory, bad size). */
  | 'BlockdevInvalidArgument'
  /** A tool the frontend needs (nbdfuse, losetup, fusermount3) is not installed, or /dev/loop-control is absent. */
  | 'BlockdevUnavailable'
  /** A command exited non-zero or was killed; the message carries its stderr. */
  | 'BlockdevCommandFailed'
  /** nbdfuse did not expose the file (at the expected size) in time. */
  | 'BlockdevTimeout';

export class BlockdevError extends Error {
  override readonly name = 'BlockdevError';
  readonly code: BlockdevErrorCode;

  constructor(code: BlockdevErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
  }
}

export function isBlockdevError(err: unknown, code?: BlockdevErrorCode): err is BlockdevError {
  return err instanceof BlockdevError && (code === undefined || err.code === code);
}
