// The resource model's error class. Validation problems are not thrown (they are FieldError lists); this is for
// calls that cannot proceed at all: an apiVersion or kind nothing serves, a setting not in the catalogue.

export type ModelErrorCode = 'UnsupportedVersion' | 'UnknownKind' | 'UnknownSetting';

export class ModelError extends Error {
  readonly code: ModelErrorCode;

  constructor(code: ModelErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelError';
    this.code = code;
  }
}

export function isUnsupportedVersion(err: unknown): err is ModelError {
  return err instanceof ModelError && err.code === 'UnsupportedVersion';
}

export function isUnknownSetting(err: unknown): err is ModelError {
  return err instanceof ModelError && err.code === 'UnknownSetting';
}

export function isUnknownKind(err: unknown): err is ModelError {
  return err instanceof ModelError && err.code === 'UnknownKind';
}
