// Constructors for FieldError in Kubernetes' vocabulary (k8s.io/apimachinery/pkg/util/validation/field): the
// reason is a StatusCause type and the message reads like `Invalid value: "Foo": <detail>`, so that clients that
// parse Kubernetes errors (kubectl among them) show ours the same way.

import type { FieldError } from './kind.js';

export const FieldValueRequired = 'FieldValueRequired';
export const FieldValueInvalid = 'FieldValueInvalid';
export const FieldValueTypeInvalid = 'FieldValueTypeInvalid';
export const FieldValueNotSupported = 'FieldValueNotSupported';
export const FieldValueDuplicate = 'FieldValueDuplicate';
export const FieldValueForbidden = 'FieldValueForbidden';
export const FieldValueTooLong = 'FieldValueTooLong';
export const FieldValueTooMany = 'FieldValueTooMany';

/** Formats a value the way Kubernetes does in messages: strings quoted, everything else as JSON. */
export function formatValue(value: unknown): string {
  if (value === undefined) return 'null';
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s;
}

function withDetail(head: string, detail: string | undefined): string {
  return detail === undefined || detail === '' ? head : `${head}: ${detail}`;
}

export function required(field: string, detail?: string): FieldError {
  return { field, reason: FieldValueRequired, message: withDetail('Required value', detail) };
}

export function invalid(field: string, value: unknown, detail: string): FieldError {
  return { field, reason: FieldValueInvalid, message: `Invalid value: ${formatValue(value)}: ${detail}` };
}

export function typeInvalid(field: string, value: unknown, expected: string): FieldError {
  return { field, reason: FieldValueTypeInvalid, message: `Invalid value: ${formatValue(value)}: must be ${expected}` };
}

export function notSupported(field: string, value: unknown, allowed: readonly unknown[]): FieldError {
  const list = allowed.map(formatValue).join(', ');
  return {
    field,
    reason: FieldValueNotSupported,
    message: `Unsupported value: ${formatValue(value)}: supported values: ${list}`,
  };
}

export function duplicate(field: string, value: unknown): FieldError {
  return { field, reason: FieldValueDuplicate, message: `Duplicate value: ${formatValue(value)}` };
}

export function forbidden(field: string, detail: string): FieldError {
  return { field, reason: FieldValueForbidden, message: `Forbidden: ${detail}` };
}

export function tooLong(field: string, value: unknown, max: number): FieldError {
  return {
    field,
    reason: FieldValueTooLong,
    message: `Too long: ${formatValue(value)}: may not be more than ${max} characters`,
  };
}

export function tooMany(field: string, actual: number, max: number): FieldError {
  return { field, reason: FieldValueTooMany, message: `Too many: ${actual}: must have at most ${max} items` };
}

export function notFound(field: string, value: unknown): FieldError {
  return { field, reason: 'FieldValueNotFound', message: `Not found: ${formatValue(value)}` };
}

/** The usual error for a field that may not change once set. */
export function immutable(field: string, value: unknown): FieldError {
  return invalid(field, value, 'field is immutable');
}

/**
 * Joins a field path and a child key: `spec` + `disks` → `spec.disks`. Map keys that are not plain words
 * (label keys like `longhorn.io/node`, keys with dots) are written `[key]` as Kubernetes does, so the path stays
 * unambiguous.
 */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (/^[A-Za-z0-9_-]+$/.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${key}]`;
}
