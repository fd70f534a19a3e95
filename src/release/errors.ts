// The release package's one error class. Callers classify by `code` (`isReleaseError(err, code)`), never by text.

export type ReleaseErrorCode =
  /** The release file is malformed or refers to what does not exist; the message names the entry. */
  | 'InvalidRelease'
  /** The release is well formed but cannot be applied to this cluster (API ranges, running instances). */
  | 'IncompatibleRelease'
  /**
   * The release asks for what only the operator may grant: a command, a subcommand, environment or pod environment
   * that no entry of the operator's catalog (built-in or --images files) has. Nothing was run.
   */
  | 'UntrustedRelease'
  /** An upgrade cannot start: another one is still being applied, or nothing can restart the manager. */
  | 'UpgradeUnavailable';

export class ReleaseError extends Error {
  readonly code: ReleaseErrorCode;

  constructor(code: ReleaseErrorCode, message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'ReleaseError';
    this.code = code;
  }
}

export function isReleaseError(err: unknown, code?: ReleaseErrorCode): err is ReleaseError {
  return err instanceof ReleaseError && (code === undefined || err.code === code);
}
